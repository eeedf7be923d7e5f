"""Which worker of a pool runs which job next: a queue with affinity, calibration gates and retries.

Pure Python (no Ray), so its rules are tested on their own:

- jobs run oldest first; a job retried after its worker died goes to the front;
- jobs sharing an ``affinity`` run on the worker that ran the first of them (an acceleration study
  compares timings from one GPU, never two); the binding moves only when that worker is lost;
- the first job that needs a MagCache calibration runs alone; the others needing the same one wait
  for it and then carry its result to their workers, so the calibration is measured once per pool
  (and no worker sits on a file lock meanwhile: it runs other jobs).
"""
from __future__ import annotations

import collections
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..backend import Job

#: Affinity bindings kept (oldest forgotten first): a service's studies come and go.
MAX_BINDINGS = 10_000


@dataclass(eq=False)
class Ticket:
    """One job on its way through a pool: the job, the future its caller holds and what routing needs.

    ``loras`` are the driver's descriptions of the job's LoRA files (the worker must read the same
    bytes, under the same ``lora_policy``); ``calibration_group`` names the MagCache calibration the
    job needs (None: none); ``calibration`` is that calibration when another worker has measured it;
    ``attempts`` counts the workers that died under it; ``started`` says its future is marked running
    (a retry keeps it so).
    """

    job: Job
    future: Future = field(default_factory=Future)
    loras: list[dict[str, Any]] = field(default_factory=list)
    calibration_group: str | None = None
    calibration: dict[str, Any] | None = None
    lora_policy: Any = None
    attempts: int = 0
    calibrating: bool = False
    started: bool = False

    @property
    def affinity(self) -> str | None:
        """The worker this job should run on (the one that ran its first job), or None."""
        return self.job.affinity


class Scheduler:
    """The pool's queue of tickets and the rules of who takes which (see the module docstring)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: collections.deque[Ticket] = collections.deque()
        self._bound: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._workers: set[str] = set()
        self._calibrating: dict[str, str] = {}
        self._calibrations: dict[str, dict[str, Any]] = {}
        self._closed = False

    # --- workers ---------------------------------------------------------------------------------------
    def join(self, worker: str) -> None:
        """``worker`` takes jobs (again, after a restart).

        Args:
            worker: the worker's name.
        """
        with self._cond:
            self._workers.add(worker)
            self._cond.notify_all()

    def leave(self, worker: str) -> None:
        """``worker`` is gone (died, refused, restarting): its affinities and calibration gates are released.

        Args:
            worker: the worker's name.
        """
        with self._cond:
            self._workers.discard(worker)
            for affinity in [a for a, w in self._bound.items() if w == worker]:
                del self._bound[affinity]
            for group in [g for g, w in self._calibrating.items() if w == worker]:
                del self._calibrating[group]
            self._cond.notify_all()

    # --- tickets ---------------------------------------------------------------------------------------
    def put(self, ticket: Ticket) -> None:
        """Queue a ticket at the back.

        Args:
            ticket: the job's ticket.

        Raises:
            RuntimeError: the pool is closed.
        """
        with self._cond:
            if self._closed:
                raise RuntimeError("the pool is closed")
            self._queue.append(ticket)
            self._cond.notify_all()

    def take(self, worker: str, timeout: float | None = None) -> Ticket | None:
        """The next ticket ``worker`` may run, waiting for one; None once closed (or after ``timeout``).

        The ticket's future is marked running here; cancelled ones are dropped. A ticket bound to
        another live worker (its affinity) waits for it, and one whose calibration another worker is
        measuring waits for that.

        Args:
            worker: the worker asking.
            timeout: seconds to wait at most (None: until a ticket or closing).

        Returns:
            The ticket, or None.
        """
        with self._cond:
            while not self._closed:
                ticket = self._pick(worker)
                if ticket is not None:
                    return ticket
                if not self._cond.wait(timeout) and timeout is not None:
                    return None
            return None

    def _pick(self, worker: str) -> Ticket | None:
        for ticket in list(self._queue):
            if not ticket.started and ticket.future.cancelled():
                self._queue.remove(ticket)
                continue
            owner = self._bound.get(ticket.affinity) if ticket.affinity is not None else None
            if owner is not None and owner != worker and owner in self._workers:
                continue
            group = ticket.calibration_group
            if group is not None and group not in self._calibrations and self._calibrating.get(group, worker) != worker:
                continue  # another worker is measuring the calibration this job needs
            self._queue.remove(ticket)
            if not ticket.started:
                if not ticket.future.set_running_or_notify_cancel():
                    continue
                ticket.started = True
            if ticket.affinity is not None:
                self._bound[ticket.affinity] = worker
                self._bound.move_to_end(ticket.affinity)
                while len(self._bound) > MAX_BINDINGS:
                    self._bound.popitem(last=False)
            if group is not None:
                ticket.calibration = self._calibrations.get(group)
                ticket.calibrating = ticket.calibration is None
                if ticket.calibrating:
                    self._calibrating[group] = worker
            return ticket
        return None

    def retry(self, ticket: Ticket) -> None:
        """Queue a ticket again at the front (it has waited longest).

        Its worker died under it. Its future stays running.

        Args:
            ticket: the ticket to run again.

        Raises:
            RuntimeError: the pool is closed (then the caller fails it).
        """
        with self._cond:
            self._release(ticket)
            if self._closed:
                raise RuntimeError("the pool is closed")
            self._queue.appendleft(ticket)
            self._cond.notify_all()

    def done(self, ticket: Ticket, calibration: dict[str, Any] | None = None) -> None:
        """A ticket ended (its future is set); a calibration it measured is kept for the others.

        Args:
            ticket: the ticket.
            calibration: the MagCache calibration it measured (None: none).
        """
        with self._cond:
            if ticket.calibrating and calibration is not None and ticket.calibration_group is not None:
                self._calibrations[ticket.calibration_group] = dict(calibration)
            self._release(ticket)
            self._cond.notify_all()

    def _release(self, ticket: Ticket) -> None:
        if ticket.calibrating and ticket.calibration_group is not None:
            self._calibrating.pop(ticket.calibration_group, None)
        ticket.calibrating = False

    def queued(self) -> int:
        """How many tickets wait for a worker.

        Returns:
            The count.
        """
        with self._cond:
            return len(self._queue)

    def drain(self) -> list[Ticket]:
        """Remove and return every queued ticket (no worker is left to run them, or the pool closes).

        Returns:
            The tickets, in queue order.
        """
        with self._cond:
            tickets = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
            return tickets

    def close(self) -> list[Ticket]:
        """Stop handing out tickets.

        Returns:
            The tickets still queued.
        """
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        return self.drain()

    @property
    def closed(self) -> bool:
        """Whether the pool closed the queue (it takes no more tickets)."""
        with self._cond:
            return self._closed
