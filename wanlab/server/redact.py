"""What the service's answers must not show.

This machine's paths (LoRA folders and cache, the hub cache, the store, the home folder). A client
learns what was wrong with its request, not how the server is laid out.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any


class Redactor:
    """Replaces this machine's paths in text with names for them.

    Example:
        >>> Redactor({"/srv/loras": "<LoRA folder 1>"}).scrub("/srv/loras/x.safetensors: no such file")
        '<LoRA folder 1>/x.safetensors: no such file'
    """

    def __init__(self, paths: dict[str, str]) -> None:
        found = dict(paths)
        for path, shown in list(found.items()):
            found.setdefault(str(Path(path).resolve()), shown)
        self._paths = sorted(((p, s) for p, s in found.items() if p not in ("", "/", ".")), key=lambda i: -len(i[0]))

    @classmethod
    def of_server(cls, lora_dirs: Iterable[str], lora_cache: Any, store: Path) -> Redactor:
        """The paths of a server: its LoRA folders and cache, the hub cache, its store and the home folder."""
        paths = {str(folder): f"<LoRA folder {i + 1}>" for i, folder in enumerate(lora_dirs)}
        if lora_cache:
            paths[str(Path(lora_cache).expanduser())] = "<LoRA cache>"
        from huggingface_hub import constants

        paths[str(Path(constants.HF_HUB_CACHE).expanduser())] = "<hub cache>"
        paths[str(store)] = "<store>"
        paths[str(Path.home())] = "~"
        return cls(paths)

    def scrub(self, text: str) -> str:
        """``text`` with every known path replaced (longest first)."""
        for path, shown in self._paths:
            text = text.replace(path, shown)
        return text
