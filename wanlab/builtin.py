"""Built-in offline models and the native settings each declares."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class Builtin:
    """An offline model: how to build it and the request fields it is meant to run at."""

    name: str
    build: Callable[[], Any]
    native: dict[str, Any] = field(default_factory=dict)
    max_sequence_length: int = 512
    description: str = ""


def _tiny() -> Any:
    from . import tiny

    return tiny.build()


BUILTINS: dict[str, Builtin] = {
    "tiny": Builtin(
        "tiny", _tiny, native={"width": 128, "height": 128, "num_frames": 33},
        max_sequence_length=512,
        description="seeded random weights in the real diffusers Wan classes: fast tests of the code path",
    ),
}

#: The settings a real Wan 2.1 checkpoint runs at (the hosted API's defaults).
REAL_NATIVE: dict[str, Any] = {}
REAL_MAX_SEQUENCE_LENGTH = 512
