"""Built-in offline models and the native settings each declares."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

#: The trained toy checkpoint shipped inside the package (``python -m wanlab.toy.train --out`` here).
TOY_FOLDER = Path(__file__).resolve().parent / "models" / "toy"


@dataclass(frozen=True)
class Builtin:
    """An offline model: how to build it and the request fields it is meant to run at.

    ``native`` holds request fields (``wanlab.Params`` names) that ``pipe.generate`` fills in when
    they are not given: size and frames, and where the model has them its suggested ``steps``,
    ``guidance_scale`` and ``flow_shift``. ``max_sequence_length`` is the text length the model
    was trained with (a property of the model, not of the request). ``demo_prompts`` are prompts
    the model knows; ``folder`` is the checkpoint folder of a trained built-in.
    """

    name: str
    build: Callable[[], Any]
    native: dict[str, Any] = field(default_factory=dict)
    max_sequence_length: int = 512
    description: str = ""
    demo_prompts: tuple[str, ...] = ()
    folder: Path | None = None


def _tiny() -> Any:
    from . import tiny

    return tiny.build()


def _toy(folder: str | os.PathLike[str] | None = None) -> Any:
    """Load the shipped toy checkpoint offline with the stock ``WanPipeline.from_pretrained``."""
    import torch
    from diffusers import AutoencoderKLWan, WanPipeline

    from .errors import LoadError
    from .pipeline import _realign

    folder = Path(folder) if folder is not None else TOY_FOLDER
    if not (folder / "model_index.json").is_file():
        raise LoadError(f"the toy checkpoint is missing from {folder}: reinstall wanlab, or train it with "
                        f"python -m wanlab.toy.train --out {folder}.")
    vae = AutoencoderKLWan.from_pretrained(str(folder), subfolder="vae", dtype=torch.float32, local_files_only=True)
    pipe = WanPipeline.from_pretrained(str(folder), vae=vae, dtype=torch.float32, local_files_only=True)
    for module in (pipe.text_encoder, pipe.transformer, pipe.vae):
        module.eval().requires_grad_(False)
    _realign(pipe)
    return pipe


#: Captions the toy model was trained on (see ``wanlab.toy.data``): one of each kind of change.
TOY_DEMO_PROMPTS = (
    "a red square moving right quickly",
    "a blue circle moving left slowly",
    "a yellow triangle moving up quickly",
    "a green circle moving down slowly",
    "a white square standing still",
)

BUILTINS: dict[str, Builtin] = {
    "tiny": Builtin(
        "tiny", _tiny, native={"width": 128, "height": 128, "num_frames": 33},
        max_sequence_length=512,
        description="seeded random weights in the real diffusers Wan classes: fast tests of the code path",
    ),
    "toy": Builtin(
        "toy", _toy,
        native={"width": 64, "height": 64, "num_frames": 17, "steps": 25, "guidance_scale": 2.0,
                "flow_shift": 3.0},
        max_sequence_length=16,
        description="trained by wanlab on captioned moving shapes (python -m wanlab.toy.train): videos follow "
                    "the caption's shape, colour, direction and speed",
        demo_prompts=TOY_DEMO_PROMPTS,
        folder=TOY_FOLDER,
    ),
}

#: The settings a real Wan 2.1 checkpoint runs at (the hosted API's defaults).
REAL_NATIVE: dict[str, Any] = {}
REAL_MAX_SEQUENCE_LENGTH = 512
