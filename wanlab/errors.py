"""Exceptions wanlab raises at its boundaries, each carrying a one-sentence message; its warnings,
and :func:`warn`, which points a warning at the caller's line (not at wanlab's own code or a worker thread)."""
from __future__ import annotations

import os
import sys
import warnings

#: wanlab's own source folder: frames from files under it are skipped when a warning picks its line.
_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


class WanlabError(Exception):
    """Base class for wanlab's own errors."""


class ParamError(WanlabError, ValueError):
    """A generation parameter broke its rule; the message names the field, the rule and the value."""

    def __init__(self, field: str, rule: str, value: object) -> None:
        self.field, self.rule, self.value = field, rule, value
        super().__init__(f"{field}: must be {rule}; got {value!r}")


class TruncationError(ParamError):
    """A prompt is longer than the model reads and the caller asked for no cutting (``truncate="error"``)."""


class LoadError(WanlabError):
    """A model could not be loaded (missing folder, not a Wan pipeline, hub unreachable)."""


class LoRAError(WanlabError, ValueError):
    """A LoRA file is missing, unreadable or does not fit the model."""


class LoRAWarning(UserWarning):
    """A LoRA loaded but changes nothing, or part of it matches no module of the model."""


class PromptWarning(UserWarning):
    """A prompt the model cannot read in full: longer than its text length, or words outside its vocabulary."""


class TrainedSizeWarning(UserWarning):
    """A request away from the size a model was trained at (the built-in toy: 64x64, 17 frames)."""


class ModelMismatchWarning(UserWarning):
    """A sweep file names one model and runs on a backend with another (its runs are the backend's)."""


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the first frame outside wanlab: the user's line that asked
    for the work (a notebook cell, a script), however deep inside wanlab the check runs.

    >>> warn("a prompt with words the model never saw: 'fox'", PromptWarning)  # doctest: +SKIP
    """
    frame = sys._getframe(1)
    level = 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level - 1 if frame is None else level)


class UnsafeURLError(WanlabError, ValueError):
    """A URL the network policy refuses: a scheme not allowed, or a host with a non-public address."""


class TaskError(WanlabError):
    """A task id is unknown, the queue is full, or a task cannot be cancelled."""


class TaskTimeout(TaskError, TimeoutError):
    """``wait`` ran out of time before the task finished (the task goes on)."""


class QueueFull(TaskError):
    """``submit`` found ``maxsize`` tasks waiting, or ``max_per_owner`` of the same owner (the HTTP
    service answers 429 and says which limit and when to retry): ``limit`` names it, ``value`` is its size."""

    def __init__(self, message: str, limit: str = "maxsize", value: int | None = None) -> None:
        super().__init__(message)
        self.limit, self.value = limit, value


class QueueClosed(TaskError):
    """``submit`` after :meth:`TaskQueue.close` (the HTTP service answers 503 while it shuts down)."""


class GenerationError(WanlabError):
    """A generation produced garbage (non-finite latents or frames, every frame black): never stored as a run."""


class ServiceError(WanlabError):
    """A service (a wanlab server or the hosted API) answered with an error, or gave no answer in time;
    ``status`` is the HTTP status it answered (None when none came)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class SubmitUncertain(ServiceError):
    """A submit was sent and its answer was lost (or an earlier one's was): the service may have accepted
    it (and may bill it), so it is not sent again without a way to tell (an idempotency key the service
    honours) or an explicit ``retry_uncertain=True``."""


class AuthError(ServiceError):
    """The service refused the API key (401) or what it may do (403)."""


class DownloadError(ServiceError):
    """A file did not arrive whole (cut short, wrong size or digest, or not what was promised)."""


class RunNotFoundError(WanlabError, KeyError):
    """No run with that key in the store (a ``KeyError`` too, so ``except KeyError`` works)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class EvaluatorMissing(WanlabError, FileNotFoundError):
    """An evaluator's weights are not on this machine; the message says how to get them."""


class ProbeError(WanlabError, ValueError):
    """A probe was asked for something it cannot give: an unknown probe or setting (the message names
    the field, the rule and the value), a word the prompt lacks, or a step or block not recorded."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    @classmethod
    def invalid(cls, field: str, rule: str, value: object) -> "ProbeError":
        """The error for a setting that broke its rule: ``"{field}: must be {rule}; got {value!r}"``."""
        return cls(f"{field}: must be {rule}; got {value!r}", field)
