"""Shared fixtures: one tiny pipeline per test session (importing torch and diffusers costs seconds)."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

#: Small but real: every code path runs, each generation takes a fraction of a second.
SMALL = dict(width=32, height=32, num_frames=5, steps=2)


@pytest.fixture(scope="session")
def pipe():
    import wanlab

    return wanlab.load("tiny", progress=False)


@pytest.fixture()
def small() -> dict:
    return dict(SMALL)


@pytest.fixture(scope="session")
def lora_files(tmp_path_factory, pipe):
    """Two LoRA files for the tiny transformer: diffusers/peft key format and original Wan key format."""
    from tests.helpers import make_lora_files

    return make_lora_files(pipe, tmp_path_factory.mktemp("loras"))
