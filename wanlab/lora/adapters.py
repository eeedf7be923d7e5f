"""LoRA adapters of one pipeline (:class:`LoRASet`) and the helpers that name a LoRA file by its hash.

Each file is located, converted to canonical form and loaded into the transformer once (cached by
content hash), then weighted per call.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import LoRAError, LoRAWarning
from ..fsutil import sha256_file
from ..params import LoRA
from . import formats
from .layout import ModelLayout
from .sources import Source, SourcePolicy, locate

_HASHES: dict[tuple[str, int, int], str] = {}  # (resolved path, size, mtime_ns) -> sha256, for every LoRASet


def locate_hashed(path: str, policy: SourcePolicy | None = None) -> tuple[Source, str]:
    """The local file a LoRA path means and its sha256 (hashes cached by path, size and mtime).

    Args:
        path: A local file, a Hugging Face repo id (or a file in one) or an https URL.
        policy: Which path forms are accepted (default: any local file, the hub cache, public https URLs).

    Returns:
        The :class:`~wanlab.lora.sources.Source` and the file's sha256.

    Raises:
        LoRAError: The file is missing, refused by the policy or not a .safetensors file.

    Example:
        >>> source, sha = locate_hashed("style.safetensors")  # doctest: +SKIP
    """
    source = locate(path, policy)
    if source.sha256 is not None:
        return source, source.sha256
    stat = source.file.stat()
    key = (str(source.file.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = sha256_file(source.file)
    return source, _HASHES[key]


def file_hash(path: str, policy: SourcePolicy | None = None) -> str:
    """sha256 of a LoRA file, whatever the path form (local, hub id, URL); no model needed.

    Args:
        path: A local file, a Hugging Face repo id (or a file in one) or an https URL.
        policy: Which path forms are accepted (see :func:`locate_hashed`).

    Returns:
        The hex sha256.

    Raises:
        LoRAError: The file is missing, refused or not a .safetensors file.

    Example:
        >>> file_hash("style.safetensors")  # doctest: +SKIP
        '5be1...'
    """
    return locate_hashed(path, policy)[1]


def describe(loras: Sequence[LoRA], policy: SourcePolicy | None = None) -> list[dict[str, Any]]:
    """Path, scale and sha256 of each requested LoRA (for records and run keys; no model needed).

    Args:
        loras: The request's LoRAs.
        policy: Which path forms are accepted (see :func:`locate_hashed`).

    Returns:
        One ``{path, scale, sha256}`` per LoRA, in order.

    Raises:
        LoRAError: A file is missing, refused or not a .safetensors file.

    Example:
        >>> describe([LoRA("style.safetensors", 0.8)])  # doctest: +SKIP
        [{'path': 'style.safetensors', 'scale': 0.8, 'sha256': '5be1...'}]
    """
    return [{"path": lo.path, "scale": lo.scale, "sha256": file_hash(lo.path, policy)} for lo in loras]


@dataclass(frozen=True)
class _Adapter:
    """One loaded LoRA file: its peft adapter name (None when it changes nothing) and what it touched."""

    name: str | None
    format: str
    modules: tuple[str, ...]
    unmatched: tuple[str, ...]
    warning: str | None

    def record(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"format": self.format, "modules": list(self.modules)}
        if self.unmatched:
            entry["unmatched"] = list(self.unmatched)
        if self.warning:
            entry["warning"] = self.warning
        return entry


class LoRASet:
    """The adapters loaded into one pipeline; :meth:`apply` activates exactly the requested ones.

    Each file is located, converted to canonical form and loaded into the transformer once (cached
    by content hash), then weighted per call.

    Args:
        pipe: The diffusers pipeline holding the transformer.
        policy: A :class:`~wanlab.lora.sources.SourcePolicy` (also settable later as
            ``loras.policy``) saying which path forms are accepted: by default any local file,
            Hugging Face repos in the local hub cache and https URLs to public hosts.

    Example:
        >>> pipe.loras.apply([LoRA("style.safetensors", 0.8)])[0]["modules"][:2]  # doctest: +SKIP
        ['blocks.0.attn1.to_q', 'blocks.0.attn1.to_k']
    """

    def __init__(self, pipe: Any, *, policy: SourcePolicy | None = None) -> None:
        self.pipe = pipe
        self.policy = policy or SourcePolicy()
        self._adapters: dict[str, _Adapter] = {}  # file sha256 -> loaded adapter
        self._layout: ModelLayout | None = None

    def locate(self, path: str) -> tuple[Source, str]:
        """:func:`locate_hashed` under this set's :attr:`policy`.

        Args:
            path: A LoRA path in any form.

        Returns:
            The source and its sha256.
        """
        return locate_hashed(path, self.policy)

    def file_hash(self, path: str) -> str:
        """sha256 of a LoRA file under this set's :attr:`policy`, whatever the path form.

        Args:
            path: A LoRA path in any form.

        Returns:
            The hex sha256.
        """
        return file_hash(path, self.policy)

    def describe(self, loras: Sequence[LoRA]) -> list[dict[str, Any]]:
        """Path, scale and sha256 of each requested LoRA under this set's :attr:`policy` (records, run keys).

        Args:
            loras: The request's LoRAs.

        Returns:
            One ``{path, scale, sha256}`` per LoRA.
        """
        return describe(loras, self.policy)

    def layout(self) -> ModelLayout:
        """The transformer's LoRA targets (built once).

        Returns:
            The :class:`~wanlab.lora.layout.ModelLayout`.
        """
        if self._layout is None:
            self._layout = ModelLayout.of(self.pipe.transformer)
        return self._layout

    def inspect(self, path: str) -> formats.Converted:
        """What a LoRA file holds for this model, without loading it.

        Args:
            path: A LoRA path in any form.

        Returns:
            The :class:`~wanlab.lora.formats.Converted` file: convention, modules it changes, names
            that match nothing.

        Raises:
            LoRAError: The file would be refused (the message gives the reason).

        Example:
            >>> pipe.loras.inspect("style.safetensors").format  # doctest: +SKIP
            'kohya'
        """
        source, _ = self.locate(path)
        tensors, config = formats.read(source.file, path)
        return formats.convert(tensors, self.layout(), name=path, config=config)

    def apply(self, loras: Sequence[LoRA]) -> list[dict[str, Any]]:
        """Load what is new, then weight the requested adapters; none requested means the base model.

        Args:
            loras: The request's LoRAs.

        Returns:
            One record entry per LoRA: path, scale and sha256 (what run keys use), the source kind,
            the convention recognised, the modules it changes, and a warning when it changes nothing.

        Raises:
            LoRAError: A file given twice, missing, refused, of an unknown convention, or that
                diffusers would load other than it says.
        """
        located = [self.locate(lo.path) for lo in loras]
        hashes = [sha for _, sha in located]
        if len(set(hashes)) != len(hashes):
            raise LoRAError(f"loras: each LoRA file may be given once; got {[lo.path for lo in loras]}")
        for lora, (source, sha) in zip(loras, located):
            if sha not in self._adapters:
                self._adapters[sha] = self._load(source, sha, lora.path)
        active = [(self._adapters[sha].name, lo.scale) for lo, sha in zip(loras, hashes) if self._adapters[sha].name]
        if active:
            self.pipe.enable_lora()
            self.pipe.set_adapters([name for name, _ in active], adapter_weights=[scale for _, scale in active])
        elif self._loaded():
            self.pipe.disable_lora()
        return [{"path": lo.path, "scale": lo.scale, "sha256": sha, "source": source.kind,
                 **self._adapters[sha].record()} for lo, (source, sha) in zip(loras, located)]

    def unload(self) -> None:
        """Remove every adapter; the base weights come back bit for bit."""
        if self._loaded():
            self.pipe.unload_lora_weights()
        self._adapters.clear()

    def _loaded(self) -> bool:
        return any(adapter.name for adapter in self._adapters.values())

    def _load(self, source: Source, sha: str, text: str) -> _Adapter:
        tensors, config = formats.read(source.file, text)
        converted = formats.convert(tensors, self.layout(), name=text, config=config)
        del tensors
        warning = converted.warning(text)
        if warning:
            warnings.warn(warning, LoRAWarning, stacklevel=4)
        name = None
        if converted.state_dict:
            name = f"lora_{sha[:16]}"
            try:
                with warnings.catch_warnings():  # peft's note on loading a second adapter is not news here
                    warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
                    self.pipe.load_lora_weights(converted.state_dict, adapter_name=name)
                check_loaded(self.pipe.transformer, name, converted, text)
            except Exception as exc:  # diffusers/peft raise many kinds; never keep a half-loaded adapter
                if name in getattr(self.pipe.transformer, "peft_config", {}):
                    self.pipe.delete_adapters(name)
                if isinstance(exc, LoRAError):
                    raise
                raise LoRAError(f"loras.path: could not load LoRA {text} into this model: {exc}") from exc
        return _Adapter(name, converted.format, converted.modules, converted.unmatched, warning)


def check_loaded(transformer: Any, name: str, converted: formats.Converted, text: str) -> None:
    """Check that peft holds adapter ``name`` as exactly ``converted``'s tensors, off the meta device, at scale 1.

    What diffusers loaded is what the file says, never garbage.

    Args:
        transformer: The transformer the adapter was loaded into.
        name: The peft adapter name.
        converted: What the file holds in canonical form.
        text: The LoRA path as given (for messages).

    Raises:
        LoRAError: Modules left unloaded or on the meta device, a non-zero module the file lacks, a
            scale other than 1, or values other than the file's.

    Example:
        >>> check_loaded(pipe.transformer, "lora_5be1", converted, "style.safetensors")  # doctest: +SKIP
    """
    import torch
    from peft.tuners.lora import LoraLayer

    found = {module_name: module for module_name, module in transformer.named_modules()
             if isinstance(module, LoraLayer) and name in module.lora_A}
    missing = [m for m in converted.modules if m not in found]
    if missing:
        raise LoRAError(f"loras.path: diffusers left {len(missing)} modules of LoRA {text} unloaded (e.g. "
                        f"{missing[0]!r}); the file is refused rather than applied in part")
    expected = set(converted.modules)
    module: Any
    for module_name, module in found.items():
        params = {"lora_A.weight": module.lora_A[name].weight, "lora_B.weight": module.lora_B[name].weight}
        if module.lora_B[name].bias is not None:
            params["lora_B.bias"] = module.lora_B[name].bias
        if any(p.is_meta for p in params.values()):
            raise LoRAError(f"loras.path: diffusers left LoRA {text} on the meta device in {module_name!r} "
                            "(no values); the file is refused rather than run as garbage")
        if module_name not in expected:  # diffusers' own padding (an image-to-video model): must be zero
            if params["lora_B.weight"].any():
                raise LoRAError(f"loras.path: diffusers added a non-zero LoRA module {module_name!r} that "
                                f"{text} does not hold")
            continue
        if module.scaling[name] != 1.0:
            raise LoRAError(f"loras.path: diffusers set scale {module.scaling[name]} instead of 1 on "
                            f"{module_name!r} of LoRA {text}; this diffusers version mis-scales mixed ranks")
        for key, param in params.items():
            want = converted.state_dict[f"transformer.{module_name}.{key}"]
            if not torch.allclose(want.to(param.device, param.dtype), param.detach(), rtol=0, atol=0, equal_nan=True):
                raise LoRAError(f"loras.path: diffusers loaded different values than LoRA {text} holds into "
                                f"{module_name}.{key}; the file is refused rather than run as garbage")

