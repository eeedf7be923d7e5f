"""LoRA adapters: each file loaded into the transformer once, cached by content hash, weighted per call."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .errors import LoRAError
from .fsutil import sha256_file
from .params import LoRA


_HASHES: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256


def file_hash(path: str) -> str:
    """sha256 of a LoRA file (cached by path, size and mtime); clear error if it is missing."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise LoRAError(f"loras.path: no such LoRA file: {path}")
    if file.suffix != ".safetensors":
        raise LoRAError(f"loras.path: must be a .safetensors file; got {path}")
    stat = file.stat()
    key = (str(file.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = sha256_file(file)
    return _HASHES[key]


def describe(loras: Sequence[LoRA]) -> list[dict[str, Any]]:
    """Path, scale and sha256 of each requested LoRA (for records and run keys; no model needed)."""
    return [{"path": lo.path, "scale": lo.scale, "sha256": file_hash(lo.path)} for lo in loras]


class LoRASet:
    """The adapters loaded into one pipeline; :meth:`apply` activates exactly the requested ones."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self._names: dict[str, str] = {}  # file sha256 -> adapter name

    def describe(self, loras: Sequence[LoRA]) -> list[dict[str, Any]]:
        """Path, scale and sha256 of each requested LoRA (for records and run keys)."""
        return describe(loras)

    def apply(self, loras: Sequence[LoRA]) -> list[dict[str, Any]]:
        """Load what is new, then weight the requested adapters; none requested means the base model."""
        described = self.describe(loras)
        hashes = [d["sha256"] for d in described]
        if len(set(hashes)) != len(hashes):
            raise LoRAError(f"loras: each LoRA file may be given once; got {[lo.path for lo in loras]}")
        for lora, sha in zip(loras, hashes):
            if sha not in self._names:
                self._load(lora.path, sha)
        if not loras:
            if self._names:
                self.pipe.disable_lora()
            return described
        self.pipe.enable_lora()
        self.pipe.set_adapters([self._names[h] for h in hashes], adapter_weights=[lo.scale for lo in loras])
        return described

    def unload(self) -> None:
        """Remove every adapter; the base weights come back bit for bit."""
        if self._names:
            self.pipe.unload_lora_weights()
            self._names.clear()

    def _load(self, path: str, sha: str) -> None:
        file = Path(path).expanduser()
        name = f"lora_{sha[:16]}"
        try:
            self.pipe.load_lora_weights(str(file.parent), weight_name=file.name, adapter_name=name)
        except Exception as exc:  # diffusers/peft/safetensors raise many kinds; one sentence for the user
            if name in getattr(self.pipe.transformer, "peft_config", {}):
                self.pipe.delete_adapters(name)
            raise LoRAError(f"loras.path: could not load LoRA {path} into this model: {exc}") from exc
        self._names[sha] = name
