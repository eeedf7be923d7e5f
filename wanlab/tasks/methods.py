"""The hosted API's task methods on every backend: ``submit``, ``task_result``, ``wait``, ``cancel``.

A backend class inherits :class:`TaskMethods`; its task queue (:class:`~wanlab.tasks.queue.TaskQueue`
over the backend itself) is made on the first ``submit`` (or ``cancel``) and kept by the backend, in
the store given then, else ``$WANLAB_STORE``, else ``runs/tasks`` (announced once, where it writes).
Reading a result before any submit reads the default store's task files and starts nothing.
"""
from __future__ import annotations

import sys
import threading
from typing import Any

from ..inputs import AccelLike, StoreLike
from ..params import Params

_LOCK = threading.Lock()


def _default_files() -> Any:
    from ..store import default_store_path
    from .files import TaskFiles

    return TaskFiles(default_store_path())


class TaskMethods:
    """Mixin: the asynchronous shape of the hosted API on a backend.

    Gives a backend ``submit``, ``task_result``, ``wait`` and ``cancel``. The task queue
    (:class:`~wanlab.tasks.queue.TaskQueue` over the backend itself) is made on the first ``submit``
    or ``cancel``, in the store given then, else ``$WANLAB_STORE``, else ``runs/tasks``.

    Example:
        >>> task_id = pipe.submit(prompt="a red square moving right quickly", seed=1)  # doctest: +SKIP
        >>> pipe.wait(task_id)["task"]["status"]  # doctest: +SKIP
        'TASK_STATUS_SUCCEED'
    """

    _task_queue: Any = None

    def task_queue(self, store: Any = None) -> Any:
        """This backend's task queue, made on first use.

        Args:
            store: where tasks and their videos go (a :class:`~wanlab.Store` or a folder; None: the
                default store, announced once on stderr). Used only when the queue is made.

        Returns:
            The backend's :class:`~wanlab.tasks.queue.TaskQueue`.
        """
        from ..store import default_store_path
        from .queue import TaskQueue

        with _LOCK:
            if self._task_queue is None:
                if store is None:
                    print(f"wanlab: tasks and their videos go to {default_store_path().resolve()} "
                          "(pass store=... or set WANLAB_STORE)", file=sys.stderr)
                self._task_queue = TaskQueue(self, store)
            return self._task_queue

    @property
    def queue_started(self) -> bool:
        """Whether this backend has made its task queue.

        A ``submit`` or ``cancel`` does; reading a result or waiting for one before that starts nothing
        and reads the store's task files.

        Example:
            >>> pipe.task_result(task_id); pipe.queue_started  # doctest: +SKIP
            False
        """
        return self._task_queue is not None

    def submit(self, params: Params | None = None, *, store: StoreLike | None = None, accel: AccelLike = None,
               **fields: Any) -> str:
        """Queue a generation and return its task id.

        The request is validated now (as the API answers 400) and the task is written to the store, so
        it outlives this process.

        Args:
            params: a request whose explicitly set fields are kept (fields left unset come from the
                model's native settings).
            store: where the task and its video go, when this call makes the queue (None: the default
                store).
            accel: the acceleration setting for this task (None: the backend's default).
            **fields: request fields (``prompt``, ``seed``, ``steps``, ...), as for ``generate``.

        Returns:
            The task id (a uuid4 string), for :meth:`task_result`, :meth:`wait` and :meth:`cancel`.

        Raises:
            ParamError: a request field that breaks its rule.
            QueueFull: the queue already holds as many waiting tasks as it may.

        Example:
            >>> task_id = pipe.submit(prompt="a red square moving right quickly")  # doctest: +SKIP
        """
        return self.task_queue(store).submit(params, store=store, accel=accel, **fields)

    def task_result(self, task_id: str) -> dict[str, Any]:
        """The task's state in the hosted API's shape, without waiting.

        With no queue in this process, it is read from the default store's task file (nothing starts).

        Args:
            task_id: an id :meth:`submit` returned.

        Returns:
            A dict with ``task`` (``status``, ``progress_percent``, ``eta``, ``reason``), ``videos``
            (the finished video's URL), ``images``, ``audios`` and ``extra``.

        Raises:
            TaskError: no task with this id (here or in the store), or its file cannot be read.

        Example:
            >>> pipe.task_result(task_id)["task"]["progress_percent"]  # doctest: +SKIP
            40
        """
        if self._task_queue is None:
            return _default_files().result(task_id)
        return self._task_queue.result(task_id)

    def wait(self, task_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Block until the task has finished and return its result.

        Args:
            task_id: an id :meth:`submit` returned.
            timeout: seconds to wait at most (None: no limit).

        Returns:
            The finished task's result, shaped as :meth:`task_result` returns it (status
            ``TASK_STATUS_SUCCEED`` or ``TASK_STATUS_FAILED`` with a readable reason).

        Raises:
            TaskError: no task with this id.
            TaskTimeout: the task is still queued or running after ``timeout`` seconds (it goes on).

        Example:
            >>> pipe.wait(task_id, timeout=600)["videos"][0]["video_url"]  # doctest: +SKIP
            'file:///.../video.mp4'
        """
        if self._task_queue is None:
            from .files import wait_file

            return wait_file(_default_files().result, task_id, timeout)
        return self._task_queue.wait(task_id, timeout=timeout)

    def cancel(self, task_id: str) -> dict[str, Any]:
        """Cancel a queued task; it ends FAILED with reason "cancelled ...".

        Args:
            task_id: an id :meth:`submit` returned.

        Returns:
            The cancelled task's result, shaped as :meth:`task_result` returns it.

        Raises:
            TaskError: no task with this id, or it has already started or finished.

        Example:
            >>> pipe.cancel(task_id)["task"]["status"]  # doctest: +SKIP
            'TASK_STATUS_FAILED'
        """
        return self.task_queue().cancel(task_id)

    def close(self) -> None:
        """Stop the task queue: running tasks finish, queued ones stay queued in the store."""
        with _LOCK:
            queue, self._task_queue = self._task_queue, None
        if queue is not None:
            queue.close()
