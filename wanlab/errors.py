"""Exceptions wanlab raises at its boundaries (each with a one-sentence message), its warnings, and :func:`warn`.

Every error derives from :class:`WanlabError`.
"""
from __future__ import annotations

import os
import sys
import types
import warnings

#: wanlab's own source folder: frames from files under it are skipped when a warning picks its line.
_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


class WanlabError(Exception):
    """Base class for wanlab's own errors: ``except wanlab.WanlabError`` catches every one of them.

    Example:
        >>> import wanlab
        >>> try:
        ...     wanlab.Params(prompt="a fox", steps=0)
        ... except wanlab.WanlabError as exc:
        ...     print(exc)
        steps: must be an integer in 1..40; got 0
    """


class ParamError(WanlabError, ValueError):
    """A generation parameter broke its rule; the message names the field, the rule and the value.

    Also a ``ValueError``.

    Args:
        field: The field (``"steps"``, ``"loras.scale"``).
        rule: What it must be, in words (``"an integer in 1..40"``).
        value: The value given.

    Attributes:
        field: The field.
        rule: The rule.
        value: The value.

    Example:
        >>> err = ParamError("steps", "an integer in 1..40", 0)
        >>> str(err), err.field
        ('steps: must be an integer in 1..40; got 0', 'steps')
    """

    def __init__(self, field: str, rule: str, value: object) -> None:
        self.field, self.rule, self.value = field, rule, value
        super().__init__(f"{field}: must be {rule}; got {value!r}")


class TruncationError(ParamError):
    """A prompt is longer than the model reads and the caller asked for no cutting (``truncate="error"``).

    Example:
        >>> pipe.generate(prompt="a fox " * 400, truncate="error")  # doctest: +SKIP
        Traceback (most recent call last):
        wanlab.errors.TruncationError: prompt: must be ...
    """


class LoadError(WanlabError):
    """A model could not be loaded (missing folder, not a Wan pipeline, hub unreachable).

    Example:
        >>> wanlab.load("./no-such-folder")  # doctest: +SKIP
        Traceback (most recent call last):
        wanlab.errors.LoadError: ...
    """


class LoRAError(WanlabError, ValueError):
    """A LoRA file is missing, unreadable or does not fit the model (also a ``ValueError``).

    Example:
        >>> pipe.generate(prompt="a fox", loras=[("missing.safetensors", 1.0)])  # doctest: +SKIP
        Traceback (most recent call last):
        wanlab.errors.LoRAError: loras.path: ...
    """


class LoRAWarning(UserWarning):
    """A LoRA loaded but changes nothing, or part of it matches no module of the model.

    Example:
        >>> import warnings
        >>> warnings.simplefilter("error", LoRAWarning)  # doctest: +SKIP
    """


class PromptWarning(UserWarning):
    """A prompt the model cannot read in full: longer than its text length, or words outside its vocabulary.

    Example:
        >>> import warnings
        >>> warnings.simplefilter("error", PromptWarning)  # doctest: +SKIP
    """


class TrainedSizeWarning(UserWarning):
    """A request away from the size a model was trained at (the built-in toy: 64x64, 17 frames)."""


class ModelMismatchWarning(UserWarning):
    """A sweep file names one model and runs on a backend with another (its runs are the backend's)."""


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the first frame outside wanlab.

    The warning points at the user's line that asked for the work (a notebook cell, a script),
    however deep inside wanlab the check runs (not at wanlab's own code or a worker thread).

    Args:
        message: The warning, one sentence.
        category: The warning class.

    Example:
        >>> warn("a prompt with words the model never saw: 'fox'", PromptWarning)  # doctest: +SKIP
    """
    frame: types.FrameType | None = sys._getframe(1)
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
    """``wait`` ran out of time before the task finished (the task goes on; also a ``TimeoutError``).

    Example:
        >>> client.wait(task_id, timeout=1.0)  # doctest: +SKIP
        Traceback (most recent call last):
        wanlab.errors.TaskTimeout: ...
    """


class QueueFull(TaskError):
    """``submit`` found ``maxsize`` tasks waiting, or ``max_per_owner`` of the same owner.

    The HTTP service answers 429 and says which limit and when to retry.

    Args:
        message: The sentence.
        limit: Which limit: ``"maxsize"`` or ``"max_per_owner"``.
        value: Its size.

    Attributes:
        limit: Which limit.
        value: Its size.

    Example:
        >>> QueueFull("the queue holds 64 tasks", "maxsize", 64).limit
        'maxsize'
    """

    def __init__(self, message: str, limit: str = "maxsize", value: int | None = None) -> None:
        super().__init__(message)
        self.limit, self.value = limit, value


class QueueClosed(TaskError):
    """``submit`` after :meth:`TaskQueue.close` (the HTTP service answers 503 while it shuts down)."""


class GenerationError(WanlabError):
    """A generation produced garbage (non-finite latents or frames, every frame black): never stored as a run.

    Example:
        >>> try:  # doctest: +SKIP
        ...     video = pipe.generate(prompt="a fox", seed=1)
        ... except wanlab.GenerationError as exc:
        ...     print(exc)
    """


class ServiceError(WanlabError):
    """A service (a wanlab server or the hosted API) answered with an error, or gave no answer in time.

    Args:
        message: The sentence.
        status: The HTTP status it answered (None when none came).

    Attributes:
        status: The HTTP status, or None.

    Example:
        >>> ServiceError("the service answered 503: shutting down", 503).status
        503
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class SubmitUncertain(ServiceError):
    """A submit was sent and its answer was lost (or an earlier one's was).

    The service may have accepted it (and may bill it), so it is not sent again without a way to tell
    (an idempotency key the service honours) or an explicit ``retry_uncertain=True``.
    """


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
    """A probe was asked for something it cannot give.

    An unknown probe or setting (the message names the field, the rule and the value), a word the
    prompt lacks, or a step or block not recorded. Also a ``ValueError``.

    Args:
        message: The sentence.
        field: The setting at fault, when one is.

    Attributes:
        field: The setting at fault, or None.

    Example:
        >>> str(ProbeError.invalid("probes.steps", "a list of step indices", "all"))
        "probes.steps: must be a list of step indices; got 'all'"
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    @classmethod
    def invalid(cls, field: str, rule: str, value: object) -> ProbeError:
        """The error for a setting that broke its rule: ``"{field}: must be {rule}; got {value!r}"``.

        Args:
            field: The setting.
            rule: What it must be, in words.
            value: The value given.

        Returns:
            The error, with ``field`` set.
        """
        return cls(f"{field}: must be {rule}; got {value!r}", field)
