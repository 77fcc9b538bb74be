"""A version's windows added up per time bucket, remembered between calls.

Reading a window means parsing its summary JSON (a few KB, most of it histograms), and that is
nearly all the cost of a drift view: 6,000 windows of 64 features take seconds. A dashboard
polls every few seconds while, in a minute, only the newest bucket gains windows. So each
bucket's tally is kept with a signature of the windows it holds (how many, the newest arrival,
the sum of their ends), read with one light query that parses nothing; only the buckets whose
signature changed are read again. Windows are inserted once and never updated, so an equal
signature means an equal bucket.
"""

from __future__ import annotations

import json
import threading
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from controller.monitoring.drift_series import Reference, Tally, collect
from controller.storage.db import Database
from controller.storage.tables import metrics
from controller.timebuckets import BucketPlan

MAX_WINDOWS = 100_000  # windows one call parses at most (the newest buckets first)
MEMO_BYTES = 32 * 1024 * 1024  # counts kept between calls, at most

# windows, newest received_at, sum of window ends in ms (integers: exact in any order)
Signature = tuple[int, float, int]


def parse_summary(text: str) -> dict[str, Any]:
    """A stored summary, or ``{}`` (which every view skips as malformed) if it is not one."""
    try:
        summary = json.loads(text)
    except ValueError:
        return {}
    return summary if isinstance(summary, dict) else {}


@dataclass
class BucketRead:
    tallies: list[Tally]  # one per bucket of the plan
    skipped: Counter[str]  # windows left out, by reason
    seen: int  # windows in the range, read now or before
    truncated: bool  # some buckets were not read: more than MAX_WINDOWS to parse


@dataclass
class _Memo:
    signature: Signature
    tally: Tally
    skipped: Counter[str]


class BucketTallies:
    def __init__(self, db: Database, max_windows: int = MAX_WINDOWS,
                 memo_bytes: int = MEMO_BYTES) -> None:
        self.db = db
        self.max_windows = max_windows
        self.memo_bytes = memo_bytes
        self._memo: OrderedDict[tuple[Any, ...], _Memo] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def read(self, model: str, version: int, reference: Reference,
             plan: BucketPlan) -> BucketRead:
        """Every bucket's tally of ``model:version``'s windows that end in it; buckets whose
        windows changed since the last call are read again, the newest first."""
        signatures = self._signatures(model, version, plan)
        keys = [(model, version, reference.profile_id, plan.size, plan.bucket_start(i))
                for i in range(plan.count)]
        tallies = [Tally.empty(reference) for _ in range(plan.count)]
        skipped: Counter[str] = Counter()
        stale = []
        with self._lock:
            for i, key in enumerate(keys):
                memo = self._memo.get(key)
                if i not in signatures:
                    continue  # no windows: an empty tally
                if memo is not None and memo.signature == signatures[i]:
                    tallies[i] = memo.tally
                    skipped.update(memo.skipped)
                else:
                    stale.append(i)
        budget, chosen = self.max_windows, []
        for i in reversed(stale):  # the newest buckets matter most
            if signatures[i][0] > budget:
                break
            budget -= signatures[i][0]
            chosen.append(i)
        for i, memo in self._read(model, version, reference, plan, sorted(chosen)).items():
            tallies[i] = memo.tally
            skipped.update(memo.skipped)
            self._remember(keys[i], memo)
        return BucketRead(tallies, skipped, sum(s[0] for s in signatures.values()),
                          truncated=len(chosen) < len(stale))

    def _signatures(self, model: str, version: int, plan: BucketPlan) -> dict[int, Signature]:
        m = metrics.c
        q = sa.select(m.window_end, m.received_at).where(
            m.model == model, m.version == version, m.window_end >= plan.start,
            m.window_end < plan.end)
        with self.db.read() as conn:
            rows = conn.execute(q).all()
        return _signatures(plan, ((float(r.window_end), float(r.received_at)) for r in rows))

    def _read(self, model: str, version: int, reference: Reference, plan: BucketPlan,
              buckets: Sequence[int]) -> dict[int, _Memo]:
        """The buckets' windows, one query per run of neighbouring buckets."""
        m = metrics.c
        per_bucket: dict[int, list[Any]] = {i: [] for i in buckets}
        with self.db.read() as conn:
            for first, last in _runs(buckets):
                q = sa.select(m.device_id, m.window_end, m.received_at, m.summary_json).where(
                    m.model == model, m.version == version,
                    m.window_end >= plan.bucket_start(first),
                    m.window_end < plan.bucket_start(last + 1))
                for r in conn.execute(q):
                    index = plan.index(float(r.window_end))
                    if index in per_bucket:
                        per_bucket[index].append(r)
        out = {}
        for i, rows in per_bucket.items():
            kept, skipped = collect(reference, ((r.device_id, float(r.window_end),
                                                 parse_summary(r.summary_json)) for r in rows))
            tally = Tally.empty(reference)
            for w in kept:
                tally.add(w)
            signature = _signatures(plan, ((float(r.window_end), float(r.received_at))
                                           for r in rows)).get(i, (0, 0.0, 0))
            out[i] = _Memo(signature, tally, skipped)
        return out

    def _remember(self, key: tuple[Any, ...], memo: _Memo) -> None:
        size = memo.tally.counts.nbytes
        with self._lock:
            old = self._memo.pop(key, None)
            if old is not None:
                self._bytes -= old.tally.counts.nbytes
            while self._memo and self._bytes + size > self.memo_bytes:
                _, evicted = self._memo.popitem(last=False)  # the longest kept
                self._bytes -= evicted.tally.counts.nbytes
            self._memo[key] = memo
            self._bytes += size


def _signatures(plan: BucketPlan, rows: Any) -> dict[int, Signature]:
    out: dict[int, Signature] = {}
    for end, received in rows:
        i = plan.index(end)
        if i is None:
            continue
        n, newest, ends = out.get(i, (0, 0.0, 0))
        out[i] = (n + 1, max(newest, received), ends + round(end * 1000))
    return out


def _runs(buckets: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted bucket numbers as (first, last) runs of neighbours: 1,2,3,7 -> (1,3),(7,7)."""
    runs: list[tuple[int, int]] = []
    for i in buckets:
        if runs and runs[-1][1] == i - 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs
