"""A candidate model beside the served one: shadow runs off the serving path, and A/B accounting.

**Shadow.** :meth:`Experiment.offer` is called by ``EdgeAgent.predict`` *after* the served
answer is built: it copies nothing the caller gets back, puts the rows on a bounded queue (a full
queue skips them, counted) and returns. One worker thread runs the candidate on the queued rows
and compares its answers with the served ones; whatever the candidate does (raise, hang, answer
slowly) happens in that thread, so the served answer is the control's byte for byte and its
latency is the control's plus one ``put_nowait`` and the CPU the shadow takes from it: the
thread runs at the lowest priority (nice 19), so on a busy board the served calls get the CPU
first and the shadow falls behind (docs/benchmarks.md measures the cost). A candidate slower than ``slow_ms`` per row is
counted slow; one that cannot keep up fills the queue and its rows are skipped, never waited for.
The candidate's answers are remembered by prediction number (the last ``memory`` of them), so a
delayed label scores both versions on the same row (the paired tally of
:mod:`edgewise_monitoring.experiment_test`).

**A/B.** The agent serves a request with the candidate when :func:`edgewise_wire.experiments.
request_arm` puts its key there; :meth:`Experiment.observe_served` and
:meth:`Experiment.observe_label` account each arm's rows, latency and labelled rows.

**Budget.** :func:`admit` refuses a candidate the device cannot hold beside the served model:
bigger than ``max_model_bytes``, or the two sessions above ``model_memory_bytes`` (the served
session's measured memory plus the candidate's artifact size before loading, its measured
session after).

Per window (:meth:`Experiment.roll`) one ``experiment`` telemetry record
(:mod:`edgewise_wire.experiments` describes and validates it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_agent.runtime import Features, InferenceRuntime
from edgewise_monitoring.experiment_test import ArmTally, PairedTally
from edgewise_monitoring.latency import LatencyHistogram
from edgewise_wire.experiments import ARMS, EXPERIMENT_KIND, MAX_CONFUSION_CELLS

log = logging.getLogger("edgewise.agent.shadow")

DEFAULT_QUEUE = 64  # calls waiting for the shadow; more are skipped
DEFAULT_SLOW_MS = 250.0  # per row: a shadow slower than this is counted slow
SHADOW_NICE = 19  # the shadow thread's nice value (the lowest priority)
OTHER = "*"  # the confusion cell for label pairs past MAX_CONFUSION_CELLS


class ShadowRefused(Exception):
    """The device will not run this candidate; the message is the reason it reports."""


def admit(candidate_size: int, *, control_session_bytes: int | None,
          candidate_session_bytes: int | None = None, max_model_bytes: int | None,
          model_memory_bytes: int | None) -> None:
    """Raise :class:`ShadowRefused` when the candidate does not fit (module docstring)."""
    if max_model_bytes is not None and candidate_size > max_model_bytes:
        raise ShadowRefused(f"candidate artifact is {candidate_size} bytes, above this "
                            f"device's max_model_bytes {max_model_bytes}")
    if model_memory_bytes is None:
        return
    control = control_session_bytes or 0
    candidate = candidate_session_bytes if candidate_session_bytes is not None \
        else candidate_size
    if control + candidate > model_memory_bytes:
        what = "measured" if candidate_session_bytes is not None else "at least (artifact size)"
        raise ShadowRefused(f"cannot hold two sessions: served model {control} bytes + candidate "
                            f"{what} {candidate} bytes > model_memory_bytes {model_memory_bytes}")


@dataclass
class _Arm:
    tally: ArmTally
    errors: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)  # per call, ms per row

    def record(self, memory: int | None) -> dict[str, Any]:
        t = self.tally
        out: dict[str, Any] = {"rows": t.calls, "labelled": t.n, "correct": t.correct,
                               "errors": self.errors, "latency_sum": t.latency_sum,
                               "latency_sumsq": t.latency_sumsq,
                               "latency": self.latency.to_dict()}
        if memory is not None:
            out["memory_bytes"] = memory
        return out


def _key(label: Any) -> str:
    return label if isinstance(label, str) else repr(label)


class Experiment:
    """One experiment on this device: the candidate's runtime, its worker, the window's tallies.

    ``mode`` ``"shadow"`` or ``"ab"``; ``sample`` the share of calls the shadow answers,
    ``share`` the share of keyed requests A/B serves with the candidate (1: every call, the
    candidate's devices of a split by device; 0: none, the control's devices, which then hold
    no candidate at all)."""

    def __init__(self, experiment_id: str, mode: str, candidate: InferenceRuntime | None, *,
                 sample: float = 1.0, share: float = 0.0, started_ts: float,
                 control_memory: int | None = None, queue_size: int = DEFAULT_QUEUE,
                 slow_ms: float = DEFAULT_SLOW_MS, memory: int = 20_000,
                 draw: Callable[[], float] | None = None,
                 candidate_ref: tuple[str, int] | None = None) -> None:
        if candidate is None and (mode == "shadow" or share > 0.0):
            raise ValueError("only an A/B control device (share 0) runs without the candidate")
        self.experiment_id = experiment_id
        # (model, version) of the candidate, whether or not this device holds it
        self.candidate_ref = candidate_ref if candidate_ref is not None else \
            (candidate.manifest.model, candidate.manifest.version) if candidate else ("", -1)
        self.mode = mode
        self.candidate = candidate
        self.sample = sample
        self.share = share
        self.control_memory = control_memory
        self.candidate_memory: int | None = getattr(candidate, "session_bytes", None)
        self.slow_ms = slow_ms
        self._draw = draw or np.random.default_rng().random
        self._memory = memory
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[int, Features, list[Any]] | None] = \
            queue.Queue(maxsize=queue_size)
        self._answers: OrderedDict[int, Any] = OrderedDict()  # prediction number -> shadow answer
        self._start_ts = started_ts
        self._reset()
        self._worker: threading.Thread | None = None
        self._closed = False
        if mode == "shadow":
            self._worker = threading.Thread(target=self._work, name="edgewise-shadow",
                                            daemon=True)
            self._worker.start()

    def _reset(self) -> None:
        self.arms = {arm: _Arm(ArmTally()) for arm in ARMS}
        self.paired = PairedTally()
        self.compared = self.agreed = self.skipped = self.failed = self.slow = 0
        self.confusion: Counter[tuple[str, str]] = Counter()

    # -- the serving path's calls (cheap, never blocking) ----------------------------------

    def offer(self, first: int, rows: Features, served: list[Any], latency_ms: float) -> None:
        """A served call (shadow mode): account the control, maybe queue it for the candidate.
        ``served`` is the list already built for the caller's answer; it is only read."""
        n = len(served)
        self.observe_served("control", n, latency_ms)
        if self._closed or (self.sample < 1.0 and self._draw() >= self.sample):
            return
        if isinstance(rows, np.ndarray):
            rows = rows.copy()  # the caller may reuse its array once it has its answer
        try:
            self._queue.put_nowait((first, rows, served))
        except queue.Full:
            with self._lock:
                self.skipped += n

    def observe_served(self, arm: str, rows: int, latency_ms: float, *,
                       failed: bool = False) -> None:
        per_row = latency_ms / max(rows, 1)
        with self._lock:
            a = self.arms[arm]
            if failed:
                a.errors += rows
                return
            a.tally.add(ArmTally(calls=rows, latency_sum=per_row * rows,
                                 latency_sumsq=per_row * per_row * rows))
            a.latency.record(per_row)

    def observe_label(self, number: int, arm: str, predicted: Any, truth: Any) -> None:
        """A delayed label for prediction ``number`` that ``arm`` served with ``predicted``.
        In shadow mode it scores both versions when the shadow answered that row."""
        with self._lock:
            if self.mode == "shadow":
                shadow = self._answers.get(number, _MISSING)
                if shadow is _MISSING:
                    return  # the shadow did not answer this row: no paired comparison
                control_right, candidate_right = predicted == truth, shadow == truth
                self.paired.observe(control_right, candidate_right)
                self.arms["control"].tally.add(ArmTally(1, int(control_right)))
                self.arms["candidate"].tally.add(ArmTally(1, int(candidate_right)))
            else:
                self.arms[arm].tally.add(ArmTally(1, int(predicted == truth)))

    # -- the shadow's thread ----------------------------------------------------------------

    def _work(self) -> None:
        # the lowest CPU priority for this thread only (Linux schedules threads as tasks): when
        # the board is busy, the served calls get the CPU and the shadow falls behind (its rows
        # are skipped and counted) instead of slowing them
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SHADOW_NICE)
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._shadow(*item)
            finally:
                self._queue.task_done()

    def _shadow(self, first: int, rows: Features, served: list[Any]) -> None:
        n = len(served)
        started = time.perf_counter()
        try:
            assert self.candidate is not None  # a shadow always holds its candidate
            answers = self.candidate.run(rows).labels.tolist()
        except Exception as exc:  # any failure of the candidate is its own, counted
            with self._lock:
                self.failed += n
                self.arms["candidate"].errors += n
            log.debug("shadow %s failed on %d rows: %s", self.experiment_id, n, exc)
            return
        latency_ms = (time.perf_counter() - started) * 1000.0
        per_row = latency_ms / max(n, 1)
        with self._lock:
            self.arms["candidate"].tally.add(ArmTally(
                calls=n, latency_sum=latency_ms, latency_sumsq=per_row * per_row * n))
            self.arms["candidate"].latency.record(per_row)
            if per_row > self.slow_ms:
                self.slow += n
            self.compared += n
            for i, (mine, theirs) in enumerate(zip(served, answers, strict=False)):
                if mine == theirs:
                    self.agreed += 1
                cell = (_key(mine), _key(theirs))
                if cell not in self.confusion and len(self.confusion) >= \
                        MAX_CONFUSION_CELLS - 1:
                    cell = (OTHER, OTHER)
                self.confusion[cell] += 1
                self._answers[first + i] = theirs
            while len(self._answers) > self._memory:
                self._answers.popitem(last=False)

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait until the queued calls are answered (tests, and a clean stop)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)
        return not self._queue.unfinished_tasks

    # -- the window -------------------------------------------------------------------------

    def roll(self, now: float) -> dict[str, Any]:
        """The window's ``experiment`` record; the tallies start again."""
        with self._lock:
            record: dict[str, Any] = {
                "kind": EXPERIMENT_KIND, "ts": now, "start_ts": self._start_ts,
                "experiment_id": self.experiment_id, "mode": self.mode,
                "arms": {"control": self.arms["control"].record(self.control_memory),
                         "candidate": self.arms["candidate"].record(self.candidate_memory)}}
            if self.mode == "shadow":
                record["shadow"] = {
                    "compared": self.compared, "agreed": self.agreed, "skipped": self.skipped,
                    "failed": self.failed, "slow": self.slow, "paired": self.paired.to_dict(),
                    "confusion": [[a, b, c] for (a, b), c in sorted(self.confusion.items())]}
            self._reset()
            self._start_ts = now
        return record

    def close(self) -> None:
        """Stop the worker (it finishes the call it is on); the runtime is dropped."""
        if self._closed:
            return
        self._closed = True
        if self._worker is not None:
            while True:
                try:
                    self._queue.put_nowait(None)
                    break
                except queue.Full:  # calls still waiting are dropped: the shadow ends here
                    with contextlib.suppress(queue.Empty):
                        self._queue.get_nowait()
                        self._queue.task_done()


_MISSING = object()


def refusal_record(experiment_id: str, mode: str, reason: str, now: float) -> dict[str, Any]:
    """The one window a device reports when it refuses the candidate."""
    return {"kind": EXPERIMENT_KIND, "ts": now, "start_ts": now, "experiment_id": experiment_id,
            "mode": mode, "refused": reason}
