"""The launcher's files: two slots, the ``current`` symlink and the journal.

::

    ROOT/slots/a/  ROOT/slots/b/     each a prepared agent: bin/edgewise-agent runs it
    ROOT/current -> slots/a          what runs (switched by renaming a new symlink over it)
    ROOT/launcher.json               the journal (edge_agent.launcher.plan.Journal)

Every change is durable before the next step: the journal by ``replace_durably``, the symlink by
a rename and a directory fsync, a staged slot by unpacking beside it and renaming it into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
from pathlib import Path

from edge_agent.durable import fsync_dir, replace_durably
from edge_agent.launcher.plan import SLOTS, Journal, Phase, standby

AGENT_BIN = Path("bin") / "edgewise-agent"


# what the launcher tells the agent it starts: where the slots are, and the slot's version
ROOT_ENV = "EDGEWISE_LAUNCHER_ROOT"
VERSION_ENV = "EDGEWISE_AGENT_VERSION"
# in a staged slot: the version it was staged as (absent in a slot prepared by hand)
VERSION_FILE = ".edgewise-agent-version"


class LauncherError(Exception):
    """A one-line reason the launcher cannot do what it was asked."""


class SlotRoot:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.journal_path = root / "launcher.json"
        self.current = root / "current"

    def slot_dir(self, slot: str) -> Path:
        assert slot in SLOTS
        return self.root / "slots" / slot

    def agent_command(self, slot: str) -> Path:
        return self.slot_dir(slot) / AGENT_BIN

    # -- the journal ---------------------------------------------------------------------------

    def slot_version(self, slot: str) -> str | None:
        """The version ``slot`` was staged as, or None (prepared by hand, or unreadable)."""
        try:
            text = (self.slot_dir(slot) / VERSION_FILE).read_text().strip()
        except (OSError, UnicodeDecodeError):
            return None
        return text or None

    def load(self) -> Journal:
        try:
            return Journal.from_dict(json.loads(self.journal_path.read_text()))
        except FileNotFoundError:
            return Journal.first()
        except (ValueError, KeyError, TypeError) as exc:
            # an unreadable journal must not leave the device without an agent: run what
            # `current` names, as committed
            return Journal(Phase.COMMITTED, self.pointed() or "a",
                           last_error=f"unreadable journal {self.journal_path}: {exc}")

    def save(self, journal: Journal) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        replace_durably(self.journal_path, json.dumps(journal.to_dict(), sort_keys=True))

    # -- the symlink ----------------------------------------------------------------------------

    def pointed(self) -> str | None:
        try:
            name = Path(os.readlink(self.current)).name
        except OSError:
            return None
        return name if name in SLOTS else None

    def point_at(self, slot: str) -> None:
        if self.pointed() == slot:
            return
        tmp = self.root / "current.tmp"
        tmp.unlink(missing_ok=True)
        os.symlink(Path("slots") / slot, tmp)
        os.replace(tmp, self.current)
        fsync_dir(self.root)

    # -- staging ---------------------------------------------------------------------------------

    def stage(self, archive: Path, sha256: str, version: str | None) -> Journal:
        """Unpack ``archive`` (a tar of a prepared agent) into the standby slot; the journal
        says ``staged`` once it is there, verified and complete."""
        journal = self.load()
        if journal.phase not in (Phase.COMMITTED, Phase.STAGED):
            raise LauncherError(f"an agent update is in flight ({journal.phase.value}); "
                                "wait until it is committed or rolled back")
        got = _sha256_of(archive)
        if got != sha256:
            raise LauncherError(f"{archive} has sha256 {got}, expected {sha256}: not staged")
        slot = standby(journal.good)
        target = self.slot_dir(slot)
        tmp = target.with_name(f".{slot}.unpacking")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            with tarfile.open(archive) as tar:
                _extract(tar, tmp)
        except (tarfile.TarError, OSError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise LauncherError(f"cannot unpack {archive}: {exc}") from None
        command = tmp / AGENT_BIN
        if not (command.is_file() and os.access(command, os.X_OK)):
            shutil.rmtree(tmp, ignore_errors=True)
            raise LauncherError(f"{archive} has no executable {AGENT_BIN}: not an agent")
        if version is not None:
            # what the slot's agent reports as its agent_version (the launcher tells it)
            (tmp / VERSION_FILE).write_text(version + "\n")
        _fsync_tree(tmp)
        # the journal first: a crash after it leaves 'committed' on the good slot, nothing lost
        self.save(Journal(Phase.COMMITTED, journal.good, last_error=journal.last_error))
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
        fsync_dir(target.parent)
        staged = Journal(Phase.STAGED, journal.good, trial=slot, trial_version=version,
                         trial_sha256=sha256)
        self.save(staged)
        return staged


def _extract(tar: tarfile.TarFile, into: Path) -> None:
    """Extract with tar's ``data`` filter (no absolute paths, no ``..``, no links out of
    ``into``, no devices); on a Python without it (3.11 before 3.11.4: Debian 12 has 3.11.2),
    the same refusals checked here, links of any kind refused."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(into, filter="data")
        return
    for member in tar.getmembers():
        name = Path(member.name)
        if name.is_absolute() or ".." in name.parts:
            raise tarfile.TarError(f"{member.name!r} points outside the slot")
        if not (member.isfile() or member.isdir()):
            raise tarfile.TarError(f"{member.name!r} is a link or a device: not allowed here")
    tar.extractall(into)  # every member checked above


def _sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as exc:
        raise LauncherError(f"cannot read {path}: {exc.strerror or exc}") from None
    return h.hexdigest()


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            if path.is_symlink():
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))
