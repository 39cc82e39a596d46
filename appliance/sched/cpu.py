"""One scheduler for the CPU-bound model work (Whisper, the turn model, Piper), with lanes.

The box has two cores. A caller on the line waits for every millisecond of their turn's
transcript and reply audio; a WhatsApp voice note (up to 300 s, four may arrive at once) has
nobody waiting on a line. So every model job goes through this scheduler:

* ``Lane.LIVE`` (a caller is waiting: the turn's transcript, the reply's audio) runs first,
* ``Lane.SPECULATIVE`` (may be thrown away: the turn model's score at a pause) next,
* ``Lane.NOTE`` (voice notes, cut into 30 s windows by sched/lanes.py) last: at most
  ``lane_limits[NOTE]`` note jobs run at once (so with two workers one is always free for a
  call), and a note job starts only once no live or speculative job has run or waited for
  ``holdoff_s`` (``yielding``): notes fill the gaps in the calls (while callers speak) instead
  of sharing the cores with a turn, or with the reply audio that follows the model's answer.

Within a lane jobs run by deadline, then in submission order: a job's deadline is when it
was queued unless the submitter names a later one (``submit_by``). Piper's next chunk for a
reply that still has seconds of audio queued for the caller is due only when that audio runs
out, so another caller's first words, due now, go first (at 5-6 calls on 2 cores several turns
end at once; bench/results/capacity.md). A job is never pre-empted; a queued job whose
future was cancelled (a pause the caller spoke through) is dropped without running.
``pick`` (which job runs next) is pure; `CpuScheduler` adds the threads around it.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from enum import IntEnum
from typing import ParamSpec, TypeVar

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")


class Lane(IntEnum):
    """Lower value = higher priority."""

    LIVE = 0
    SPECULATIVE = 1
    NOTE = 2


@dataclass(frozen=True)
class JobEvent:
    seq: int          # submission order, unique per scheduler
    lane: Lane
    kind: str         # queued | started | done | dropped
    at: float         # time.perf_counter() seconds


@dataclass
class _Job:
    seq: int
    lane: Lane
    run: Callable[[], object]
    future: Future[object]
    queued_at: float
    deadline: float               # time.perf_counter() seconds: when it should start at the latest


@dataclass(frozen=True)
class Waiting:
    """What `pick` needs of a queued job."""

    seq: int
    lane: Lane
    deadline: float = 0.0


def pick(queue: Sequence[Waiting], running: Mapping[Lane, int], limits: Mapping[Lane, int],
         yielding: frozenset[Lane] = frozenset(), quiet: bool = True) -> int | None:
    """Index in ``queue`` of the job to run next: the best lane, then the earliest deadline,
    then the oldest, among lanes
    under their limit of jobs running at once; a ``yielding`` lane only while no job of a
    better lane runs or waits and the better lanes have been ``quiet`` (for the hold-off).
    None when nothing may start."""
    best: int | None = None
    for i, job in enumerate(queue):
        limit = limits.get(job.lane)
        if limit is not None and running.get(job.lane, 0) >= limit:
            continue
        if job.lane in yielding and (
                not quiet or any(running.get(lane, 0) for lane in Lane if lane < job.lane)
                or any(other.lane < job.lane for other in queue)):
            continue
        if best is None or (job.lane, job.deadline, job.seq) < (
                queue[best].lane, queue[best].deadline, queue[best].seq):
            best = i
    return best


@dataclass
class LaneStats:
    done: int = 0
    dropped: int = 0
    max_wait_ms: float = 0.0


Observer = Callable[[JobEvent], None]


class CpuScheduler:
    """``workers`` threads shared by every CPU-bound model; see the module docstring."""

    def __init__(self, workers: int, lane_limits: Mapping[Lane, int] | None = None,
                 yielding: frozenset[Lane] = frozenset({Lane.NOTE}),
                 holdoff_s: float = 1.0) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.workers = workers
        self.limits = dict({Lane.NOTE: 1} if lane_limits is None else lane_limits)
        self.yielding = yielding
        self.holdoff_s = holdoff_s
        self._busy_at = -math.inf       # when a job of a lane that is not yielding last ran
        self._cond = threading.Condition()
        self._queue: list[_Job] = []
        self._running: dict[Lane, int] = {lane: 0 for lane in Lane}
        self._stats: dict[Lane, LaneStats] = {lane: LaneStats() for lane in Lane}
        self._seq = itertools.count(1)
        self._observers: list[Observer] = []
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"cpu-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def executor(self, lane: Lane) -> LaneExecutor:
        """A concurrent.futures.Executor whose jobs go into ``lane``."""
        return LaneExecutor(self, lane)

    def subscribe(self, observer: Observer) -> None:
        """Called (from any thread) for each job event; tests and the bench watch the order."""
        self._observers.append(observer)

    def submit(self, lane: Lane, fn: Callable[P, T], /, *args: P.args,
               **kwargs: P.kwargs) -> Future[T]:
        return self.submit_by(lane, None, lambda: fn(*args, **kwargs))

    def submit_by(self, lane: Lane, deadline: float | None, fn: Callable[[], T]) -> Future[T]:
        """``fn()`` in ``lane``, due at ``deadline`` (time.perf_counter() seconds; None or
        earlier than now: now)."""
        future: Future[T] = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the CPU scheduler is shut down")
            now = time.perf_counter()
            job = _Job(next(self._seq), lane, fn, future, now,  # type: ignore[arg-type]
                       now if deadline is None else max(now, deadline))
            self._queue.append(job)
            if lane not in self.yielding:
                self._busy_at = job.queued_at
            self._cond.notify()
        self._emit(job, "queued")
        return future

    def queued(self) -> dict[str, int]:
        with self._cond:
            return {lane.name.lower(): sum(1 for j in self._queue if j.lane is lane)
                    for lane in Lane}

    def status(self) -> dict[str, object]:
        """For /healthz: workers, jobs waiting and done per lane, the longest wait."""
        with self._cond:
            stats = {lane.name.lower(): {"done": s.done, "dropped": s.dropped,
                                         "max_wait_ms": round(s.max_wait_ms, 1)}
                     for lane, s in self._stats.items()}
        return {"workers": self.workers, "queued": self.queued(), "lanes": stats}

    def shutdown(self, wait: bool = False) -> None:
        """Queued jobs are cancelled; running ones finish."""
        with self._cond:
            self._closed = True
            dropped, self._queue = self._queue, []
            self._cond.notify_all()
        for job in dropped:
            job.future.cancel()
        if wait:
            for thread in self._threads:
                thread.join()

    # -- the worker threads ---------------------------------------------------------------------
    def _next(self) -> _Job | None:
        """Under the lock: the job to start now (drops cancelled ones), or None."""
        while True:
            waiting = [Waiting(j.seq, j.lane, j.deadline) for j in self._queue]
            i = pick(waiting, self._running, self.limits, self.yielding,
                     quiet=self._holdoff_left() == 0)
            if i is None:
                return None
            job = self._queue.pop(i)
            if job.future.set_running_or_notify_cancel():
                self._running[job.lane] += 1
                stats = self._stats[job.lane]
                stats.max_wait_ms = max(stats.max_wait_ms,
                                        (time.perf_counter() - job.queued_at) * 1000)
                return job
            self._stats[job.lane].dropped += 1
            self._emit(job, "dropped")

    def _work(self) -> None:
        while True:
            with self._cond:
                job = self._next()
                while job is None and not self._closed:
                    self._cond.wait(self._holdoff_left() or None)
                    job = self._next()
                if job is None:
                    return
            self._emit(job, "started")
            try:
                job.future.set_result(job.run())
            except BaseException as exc:  # noqa: BLE001 - handed to whoever awaits the job
                job.future.set_exception(exc)
            with self._cond:
                self._running[job.lane] -= 1
                self._stats[job.lane].done += 1
                if job.lane not in self.yielding:
                    self._busy_at = time.perf_counter()
                self._cond.notify_all()
            self._emit(job, "done")

    def _holdoff_left(self) -> float:
        """Under the lock: seconds until yielding lanes may start (0: now)."""
        return max(0.0, self.holdoff_s - (time.perf_counter() - self._busy_at))

    def _emit(self, job: _Job, kind: str) -> None:
        event = JobEvent(job.seq, job.lane, kind, time.perf_counter())
        for observer in self._observers:
            try:
                observer(event)
            except Exception:  # noqa: BLE001 - an observer never breaks the scheduler
                log.exception("cpu scheduler observer failed")


@dataclass
class LaneExecutor(Executor):
    """The scheduler seen as a plain Executor (run_in_executor, faster-whisper's executor=)."""

    scheduler: CpuScheduler
    lane: Lane

    def submit(self, fn: Callable[P, T], /, *args: P.args,  # type: ignore[override]
               **kwargs: P.kwargs) -> Future[T]:
        return self.scheduler.submit(self.lane, fn, *args, **kwargs)

    def submit_by(self, deadline: float | None, fn: Callable[[], T]) -> Future[T]:
        """``fn()`` due at ``deadline`` (time.perf_counter() seconds); see CpuScheduler."""
        return self.scheduler.submit_by(self.lane, deadline, fn)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """The scheduler is shared: shutting one lane's view down does nothing."""
