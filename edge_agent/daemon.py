"""`edgewise-agent`: the device daemon. One agent, one event loop, until SIGTERM.

Uses argparse, not click: the agent installs with as few packages as possible.

The daemon is also where the update test hook is switched on: with ``EDGEWISE_AGENT_PAUSE_IN``
(:data:`PAUSE_ENV`) set to a state name, or ``downloading:N``, it passes an
:class:`~edge_agent.update.pause.UpdatePause` to its agent, which parks its update there so a
test can SIGKILL the process at that point (tests/update_e2e, docs/agent.md). The agent itself
never reads its environment.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

from edge_agent.agent import EdgeAgent
from edge_agent.config import AgentConfig, ConfigError, load_config
from edge_agent.malloc_tuning import fix_malloc_thresholds
from edge_agent.trust_state import TrustStateError
from edge_agent.update.pause import UpdatePause
from edgewise_mqtt.link import BrokerAddress
from edgewise_wire.version import edgewise_version

log = logging.getLogger("edgewise.agent")

# Test hook (tests/update_e2e): "STATE" or "downloading:N". Right after the step for STATE is
# persisted (for downloading:N, after N chunks are written) the agent writes
# {data_dir}/paused-in and stops advancing the update, so a test can SIGKILL it there.
PAUSE_ENV = "EDGEWISE_AGENT_PAUSE_IN"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="edgewise-agent",
        description="Edgewise edge agent: follows the model the controller assigns to this device, "
                    "serves predictions and sends telemetry.",
        epilog="Example: edgewise-agent --config /etc/edgewise/agent.toml")
    parser.add_argument("--config", type=Path, help="TOML configuration file")
    parser.add_argument("--device-id", help="overrides device_id from the file")
    parser.add_argument("--broker", help="MQTT broker HOST:PORT, overrides [broker] from the file")
    parser.add_argument("--data-dir", type=Path, help="overrides data_dir from the file")
    parser.add_argument("--topic-root", help="MQTT topic root of this device's fleet (default "
                        "ew/v1), overrides topic_root from the file")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    parser.add_argument("--version", action="version",
                        version=f"edgewise-agent {edgewise_version()}")
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace) -> AgentConfig:
    if args.config is not None:
        config = load_config(args.config)
        overrides = {}
        if args.device_id:
            overrides["device_id"] = args.device_id
        if args.data_dir:
            overrides["data_dir"] = args.data_dir
        if args.broker:
            overrides["broker"] = BrokerAddress.parse(args.broker)
        if args.topic_root:
            overrides["topic_root"] = args.topic_root
        return config.with_overrides(**overrides) if overrides else config
    if not (args.device_id and args.data_dir):
        raise ConfigError("give --config FILE, or at least --device-id and --data-dir")
    broker = BrokerAddress.parse(args.broker) if args.broker else BrokerAddress()
    if args.topic_root:
        return AgentConfig(device_id=args.device_id, data_dir=args.data_dir, broker=broker,
                           topic_root=args.topic_root)
    return AgentConfig(device_id=args.device_id, data_dir=args.data_dir, broker=broker)


def pause_from_env(environ: Mapping[str, str]) -> UpdatePause | None:
    """The test hook :data:`PAUSE_ENV` asks for; None if unset. A value that is not a state name
    (or downloading:N) is logged as an error and ignored."""
    spec = environ.get(PAUSE_ENV)
    if not spec:
        return None
    try:
        return UpdatePause.parse(spec)
    except ValueError:
        log.error("%s=%r is not a state name (or downloading:N); ignored", PAUSE_ENV, spec)
        return None


RENEWAL_CHECK_S = 3600.0


async def _renew_periodically(config_dir: Path, stop: asyncio.Event) -> None:
    """A device enrolled by claim renews its certificate before it expires; the new one takes
    effect at the next start, so the agent then stops (systemd's Restart=always starts it)."""
    from edge_agent.enroll import EnrollError, renew_if_due

    while True:
        await asyncio.sleep(RENEWAL_CHECK_S)
        try:
            renewed = await asyncio.to_thread(renew_if_due, config_dir)
        except (EnrollError, OSError, ValueError, KeyError) as exc:
            log.error("certificate renewal failed (tried again in an hour): %s", exc)
            continue
        if renewed:
            log.warning("certificate renewed: restarting to connect with it")
            stop.set()
            return


async def run_agent(config: AgentConfig, pause: UpdatePause | None = None,
                    config_dir: Path | None = None) -> None:
    try:
        agent = EdgeAgent(config, pause=pause)
    except TrustStateError as exc:  # a damaged trust.json: one line, exit 1
        raise ConfigError(str(exc)) from None
    stop = asyncio.Event()
    renewal = (asyncio.create_task(_renew_periodically(config_dir, stop))
               if config_dir is not None else None)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # do not wait for the broker: the agent serves its last model while the link comes up
    await agent.start(wait_connected=False)
    local_api = None
    if config.http_port is not None:
        from edge_agent.local_api import LocalApi

        local_api = LocalApi(agent, config.http_host, config.http_port)
        try:
            await local_api.start()
        except OSError as exc:
            await agent.stop(drain_timeout=0)
            reason = ("the port is already in use" if exc.errno == errno.EADDRINUSE
                      else " ".join(str(exc.strerror or exc).split()))
            raise ConfigError(f"cannot serve the local API on {config.http_host}:"
                              f"{config.http_port}: {reason}; set http_port (or http_host) in "
                              "the agent's config") from None
    log.info("agent %s started (broker %s, data %s, model %s)", config.device_id, config.broker,
             config.data_dir, agent.active or "none yet")
    await stop.wait()
    if renewal is not None:
        renewal.cancel()
    if local_api is not None:
        await local_api.stop()
    await agent.stop(drain_timeout=2.0)


def _renew_at_start(config_dir: Path) -> None:
    """Renew a certificate that is due before connecting (a device enrolled by claim)."""
    from edge_agent.enroll import EnrollError, renew_if_due

    try:
        renew_if_due(config_dir)
    except (EnrollError, OSError, ValueError, KeyError) as exc:
        log.error("certificate renewal failed (the agent starts with the current one): %s",
                  exc)


def main(argv: list[str] | None = None) -> None:
    fix_malloc_thresholds()  # before any model is loaded (edge_agent/malloc_tuning.py)
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose == 0 else logging.DEBUG,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = build_config(args)
    except (ConfigError, ValueError) as exc:
        print(f"edgewise-agent: error: {exc}", file=sys.stderr)
        sys.exit(2)
    config_dir = args.config.parent if args.config is not None else None
    if config_dir is not None:
        _renew_at_start(config_dir)
    try:
        asyncio.run(run_agent(config, pause_from_env(os.environ), config_dir))
    except ConfigError as exc:
        print(f"edgewise-agent: error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
