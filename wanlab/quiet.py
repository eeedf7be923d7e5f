"""A quiet terminal: library warnings and log notices that say nothing to a wanlab user, silenced.

peft warns "Already found a peft_config attribute" each time a second LoRA loads; huggingface_hub
and diffusers emit deprecation notices about their own internals; transformers and diffusers log
loading chatter. :func:`quiet` silences those inside a ``with`` block (the CLI's ``--quiet`` and its
sweeps use it); warnings issued by wanlab itself always show.
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

#: Libraries whose warnings and log records :func:`quiet` hides.
LIBRARIES = ("peft", "huggingface_hub", "diffusers", "transformers", "accelerate", "torch")


@contextlib.contextmanager
def quiet(on: bool = True) -> Iterator[None]:
    """Inside the block, hide warnings raised from :data:`LIBRARIES` and their log records below ERROR.

    Warnings issued by wanlab itself still show; the loggers' levels are restored on exit.

    Args:
        on: ``False`` makes the block a no-op (so callers can pass a ``--quiet`` flag straight through).

    Yields:
        Nothing; the silencing holds while the block runs.

    Example:
        >>> with quiet():  # doctest: +SKIP
        ...     pipe = wanlab.load("toy")
    """
    if not on:
        yield
        return
    loggers = [logging.getLogger(name) for name in LIBRARIES]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        for name in LIBRARIES:
            warnings.filterwarnings("ignore", module=rf"{name}(\.|$)")
        warnings.filterwarnings("ignore", message=r".*peft_config attribute.*")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)
