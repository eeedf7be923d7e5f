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

_LOCK = threading.Lock()


def _default_files() -> Any:
    from ..store import default_store_path
    from .files import TaskFiles

    return TaskFiles(default_store_path())


class TaskMethods:
    """Mixin: the asynchronous shape of the hosted API on a backend (see the module docstring)."""

    _task_queue: Any = None

    def task_queue(self, store: Any = None) -> Any:
        """This backend's task queue, made on first use (with ``store``, or the default store)."""
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
        """Whether this backend has made its task queue (a ``submit`` or ``cancel`` does; reading a
        result or waiting for one before that starts nothing and reads the store's task files).

        >>> pipe.task_result(task_id); pipe.queue_started  # doctest: +SKIP
        False
        """
        return self._task_queue is not None

    def submit(self, params: Any = None, *, store: Any = None, accel: Any = None, **fields: Any) -> str:
        """Queue a generation.

        Returns its task id (a uuid4 string). The request is validated now (bad fields raise
        :class:`~wanlab.ParamError`, as the API answers 400) and the task written to the store, so it
        outlives this process.

        >>> task_id = pipe.submit(prompt="a red square moving right quickly")  # doctest: +SKIP
        """
        return self.task_queue(store).submit(params, store=store, accel=accel, **fields)

    def task_result(self, task_id: str) -> dict[str, Any]:
        """The task's state in the hosted API's shape (``task``, ``images``, ``videos``, ``audios``, ``extra``).

        With no queue in this process, as the default store's task file says (nothing starts).
        """
        if self._task_queue is None:
            return _default_files().result(task_id)
        return self._task_queue.result(task_id)

    def wait(self, task_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Block until the task has finished and return its result (TaskTimeout after ``timeout`` s)."""
        if self._task_queue is None:
            from .files import wait_file

            return wait_file(_default_files().result, task_id, timeout)
        return self._task_queue.wait(task_id, timeout=timeout)

    def cancel(self, task_id: str) -> dict[str, Any]:
        """Cancel a queued task (it ends FAILED, reason "cancelled ..."); TaskError once it has started."""
        return self.task_queue().cancel(task_id)

    def close(self) -> None:
        """Stop the task queue: running tasks finish, queued ones stay queued in the store."""
        with _LOCK:
            queue, self._task_queue = self._task_queue, None
        if queue is not None:
            queue.close()
