"""The collected data as a training set, on both backends: an export's rows are exactly the
predictions the devices produced (per device and seq), in either record form; labels join by
prediction id; nothing matched is a one-line error; retention deletes exactly what it reports."""

from __future__ import annotations

import dataclasses
import io
import json
import random
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from controller.data.export import Exporter
from controller.data.export_query import EmptyExport, ExportQuery, Sampling, parse_sampling
from controller.data.export_writers import stream, write
from controller.data.retention import apply_retention
from controller.errors import NotFoundError, ValidationError
from controller.fleet.ingest_wire import decode_telemetry
from controller.fleet.telemetry_store import TelemetryStore
from controller.models.registry import ModelRegistry
from controller.storage.db import Database
from controller.storage.tables import devices
from edge_agent.telemetry.records import CallRecords, encode_pending
from edgewise_wire import Manifest, TelemetryBatch
from edgewise_wire.codec import encode_telemetry_spliced


def produce(store: TelemetryStore, device: str, epoch: int, calls: list[CallRecords],
            extra: list[dict[str, Any]], columnar: bool, boot: str) -> None:
    """What an agent would send: its pending records encoded for the outbox, given seqs,
    spliced into one batch, decoded and stored as the controller's ingest does."""
    bodies = encode_pending([*calls, *extra], boot, columnar)
    seqs = list(enumerate(bodies, start=1))
    payload = encode_telemetry_spliced(1, len(bodies), seqs, 0, epoch, ts=1.0)
    assert payload is not None
    store.store_group([decode_telemetry(payload, device, 2.0)])


def calls(n_calls: int, model: str, version: int, ts0: float, rng: random.Random
          ) -> list[CallRecords]:
    out, first = [], 0
    for k in range(n_calls):
        rows = rng.randint(1, 5)
        x = np.array([[rng.random(), rng.random()] for _ in range(rows)], dtype=np.float32)
        labels = [rng.randint(0, 1) for _ in range(rows)]
        out.append(CallRecords(ts0 + k, model, version, first, 0.25, labels,
                               [0.5 + rng.random() / 2 for _ in range(rows)], range(rows), x))
        first += rows
    return out


@pytest.fixture
def pushed(registry: ModelRegistry, make_manifest: Callable[..., Manifest]) -> Manifest:
    artifact = b"\x08\x07" * 100
    registry.register(make_manifest(artifact), artifact)
    return registry.get_manifest("iris")


def test_export_rows_equal_what_the_devices_produced(
        db: Database, registry: ModelRegistry, pushed: Manifest, tmp_path: Path) -> None:
    store = TelemetryStore(db)
    rng = random.Random(7)
    produced: Counter[tuple[str, str]] = Counter()  # (device, prediction id)
    version = pushed.version
    for d, columnar in (("dev-a", True), ("dev-b", False), ("dev-c", True)):
        cs = calls(30, "iris", version, 1000.0, rng)
        boot = f"b{d[-1]}"
        fb = [{"kind": "feedback", "ts": 2000.0, "prediction_id": f"{boot}-{i}", "truth": 1,
               "model": "iris", "version": version, "correct": True} for i in range(0, 20, 2)]
        produce(store, d, 5, cs, fb, columnar, boot)
        for c in cs:
            for i in c.sampled:
                produced[(d, f"{boot}-{c.first + i}")] += 1
    # the views count a columnar row as the predictions it holds
    for d in ("dev-a", "dev-b", "dev-c"):
        assert store.device_summary(d)["predictions"] == sum(
            v for (dev, _), v in produced.items() if dev == d)
    out = tmp_path / "iris.parquet"
    summary = write(Exporter(db, pushed, ExportQuery("iris")), "parquet", out)
    table = pq.read_table(out)
    got = Counter(zip(table.column("device_id").to_pylist(),
                      table.column("prediction_id").to_pylist(), strict=True))
    assert got == produced and summary.rows == sum(produced.values())
    assert summary.devices == 3 and summary.labelled == 30
    assert table.column_names[-2:] == ["a", "b"]
    cols = table.to_pydict()
    inputs_known = [a is not None for a, dev in zip(cols["a"], cols["device_id"], strict=True)
                    if dev != "dev-b"]
    assert all(inputs_known)  # columnar records carry the inputs
    assert all(a is None for a, dev in zip(cols["a"], cols["device_id"], strict=True)
               if dev == "dev-b")
    assert set(cols["version"]) == {version}
    # the same through the stream, as CSV, labelled only
    data = b"".join(stream(Exporter(db, pushed, ExportQuery("iris", labelled_only=True)), "csv"))
    csv = pcsv.read_csv(io.BytesIO(data))
    assert csv.num_rows == 30 and set(csv.column("label").to_pylist()) == {1}


def test_selector_since_and_nothing_matched(db: Database, pushed: Manifest) -> None:
    store = TelemetryStore(db)
    produce(store, "dev-a", 1, calls(5, "iris", pushed.version, 1000.0, random.Random(1)), [],
            True, "x")
    with pytest.raises(EmptyExport, match="no predictions of iris since ts 5000"):
        write(Exporter(db, pushed, ExportQuery("iris", since=5000.0)), "parquet",
              io.BytesIO())
    with pytest.raises(EmptyExport, match="matching 'site=nowhere'"):
        next(stream(Exporter(db, pushed, ExportQuery("iris", selector="site=nowhere")),
                    "parquet"))


def test_unknown_model_is_not_found(registry: ModelRegistry, pushed: Manifest) -> None:
    with pytest.raises(NotFoundError):
        registry.get_manifest("no-such-model")
    with pytest.raises(NotFoundError):
        registry.get_manifest("iris", 99)


def test_retention_deletes_exactly_what_it_reports(db: Database) -> None:
    store = TelemetryStore(db)
    recs = [{"seq": s, "kind": "error", "ts": float(s * 86_400), "reason": "x"}
            for s in range(1, 41)]
    store.store_batch("d1", TelemetryBatch(1, 40, recs, ts=1.0), received_at=1.0)
    now = 41 * 86_400.0
    # older than 10 days: ts < 31 days -> seqs 1..30
    r = apply_retention(db, days=10, max_rows=None, now=now)
    assert (r.deleted_by_age, r.deleted_by_rows, r.kept) == (30, 0, 10)
    assert store.seqs("d1") == list(range(31, 41))
    r = apply_retention(db, days=None, max_rows=4, now=now)
    assert (r.deleted_by_age, r.deleted_by_rows, r.kept) == (0, 6, 4)
    assert store.seqs("d1") == [37, 38, 39, 40]
    r = apply_retention(db, days=100, max_rows=4, now=now)
    assert r.deleted == 0 and r.kept == 4
    assert apply_retention(db, days=None, max_rows=0, now=now).deleted_by_rows == 4
    assert store.count() == 0


def _label_devices(db: Database, labels: dict[str, dict[str, str]]) -> None:
    with db.write() as conn:
        for device, own in labels.items():
            conn.execute(devices.update().where(devices.c.device_id == device)
                         .values(labels_json=json.dumps(own)))


def test_sampling_keeps_each_groups_share_the_same_rows_for_the_same_seed(
        db: Database, pushed: Manifest) -> None:
    store = TelemetryStore(db)
    rng = random.Random(3)
    produced: dict[str, set[str]] = {}
    groups = {"c-1": "canary", "c-2": "canary", "s-1": "stable", "s-2": "stable", "s-3": "stable"}
    for i, device in enumerate(groups):
        cs = calls(300, "iris", pushed.version, 1000.0, rng)  # ~900 predictions each
        boot = f"boot{i}"
        # both record forms: the columnar path and the row path must sample alike
        produce(store, device, 1, cs, [], columnar=i % 2 == 0, boot=boot)
        produced[device] = {f"{boot}-{c.first + j}" for c in cs for j in c.sampled}
    _label_devices(db, {d: {"group": g} for d, g in groups.items()})

    def export(sampling: Sampling) -> Any:
        out = io.BytesIO()
        write(Exporter(db, pushed, ExportQuery("iris", sampling=sampling)), "parquet", out)
        return pq.read_table(io.BytesIO(out.getvalue()))

    sampling = parse_sampling(0.2, "group", ["canary=1"], seed=11)
    assert sampling is not None
    table = export(sampling)
    rows = list(zip(table.column("device_id").to_pylist(),
                    table.column("prediction_id").to_pylist(),
                    table.column("sample_share").to_pylist(), strict=True))
    kept: dict[str, set[str]] = {d: set() for d in groups}
    for device, pid, share in rows:
        assert pid not in kept[device]  # nothing doubled
        kept[device].add(pid)
        assert share == (1.0 if groups[device] == "canary" else 0.2)
    for device, group in groups.items():
        assert kept[device] <= produced[device]
        if group == "canary":
            assert kept[device] == produced[device]  # its own share: every prediction
    stable = [d for d, g in groups.items() if g == "stable"]
    stable_kept = sum(len(kept[d]) for d in stable)
    stable_made = sum(len(produced[d]) for d in stable)
    # a fifth, within 6 standard deviations of a binomial draw (seeded: the same every run)
    sd = (stable_made * 0.2 * 0.8) ** 0.5
    assert abs(stable_kept - 0.2 * stable_made) < 6 * sd
    assert all(0 < len(kept[d]) < len(produced[d]) for d in stable)  # both forms sampled
    # scaled by 1/share, the sample estimates the count
    assert abs(sum(1 / s for _, _, s in rows) - sum(map(len, produced.values()))) < 6 * sd / 0.2
    # the same seed: the same rows; another seed: other rows
    assert export(sampling).column("prediction_id").to_pylist() == [r[1] for r in rows]
    other = export(dataclasses.replace(sampling, seed=12))
    assert other.column("prediction_id").to_pylist() != [r[1] for r in rows]
    # without sampling the column is absent
    assert "sample_share" not in export_all(db, pushed).column_names


def export_all(db: Database, pushed: Manifest) -> Any:
    out = io.BytesIO()
    write(Exporter(db, pushed, ExportQuery("iris")), "parquet", out)
    return pq.read_table(io.BytesIO(out.getvalue()))


@pytest.mark.parametrize(("share", "by", "shares", "message"), [
    (0.0, None, [], "within (0, 1]"),
    (1.5, None, [], "within (0, 1]"),
    (0.1, "group", ["canary"], "write GROUP=SHARE"),
    (0.1, "group", ["canary=x"], "write GROUP=SHARE"),
    (0.1, "group", ["canary=2"], "within (0, 1]"),
    (0.1, None, ["canary=1"], "needs the label"),
])
def test_bad_sampling_is_one_error(share: float, by: str | None, shares: list[str],
                                   message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        parse_sampling(share, by, shares)
