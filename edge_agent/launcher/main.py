"""``edgewise-agent-launcher``: the agent's supervisor, and the command that stages a new agent.

``edgewise-agent-launcher run --root ROOT [--probation-s S] [--health-url URL] -- AGENT ARGS``
runs ``ROOT/current/bin/edgewise-agent AGENT ARGS`` and keeps it running (restarted after an
exit), and once the journal says ``staged`` switches to the staged agent:

1. the running agent is stopped (SIGTERM, as systemd stops it);
2. the journal says ``probation`` (which slot, since when), then ``current`` points at the new
   slot and the new agent is started;
3. every second its local API (``--health-url``, its ``/v1/health``) is asked; at the end of
   ``--probation-s`` the new agent is committed if it runs and its last answer said
   ``connected`` (it reaches the broker: it can take the next update or a rollback);
4. otherwise, or as soon as it exits, it is stopped, the journal says ``rolling_back``,
   ``current`` points back at the old slot, the journal says ``committed`` with the reason in
   ``last_error``, and the old agent runs again.

A SIGKILL of the launcher (and its agent) at any instant leaves a journal from which the next
start finds a runnable agent (:func:`edge_agent.launcher.plan.recover`).

``edgewise-agent-launcher stage --root ROOT ARCHIVE --sha256 HEX [--version V]`` unpacks a new
agent into the standby slot; the running launcher picks it up within a second.

``edgewise-agent-launcher status --root ROOT`` prints the journal as JSON.

Test hook: with ``EDGEWISE_LAUNCHER_PAUSE_IN=switching`` the launcher stops right after the
journal says ``probation`` and before ``current`` is switched (writes ``ROOT/paused-in``), so a
test can SIGKILL it there.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType

from edge_agent.launcher.plan import (
    Journal,
    Phase,
    Probe,
    committed,
    judge,
    recover,
    rolled_back,
    rolling_back,
    switched,
)
from edge_agent.launcher.slots import ROOT_ENV, VERSION_ENV, LauncherError, SlotRoot

log = logging.getLogger("edgewise.launcher")

PAUSE_ENV = "EDGEWISE_LAUNCHER_PAUSE_IN"
POLL_S = 0.5
RESTART_DELAY_S = 1.0
STOP_TIMEOUT_S = 20.0


class Supervisor:
    def __init__(self, root: SlotRoot, agent_args: list[str], *, probation_s: float,
                 health_url: str | None, pause_in: str | None = None) -> None:
        self.root = root
        self.agent_args = agent_args
        self.probation_s = probation_s
        self.health_url = health_url
        self.pause_in = pause_in
        self.child: subprocess.Popen[bytes] | None = None
        self.stopping = False

    # -- processes ---------------------------------------------------------------------------

    def start_agent(self, slot: str) -> None:
        command = [str(self.root.agent_command(slot)), *self.agent_args]
        log.info("starting the agent of slot %s: %s", slot, " ".join(command))
        # the agent learns where its launcher keeps the slots (so it can stage a verified
        # bundle the controller sent) and which version it runs as (what it reports)
        env = {k: v for k, v in os.environ.items() if k not in (ROOT_ENV, VERSION_ENV)}
        env[ROOT_ENV] = str(self.root.root)
        version = self.root.slot_version(slot)
        if version is not None:
            env[VERSION_ENV] = version
        try:
            self.child = subprocess.Popen(command, env=env)
        except OSError as exc:
            log.error("cannot start the agent of slot %s: %s", slot, exc)
            self.child = None

    def stop_agent(self) -> None:
        child, self.child = self.child, None
        if child is None or child.poll() is not None:
            return
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

    def exited(self) -> int | None:
        if self.child is None:
            return -1
        return self.child.poll()

    def healthy(self) -> bool:
        if self.health_url is None:
            return self.exited() is None
        try:
            with urllib.request.urlopen(self.health_url, timeout=2.0) as response:
                body = json.loads(response.read() or b"{}")
        except (OSError, urllib.error.URLError, ValueError):
            return False
        return isinstance(body, dict) and body.get("connected") is True

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> int:
        start = recover(self.root.load(), time.time())
        if start.journal.phase is Phase.PROBATION:
            self.root.save(start.journal)
            self.root.point_at(start.slot)
        else:
            self.root.point_at(start.slot)  # (rolling back: the link first, then the journal)
            self.root.save(start.journal)
        if start.journal.last_error:
            log.warning("launcher: %s", start.journal.last_error)
        journal = start.journal
        self.start_agent(start.slot)
        while not self.stopping:
            if journal.phase is Phase.PROBATION:
                journal = self.watch_probation(journal)
                continue
            time.sleep(POLL_S)
            if self.stopping:
                break
            on_disk = self.root.load()
            if on_disk.phase is Phase.STAGED:
                journal = self.switch(on_disk)
            elif self.exited() is not None:
                log.warning("the agent exited with %s; starting it again", self.exited())
                time.sleep(RESTART_DELAY_S)
                self.start_agent(journal.good)
        self.stop_agent()
        return 0

    def switch(self, journal: Journal) -> Journal:
        assert journal.trial is not None
        log.info("switching to the staged agent %s (slot %s)", journal.trial_version,
                 journal.trial)
        self.stop_agent()
        trial = switched(journal, time.time())
        self.root.save(trial)
        if self.pause_in == "switching":
            (self.root.root / "paused-in").write_text("switching")
            while True:
                time.sleep(3600)  # parked for the test's SIGKILL
        self.root.point_at(trial.trial or "")
        self.start_agent(trial.trial or "")
        return trial

    def watch_probation(self, journal: Journal) -> Journal:
        assert journal.trial is not None and journal.probation_started_at is not None
        seen_healthy = False
        # the window counts from this start (a restarted launcher gives the trial a new one)
        started = time.time()
        while not self.stopping:
            probe = Probe(self.exited(), self.healthy())
            seen_healthy = seen_healthy or probe.healthy
            verdict = judge(probe, started_at=started, now=time.time(),
                            window_s=self.probation_s, seen_healthy=seen_healthy)
            if verdict == "commit":
                done = committed(journal)
                self.root.save(done)
                log.info("the new agent %s (slot %s) passed its probation: committed",
                         journal.trial_version, journal.trial)
                return done
            if verdict is not None:
                reason = verdict.removeprefix("roll back: ")
                log.error("%s; restoring the previous agent (slot %s)", reason, journal.good)
                self.stop_agent()
                self.root.save(rolling_back(journal, reason))
                self.root.point_at(journal.good)
                done = rolled_back(journal, reason)
                self.root.save(done)
                self.start_agent(done.good)
                return done
            time.sleep(POLL_S)
        return journal


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="edgewise-agent-launcher",
        description="Run the Edgewise agent from slot A or B and switch to a staged new agent "
                    "under a health probation, restoring the old one if the new one fails it.",
        epilog="Example: edgewise-agent-launcher run --root /opt/edgewise-agent "
               "--health-url http://127.0.0.1:8787/v1/health -- --config /etc/edgewise/agent.toml")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="supervise the agent (the systemd unit's ExecStart)")
    run.add_argument("--root", type=Path, required=True, help="the slots' directory")
    run.add_argument("--probation-s", type=float, default=60.0,
                     help="how long a new agent must run and end healthy (default 60)")
    run.add_argument("--health-url", help="the agent's local API health URL; without it a new "
                                          "agent that keeps running counts as healthy")
    run.add_argument("agent_args", nargs="*", help="arguments for edgewise-agent, after --")
    stage = sub.add_parser("stage", help="unpack a new agent into the standby slot")
    stage.add_argument("--root", type=Path, required=True)
    stage.add_argument("archive", type=Path, help="tar archive of a prepared agent "
                                                  "(bin/edgewise-agent inside)")
    stage.add_argument("--sha256", required=True, help="the archive's expected sha256")
    stage.add_argument("--version", help="the new agent's version, for the journal and logs")
    status = sub.add_parser("status", help="print the journal as JSON")
    status.add_argument("--root", type=Path, required=True)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = SlotRoot(args.root)
    try:
        if args.command == "stage":
            journal = root.stage(args.archive, args.sha256.lower(), args.version)
            print(json.dumps(journal.to_dict(), sort_keys=True))
            return
        if args.command == "status":
            print(json.dumps({**root.load().to_dict(), "current": root.pointed()},
                             sort_keys=True))
            return
        if not 0 < args.probation_s <= 86_400:
            raise LauncherError("--probation-s must be within (0, 86400] seconds")
        supervisor = Supervisor(root, args.agent_args, probation_s=args.probation_s,
                                health_url=args.health_url, pause_in=os.environ.get(PAUSE_ENV))

        def stop(signum: int, frame: FrameType | None) -> None:
            supervisor.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        sys.exit(supervisor.run())
    except LauncherError as exc:
        print(f"edgewise-agent-launcher: error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
