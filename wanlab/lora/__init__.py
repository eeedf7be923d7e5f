"""LoRA files as researchers download them: every community Wan convention loads, or is refused in one sentence.

- :class:`LoRASet` (``pipe.loras``): locate, convert, load once, weight per call.
- :mod:`wanlab.lora.sources`: where a path points (local file, hub cache, https URL) under a :class:`SourcePolicy`.
- :mod:`wanlab.lora.formats`: the converter to one canonical diffusers/peft form (:func:`convert`).
- :mod:`wanlab.lora.layout`: the transformer's modules under diffusers, original Wan and kohya names.
"""
from ..errors import LoRAError, LoRAWarning
from .adapters import LoRASet, describe, file_hash, locate_hashed
from .formats import Converted, convert, read
from .layout import ModelLayout
from .sources import Source, SourcePolicy, download, locate

__all__ = ["LoRASet", "describe", "file_hash", "locate_hashed", "SourcePolicy", "Source", "locate", "download",
           "convert", "read", "Converted", "ModelLayout", "LoRAError", "LoRAWarning"]
