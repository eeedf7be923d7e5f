"""Exceptions wanlab raises at its boundaries, each carrying a one-sentence message."""
from __future__ import annotations


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


class UnsafeURLError(WanlabError, ValueError):
    """A URL the network policy refuses: a scheme not allowed, or a host with a non-public address."""


class TaskError(WanlabError):
    """A task id is unknown, the queue is full, or a task cannot be cancelled."""


class TaskTimeout(TaskError, TimeoutError):
    """``wait`` ran out of time before the task finished (the task goes on)."""


class QueueFull(TaskError):
    """``submit`` found ``maxsize`` tasks waiting (the HTTP service answers 429 and says when to retry)."""


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


class AuthError(ServiceError):
    """The service refused the API key (401) or what it may do (403)."""


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
