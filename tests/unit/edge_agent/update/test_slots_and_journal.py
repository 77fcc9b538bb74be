"""The agent's on-disk update state: model slots behind one pointer, and the step journal.

Real files in ``tmp_path``, no broker. The pointer (``active.json``) and the journal
(``update.json``) are what a device trusts after a power cut, so the tests check what a crash
can leave behind (a stale temp file, a failed rename, a corrupt journal), not only the round trip.
"""

from __future__ import annotations

import json
import os
import random
import threading
from pathlib import Path
from typing import Any

import pytest

from controller.security.signing import generate_keypair, sign_manifest
from edge_agent.slots import Slot, SlotError, SlotPointer, SlotStore, artifact_name
from edge_agent.update import UpdateState, UpdateStep
from edge_agent.update_journal import UpdateJournal
from edgewise_wire import Desired, ModelRef, ProbationPolicy, decode, encode
from edgewise_wire.envelope import verify_envelope
from edgewise_wire.manifest import ArtifactRef, Manifest, SmokeTest, TensorSpec

NOW = 1_750_000_000.0


def _payload(version: int) -> bytes:
    return b"model" * 300 + bytes([version])


def _manifest(version: int, model: str = "iris", fmt: str = "onnx") -> Manifest:
    return Manifest(
        model=model, version=version, format=fmt, task="classification",
        inputs=(TensorSpec("x", "float32", (None, 2)),),
        outputs=(TensorSpec("label", "int64", (None,)),),
        label_output="label", score_output=None, class_labels=(0, 1),
        feature_names=("a", "b"),
        artifact=ArtifactRef.describe(_payload(version), chunk_size=1024),
        smoke_tests=(SmokeTest([[1.0, 0.5]], [1]),), smoke_tolerance=1e-4)


def _ref(m: Manifest) -> ModelRef:
    return ModelRef(m.model, m.version, m.artifact.sha256)


def _stage(store: SlotStore, version: int, deployment_id: str | None = "dep-1") -> Slot:
    """Write version ``version``'s bytes where a verified download lands; its slot."""
    m = _manifest(version)
    store.models_dir.mkdir(parents=True, exist_ok=True)
    store.staged_path(m).write_bytes(_payload(version))
    return Slot(m, artifact_name(m), deployment_id)


@pytest.fixture
def store(tmp_path: Path) -> SlotStore:
    return SlotStore(tmp_path)


# ------------------------------------------------------------------------------ slot pointer


def test_no_pointer_file_means_no_model(store: SlotStore) -> None:
    assert store.load() == SlotPointer(None, None)


def test_artifact_names_are_content_addressed() -> None:
    m = _manifest(1)
    assert artifact_name(m) == f"{m.artifact.sha256}.onnx"
    assert artifact_name(_manifest(1, fmt="tflite")) == f"{m.artifact.sha256}.tflite"


def test_switch_then_load_round_trips_active_and_previous(store: SlotStore) -> None:
    v1, v2 = _stage(store, 1, "dep-1"), _stage(store, 2, "dep-2")
    store.switch(SlotPointer(v2, v1))

    loaded = store.load()
    assert loaded == SlotPointer(v2, v1)
    assert loaded.active is not None and loaded.previous is not None
    assert loaded.active.ref == _ref(v2.manifest)
    assert loaded.active.deployment_id == "dep-2"
    # a fresh store (the agent after a restart) reads the same
    assert SlotStore(store.pointer_file.parent).load() == SlotPointer(v2, v1)


def test_switch_writes_the_documented_pointer_format(store: SlotStore) -> None:
    v1, v2 = _stage(store, 1), _stage(store, 2, "dep-2")
    store.switch(SlotPointer(v2, v1))
    raw = json.loads(store.pointer_file.read_text())
    assert raw["file"] == artifact_name(v2.manifest)
    assert raw["deployment_id"] == "dep-2"
    assert Manifest.from_dict(raw["manifest"]) == v2.manifest
    assert raw["previous"]["file"] == artifact_name(v1.manifest)
    assert Manifest.from_dict(raw["previous"]["manifest"]) == v1.manifest


def test_a_second_switch_replaces_the_whole_pointer(store: SlotStore) -> None:
    v1, v2, v3 = _stage(store, 1), _stage(store, 2), _stage(store, 3)
    store.switch(SlotPointer(v2, v1))
    store.switch(SlotPointer(v3, None))
    assert store.load() == SlotPointer(v3, None)


def test_the_pointer_is_renamed_into_place_and_leaves_no_temp_file(
        store: SlotStore, monkeypatch: pytest.MonkeyPatch) -> None:
    v1, v2 = _stage(store, 1), _stage(store, 2)
    store.switch(SlotPointer(v1, None))
    before = store.pointer_file.stat().st_ino

    renames: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src: Any, dst: Any) -> None:
        renames.append((Path(src).name, Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    store.switch(SlotPointer(v2, v1))

    assert renames == [("active.json.tmp", "active.json")]
    # written to a new file and renamed over the old one, never rewritten in place
    assert store.pointer_file.stat().st_ino != before
    assert not (store.pointer_file.parent / "active.json.tmp").exists()
    assert store.load() == SlotPointer(v2, v1)


def test_a_crash_before_the_rename_keeps_the_old_pointer(
        store: SlotStore, monkeypatch: pytest.MonkeyPatch) -> None:
    v1, v2 = _stage(store, 1), _stage(store, 2)
    store.switch(SlotPointer(v1, None))

    def power_cut(src: Any, dst: Any) -> None:
        raise OSError("power cut before the rename")

    monkeypatch.setattr(os, "replace", power_cut)
    with pytest.raises(OSError, match="power cut"):
        store.switch(SlotPointer(v2, v1))
    monkeypatch.undo()

    # the new pointer only ever reached the temp file; the old one is intact
    assert (store.pointer_file.parent / "active.json.tmp").exists()
    assert store.load() == SlotPointer(v1, None)


def test_a_stale_temp_file_is_ignored_and_overwritten(store: SlotStore) -> None:
    v1, v2 = _stage(store, 1), _stage(store, 2)
    tmp = store.pointer_file.parent / "active.json.tmp"
    # a crash half way through writing the first pointer: only the temp file exists
    tmp.write_text('{"manifest": {"mod')
    assert store.load() == SlotPointer(None, None)

    store.switch(SlotPointer(v1, None))
    tmp.write_text('{"manifest": {"mod')  # and again, half way through the next switch
    assert store.load() == SlotPointer(v1, None)

    store.switch(SlotPointer(v2, v1))  # the next switch truncates the stale temp file
    assert store.load() == SlotPointer(v2, v1)
    assert not tmp.exists()


def test_a_pointer_from_before_issue_4_has_no_previous_slot(store: SlotStore) -> None:
    v1 = _stage(store, 1)
    # the format the agent wrote before two slots existed: no "previous" key at all
    store.pointer_file.write_text(json.dumps(
        {"manifest": v1.manifest.to_dict(), "file": v1.file, "deployment_id": "dep-old"}))
    assert store.load() == SlotPointer(Slot(v1.manifest, v1.file, "dep-old"), None)


def test_a_legacy_pointer_without_a_deployment_id_loads(store: SlotStore) -> None:
    v1 = _stage(store, 1)
    store.pointer_file.write_text(json.dumps({"manifest": v1.manifest.to_dict(), "file": v1.file}))
    assert store.load() == SlotPointer(Slot(v1.manifest, v1.file, None), None)


def test_an_unload_pointer_keeps_the_previous_slot(store: SlotStore) -> None:
    v1 = _stage(store, 1)
    store.switch(SlotPointer(None, v1))
    raw = json.loads(store.pointer_file.read_text())
    assert raw["manifest"] is None and raw["file"] is None
    assert store.load() == SlotPointer(None, v1)


def test_a_hand_written_unload_pointer_loads(store: SlotStore) -> None:
    v1 = _stage(store, 1)
    store.pointer_file.write_text(json.dumps(
        {"manifest": None, "file": None, "deployment_id": None, "previous": v1.to_dict()}))
    assert store.load() == SlotPointer(None, v1)


def _valid_record(store: SlotStore) -> dict[str, Any]:
    v1, v2 = _stage(store, 1), _stage(store, 2)
    record = v2.to_dict()
    record["previous"] = v1.to_dict()
    return record


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda r: {**r, "file": "../../etc/passwd"}, r"active\.file .* not a plain file name"),
    (lambda r: {**r, "file": "sub/model.onnx"}, r"active\.file .* not a plain file name"),
    (lambda r: {**r, "file": ".hidden"}, r"active\.file .* not a plain file name"),
    (lambda r: {**r, "file": ""}, r"active\.file .* not a plain file name"),
    (lambda r: {**r, "previous": {**r["previous"], "file": "x/y.onnx"}},
     r"previous\.file .* not a plain file name"),
    (lambda r: {**r, "file": 7}, r"active must be an object with a 'file'"),
    (lambda r: {**r, "file": None}, r"active must be an object with a 'file'"),
    (lambda r: {**r, "manifest": "iris:2"}, r"active\.manifest must be an object"),
    (lambda r: {**r, "manifest": {**r["manifest"], "version": "2"}},
     r"active\.manifest\.version' must be an integer"),
    (lambda r: {**r, "previous": "iris:1"}, r"previous must be an object"),
    (lambda r: {**r, "previous": []}, r"previous must be an object"),
    (lambda r: {**r, "previous": {**r["previous"], "manifest": None}},
     r"previous\.manifest must be an object"),
], ids=["dotdot", "slash", "hidden", "empty-name", "previous-slash", "file-int", "file-null",
        "manifest-str", "version-str", "previous-str", "previous-list", "previous-no-manifest"])
def test_a_malformed_pointer_is_refused_with_the_field_named(
        store: SlotStore, mutate: Any, message: str) -> None:
    store.pointer_file.write_text(json.dumps(mutate(_valid_record(store))))
    with pytest.raises(SlotError, match=r"^active\.json is malformed: .*" + message):
        store.load()


@pytest.mark.parametrize(("content", "message"), [
    (b'{"manifest": {"model": "iris"', r"active\.json is unreadable"),  # torn (disk failure)
    (b"", r"active\.json is unreadable"),
    (b"\xff\xfe\x00garbage", r"active\.json is unreadable"),
    (b"[1, 2]", r"active\.json is not a JSON object"),
    (b'"active"', r"active\.json is not a JSON object"),
    (b"null", r"active\.json is not a JSON object"),
], ids=["torn", "empty", "not-utf8", "list", "string", "null"])
def test_an_unreadable_pointer_raises_slot_error(
        store: SlotStore, content: bytes, message: str) -> None:
    store.pointer_file.write_bytes(content)
    with pytest.raises(SlotError, match=message):
        store.load()


# ------------------------------------------------------------------------------ slot files


def test_verify_returns_the_path_of_an_intact_file(store: SlotStore) -> None:
    v1 = _stage(store, 1)
    assert store.verify(v1) == store.models_dir / artifact_name(v1.manifest)


def test_verify_refuses_a_missing_file(store: SlotStore) -> None:
    v1 = _stage(store, 1)
    store.path_of(v1).unlink()
    with pytest.raises(SlotError, match=r"iris:1 is missing its file [0-9a-f]{64}\.onnx"):
        store.verify(v1)


def test_verify_refuses_a_missing_models_directory(tmp_path: Path) -> None:
    store = SlotStore(tmp_path)
    with pytest.raises(SlotError, match="missing its file"):
        store.verify(Slot(_manifest(1), artifact_name(_manifest(1))))


@pytest.mark.parametrize("damage", ["flip", "truncate", "append"])
def test_verify_refuses_a_file_whose_bytes_changed(store: SlotStore, damage: str) -> None:
    v1 = _stage(store, 1)
    path = store.path_of(v1)
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[10] ^= 0x01  # one bit on a worn SD card
    elif damage == "truncate":
        del data[-1]
    else:
        data += b"\x00"
    path.write_bytes(bytes(data))
    with pytest.raises(SlotError, match=r"iris:1: .* no longer matches its sha256"):
        store.verify(v1)


def test_has_verified_only_for_the_exact_bytes(store: SlotStore) -> None:
    m = _manifest(1)
    path = store.staged_path(m)
    assert not store.has_verified(m)  # no models directory yet

    store.models_dir.mkdir(parents=True)
    assert not store.has_verified(m)  # no file

    good = _payload(1)
    path.write_bytes(good)
    assert store.has_verified(m)

    path.write_bytes(good[:-1] + bytes([good[-1] ^ 0x01]))  # same size, one bit differs
    assert not store.has_verified(m)
    path.write_bytes(good + b"\x00")
    assert not store.has_verified(m)
    path.write_bytes(good[:-1])
    assert not store.has_verified(m)
    path.write_bytes(_payload(2))  # another version's (valid) bytes under this name
    assert not store.has_verified(m)

    path.write_bytes(good)
    assert store.has_verified(m)
    assert not store.has_verified(_manifest(2))  # another manifest: another file name


def test_prune_removes_only_files_not_kept(store: SlotStore) -> None:
    v1, v2, v3 = _stage(store, 1), _stage(store, 2), _stage(store, 3)
    stray = store.models_dir / "leftover.onnx"
    stray.write_bytes(b"old")
    store.switch(SlotPointer(v3, v2))
    download = store.pointer_file.parent / "download"
    download.mkdir()
    (download / "x.part").write_bytes(b"partial")

    store.prune({v3.file, v2.file})

    assert sorted(p.name for p in store.models_dir.iterdir()) == sorted([v3.file, v2.file])
    assert store.verify(v3) and store.verify(v2)  # the kept files are untouched
    assert not store.path_of(v1).exists() and not stray.exists()
    # only models/ is pruned: the pointer and partial downloads are someone else's
    assert store.load() == SlotPointer(v3, v2)
    assert (download / "x.part").read_bytes() == b"partial"


def test_prune_with_nothing_kept_empties_models_and_tolerates_no_directory(
        tmp_path: Path) -> None:
    store = SlotStore(tmp_path)
    store.prune(set())  # no models directory: nothing to do, no error
    _stage(store, 1)
    _stage(store, 2)
    store.prune(set())
    assert list(store.models_dir.iterdir()) == []


# ------------------------------------------------------------------------------ update journal


def _step(state: UpdateState = UpdateState.DOWNLOADING, *, attempts: int = 2,
          error: str | None = "chunk 3 of 12 timed out") -> UpdateStep:
    return UpdateStep(state, target=_ref(_manifest(2)), previous=_ref(_manifest(1)),
                      entered_at=NOW + 0.25, attempts=((state, attempts),), last_error=error)


@pytest.fixture
def journal(tmp_path: Path) -> UpdateJournal:
    return UpdateJournal(tmp_path / "update.json")


def test_no_journal_means_nothing_in_flight(journal: UpdateJournal) -> None:
    assert journal.load() is None
    assert not journal.path.with_name("update.json.corrupt").exists()


def test_a_step_without_a_desired_state_round_trips(journal: UpdateJournal) -> None:
    step = _step()
    journal.save(step, None)
    assert journal.load() == (step, None)
    # a fresh journal object (the agent after a restart) reads the same
    assert UpdateJournal(journal.path).load() == (step, None)
    assert not journal.path.with_name("update.json.tmp").exists()


def test_a_step_with_no_models_round_trips(journal: UpdateJournal) -> None:
    step = UpdateStep(UpdateState.IDLE, target=None, previous=None, entered_at=NOW)
    journal.save(step, None)
    assert journal.load() == (step, None)


def test_a_step_and_an_unsigned_desired_state_round_trip(journal: UpdateJournal) -> None:
    desired = Desired("dep-7", _manifest(2), NOW,
                      probation=ProbationPolicy(30.0, max_error_rate=0.1, max_p95_latency_ms=250.0,
                                                min_predictions=5))
    step = _step(UpdateState.PROBATION, attempts=1, error=None)
    journal.save(step, desired)
    loaded = journal.load()
    assert loaded is not None
    assert loaded == (step, desired)
    assert loaded[0].attempts_in(UpdateState.PROBATION) == 1


def test_a_desired_state_naming_no_model_round_trips(journal: UpdateJournal) -> None:
    desired = Desired("dep-unload", None, NOW)
    step = UpdateStep(UpdateState.IDLE, target=None, previous=_ref(_manifest(1)), entered_at=NOW)
    journal.save(step, desired)
    loaded = journal.load()
    assert loaded is not None
    assert loaded == (step, desired)
    assert loaded[1] is not None and loaded[1].manifest is None


def test_a_signed_desired_state_still_verifies_after_the_round_trip(
        journal: UpdateJournal) -> None:
    # the journal exists so a resumed update needs no broker: the envelope it kept must still
    # pass the device's signature check byte for byte
    private, public, key_id = generate_keypair()
    m = _manifest(2)
    envelope = sign_manifest(m.to_dict(), private, expires_at=NOW + 3600, device_class="pi4")
    desired = decode(encode(Desired("dep-s", m, NOW, envelope=envelope)), Desired)
    journal.save(_step(), desired)

    loaded = journal.load()
    assert loaded is not None and loaded[1] is not None
    kept = loaded[1]
    assert kept == desired and kept.manifest == m
    assert verify_envelope(kept.envelope, {key_id: public}, now=NOW, device_class="pi4",
                           running_version=1) == m.to_dict()


@pytest.mark.parametrize("content", [
    b'{"step": {"state": "downloa',  # torn
    b"",
    b"\xff\xfe garbage",
    b"[]",
    b'{"step": null, "desired": null}',
    b'{"step": {"state": "sleeping", "target": null, "previous": null, "entered_at": 1.0}}',
    b'{"step": {"state": "idle", "target": null, "previous": null, "entered_at": NaN}}',
    b'{"step": {"state": "idle", "target": null, "previous": null, "entered_at": 1.0},'
    b' "desired": {"deployment_id": "d"}}',
    b'{"step": {"state": "idle", "target": null, "previous": null, "entered_at": 1.0},'
    b' "desired": 5}',
], ids=["torn", "empty", "not-utf8", "list", "step-null", "unknown-state", "nan-time",
        "desired-no-envelope", "desired-int"])
def test_a_corrupt_journal_is_moved_aside(journal: UpdateJournal, content: bytes) -> None:
    journal.path.write_bytes(content)
    assert journal.load() is None
    assert not journal.path.exists()
    # kept for a post-mortem, byte for byte
    assert journal.path.with_name("update.json.corrupt").read_bytes() == content
    assert journal.load() is None  # and the next start is simply at rest


def test_the_journal_works_again_after_a_corrupt_one(journal: UpdateJournal) -> None:
    journal.path.write_text("{not json")
    assert journal.load() is None
    step = _step()
    journal.save(step, None)
    assert journal.load() == (step, None)
    # a second corruption replaces the first post-mortem copy instead of failing
    journal.path.write_text("[]")
    assert journal.load() is None
    assert journal.path.with_name("update.json.corrupt").read_text() == "[]"


def test_an_older_numbered_save_does_not_overwrite_a_newer_one(journal: UpdateJournal) -> None:
    step_a = _step(UpdateState.VERIFYING, attempts=1, error=None)
    step_b = _step(UpdateState.DOWNLOADING, attempts=1, error=None)
    journal.save(step_a, None, 2)
    journal.save(step_b, None, 1)  # a save left running by a cancelled drive, landing late
    assert journal.load() == (step_a, None)

    step_c = _step(UpdateState.STAGED, attempts=1, error=None)
    journal.save(step_c, None, 3)
    assert journal.load() == (step_c, None)


def test_concurrent_saves_leave_the_newest_readable_journal(journal: UpdateJournal) -> None:
    states = [UpdateState.DOWNLOADING, UpdateState.VERIFYING, UpdateState.STAGED, UpdateState.ACTIVATING, UpdateState.PROBATION]
    desired = Desired("dep-c", _manifest(2), NOW)
    steps = {seq: _step(states[seq % len(states)], attempts=seq, error=f"save {seq}")
             for seq in range(1, 41)}
    order = list(steps)
    random.Random(4).shuffle(order)
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker(chunk: list[int]) -> None:
        try:
            barrier.wait(timeout=10)
            for seq in chunk:
                journal.save(steps[seq], desired, seq)
        except BaseException as exc:  # surfaced below: a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(order[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert errors == []

    assert journal.load() == (steps[40], desired)
    assert not journal.path.with_name("update.json.tmp").exists()
    assert not journal.path.with_name("update.json.corrupt").exists()
