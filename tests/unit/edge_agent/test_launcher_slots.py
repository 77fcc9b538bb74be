"""The launcher's files: staging checks the archive, keeps the good slot, and the symlink switch
is idempotent; an unreadable journal still names a runnable slot."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from edge_agent.launcher.plan import Phase, switched
from edge_agent.launcher.slots import LauncherError, SlotRoot


def archive(tmp: Path, members: dict[str, bytes], *, link: str | None = None) -> tuple[Path, str]:
    path = tmp / "agent.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
        if link is not None:
            info = tarfile.TarInfo("bin/python")
            info.type, info.linkname = tarfile.SYMTYPE, link
            tar.addfile(info)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


GOOD = {"bin/edgewise-agent": b"#!/bin/sh\nexit 0\n"}


def test_stage_unpacks_into_the_standby_slot(tmp_path: Path) -> None:
    root = SlotRoot(tmp_path / "root")
    path, sha = archive(tmp_path, GOOD)
    journal = root.stage(path, sha, "2")
    assert journal.phase is Phase.STAGED and journal.trial == "b" and journal.good == "a"
    assert (root.slot_dir("b") / "bin" / "edgewise-agent").read_bytes() == GOOD["bin/edgewise-agent"]
    assert root.load() == journal
    root.point_at("b")
    root.point_at("b")
    assert root.pointed() == "b"


@pytest.mark.parametrize("case", ["wrong-sha", "no-agent", "escape", "absolute-link"])
def test_stage_refuses_bad_archives_and_keeps_the_journal(tmp_path: Path, case: str) -> None:
    root = SlotRoot(tmp_path / "root")
    members, link = dict(GOOD), None
    if case == "no-agent":
        members = {"README": b"x"}
    elif case == "escape":
        members["../../evil"] = b"x"
    elif case == "absolute-link":
        link = "/usr/bin/python3"
    path, sha = archive(tmp_path, members, link=link)
    with pytest.raises(LauncherError):
        root.stage(path, "0" * 64 if case == "wrong-sha" else sha, "2")
    assert root.load().phase is Phase.COMMITTED
    assert not root.slot_dir("b").exists() and not (tmp_path / "evil").exists()


def test_no_stage_while_an_update_is_in_flight(tmp_path: Path) -> None:
    root = SlotRoot(tmp_path / "root")
    path, sha = archive(tmp_path, GOOD)
    root.save(switched(root.stage(path, sha, "2"), now=1.0))
    with pytest.raises(LauncherError, match="in flight"):
        root.stage(path, sha, "3")


def test_an_unreadable_journal_runs_what_current_names(tmp_path: Path) -> None:
    root = SlotRoot(tmp_path / "root")
    root.root.mkdir()
    root.point_at("b")
    root.journal_path.write_text("{not json")
    journal = root.load()
    assert journal.phase is Phase.COMMITTED and journal.good == "b"
    assert "unreadable journal" in (journal.last_error or "")
