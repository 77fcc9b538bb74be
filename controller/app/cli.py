"""`edgewise`: the operator's command line. The root group and the commands that run whole
programs (the controller, a simulated fleet, the demo); every feature brings its own commands
(``controller/<feature>/cli.py`` exports ``COMMANDS``) and they are all registered the same way,
below. The controller is reached over its REST API (``--controller`` / ``EDGEWISE_URL``).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from controller.agent_bundles import cli as agent_cli
from controller.app import cli_db
from controller.audit import cli as audit_cli
from controller.cli.client import ControllerClientError
from controller.cli.common import DEFAULT_URL, fail, json_option, quiet_option
from controller.cli.exit_codes import exit_codes_help
from controller.config import DEFAULT_HTTP_PORT
from controller.data import cli as data_cli
from controller.errors import EdgewiseError
from controller.experiments import cli as experiments_cli
from controller.fleet import cli as fleet_cli
from controller.models import cli as models_cli
from controller.monitoring import cli as monitoring_cli
from controller.rollouts import cli as rollouts_cli
from controller.security import cli_claims, cli_keys, cli_pki, cli_tokens
from edgewise_wire.version import edgewise_version


class _Edgewise(click.Group):
    """Turns the library's errors into one line and exit code 1, for every command at once."""

    def invoke(self, ctx: click.Context) -> Any:
        from converters import ConversionError

        try:
            return super().invoke(ctx)
        except (ControllerClientError, ConversionError, EdgewiseError, OSError) as exc:
            fail(str(exc))


@click.group(cls=_Edgewise, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=exit_codes_help(title="Exit codes (docs/cli.md)"))
@click.version_option(edgewise_version(), "-V", "--version", prog_name="edgewise",
                      message="%(prog)s %(version)s")
@click.option("--controller", "url", envvar="EDGEWISE_URL", default=DEFAULT_URL, show_default=True,
              help="Base URL of the controller's REST API (env EDGEWISE_URL).")
@click.option("--token", envvar="EDGEWISE_API_TOKEN", default=None,
              help="API token for calls that change state (env EDGEWISE_API_TOKEN).")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.pass_context
def cli(ctx: click.Context, url: str, token: str | None, verbose: int) -> None:
    """Edgewise: convert models, roll them out to edge devices over MQTT, and watch them.

    \b
    Quick start:
      edgewise demo                       # everything on this machine, in one command
      edgewise controller serve --broker 127.0.0.1:1883
      edgewise models push model.joblib --sample X.npy --name iris
      edgewise rollout start iris:1 --wait
      edgewise fleet
    """
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.obj = {"url": url, "token": token}



# -- programs ----------------------------------------------------------------------------------

@cli.group()
def controller() -> None:
    """Run the controller (registry, MQTT bridge, REST API)."""


@controller.command("serve")
@click.option("--config", "config_path", type=click.Path(path_type=Path, exists=True),
              help="TOML file with the keys of ControllerConfig.")
@click.option("--data-dir", type=click.Path(path_type=Path), help="Artifacts and the SQLite database.")
@click.option("--db-url", help="Database URL, e.g. postgresql+psycopg://user@host/db "
              "(default: SQLite file in the data dir).")
@click.option("--broker", help="MQTT broker HOST:PORT (default 127.0.0.1:1883).")
@click.option("--host", "http_host", help="Address for the REST API (default 127.0.0.1).")
@click.option("--port", "http_port", type=int, help=f"Port for the REST API (default {DEFAULT_HTTP_PORT}).")
@click.option("--api-token", help="Require this bearer token on calls that change state.")
@click.option("--public-dashboard/--private-dashboard", "dashboard_public", default=None,
              help="Open the dashboard's data, /metrics and every GET of the API to anyone who "
                   "reaches the port, tokens or not (config dashboard_public; default private: "
                   "once a token exists, views need a read or admin token).")
@click.option("--topic-root", help="MQTT topic root of this controller's fleet (default ew/v1; "
              "config topic_root, env EDGEWISE_TOPIC_ROOT): several controllers share one "
              "broker with a root each, and refuse to start on a root another one runs.")
@click.option("--share-group", help="MQTT shared-subscription group: replicas with the same group "
              "split the fleet's telemetry between them (docs/scaling.md).")
@click.option("--artifact-dir", type=click.Path(path_type=Path),
              help="Content-addressed artifact store; replicas must share one "
                   "(default: DATA_DIR/artifacts); with --artifact-store, this replica's cache.")
@click.option("--artifact-store", metavar="s3://BUCKET/PREFIX",
              help="Keep artifacts in an S3-compatible object store (replicas then share no "
                   "file system) and have devices download them from it over HTTP(S), MQTT "
                   "chunks as the fallback. Credentials: AWS_ACCESS_KEY_ID and "
                   "AWS_SECRET_ACCESS_KEY (boto3's chain); needs the objstore extra.")
@click.option("--artifact-store-endpoint", metavar="URL",
              help="The object store's endpoint, e.g. http://minio:9000 (default: AWS S3).")
@click.option("--auto-migrate/--no-auto-migrate", default=None,
              help="Upgrade the database schema at start (the default, config auto_migrate); "
                   "with --no-auto-migrate a database behind this release is refused and "
                   "`edgewise db upgrade` migrates it.")
def controller_serve(config_path: Path | None, data_dir: Path | None, db_url: str | None,
                     broker: str | None, http_host: str | None, http_port: int | None,
                     api_token: str | None, share_group: str | None,
                     artifact_dir: Path | None, artifact_store: str | None,
                     artifact_store_endpoint: str | None, auto_migrate: bool | None,
                     dashboard_public: bool | None, topic_root: str | None) -> None:
    """Serve the REST API and bridge the MQTT fleet until interrupted.

    Example: edgewise controller serve --broker 127.0.0.1:1883 --data-dir /var/lib/edgewise
    """
    from controller.app.server import run
    from controller.config import load_controller_config
    from controller.errors import EdgewiseError

    logging.getLogger("edgewise").setLevel(logging.INFO)
    try:
        config = load_controller_config(config_path, data_dir=data_dir, db_url=db_url,
                                        broker=broker, http_host=http_host,
                                        http_port=http_port, api_token=api_token,
                                        share_group=share_group, artifact_dir=artifact_dir,
                                        artifact_store=artifact_store,
                                        artifact_store_endpoint=artifact_store_endpoint,
                                        auto_migrate=auto_migrate,
                                        dashboard_public=dashboard_public,
                                        topic_root=topic_root)
        # the API is announced once its port is claimed, the database open and the broker
        # reached ("controller API on ..." on stderr)
        run(config)
    except (EdgewiseError, ValueError) as exc:
        fail(str(exc))


@cli.command("simulate")
@click.option("--devices", type=click.IntRange(1, 5000), default=10, show_default=True)
@click.option("--broker", default="127.0.0.1:1883", show_default=True, help="MQTT broker HOST:PORT.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path("edgewise-sim"),
              show_default=True, help="One sub-directory per virtual device.")
@click.option("--dataset", type=click.Choice(["iris", "wine", "breast_cancer", "digits"]),
              default="iris", show_default=True, help="Rows the devices are asked to predict.")
@click.option("--rate", type=float, default=2.0, show_default=True,
              help="Predictions per second per device.")
@click.option("--duration", type=float, default=0.0, help="Seconds to run (0: until Ctrl-C).")
@click.option("--connect-timeout", type=click.FloatRange(min=0.1), default=60.0,
              show_default=True, help="Seconds to wait for every device to reach the broker.")
@click.option("--topic-root", default="ew/v1", show_default=True,
              help="The topic root of the controller the devices follow (its --topic-root).")
@click.option("--trust-keys-from", type=click.Path(path_type=Path, exists=True),
              help="Trust the manifest-signing keys of this controller data directory (or a PEM "
                   "file, or a bundle's trusted_keys/): the agents then run only models the "
                   "controller signed (default: development mode, unsigned accepted).")
# -- scenarios (docs/simulator.md)
@click.option("--scenario", "scenario_file", type=click.Path(path_type=Path, exists=True,
              dir_okay=False), help="Run this scenario (TOML: fleet, workload, timeline of "
              "faults) with a broker and controller of its own, and print its report.")
@click.option("--external", is_flag=True, help="With --scenario: use --broker and --controller "
              "instead of starting a broker and a controller.")
@click.option("--report-json", type=click.Path(path_type=Path, dir_okay=False),
              help="With --scenario: also write the report as JSON here.")
@json_option
@quiet_option
@click.pass_context
def simulate(ctx: click.Context, devices: int, broker: str, data_dir: Path, dataset: str,
             rate: float, duration: float, trust_keys_from: Path | None,
             scenario_file: Path | None, external: bool, report_json: Path | None,
             as_json: bool, quiet: bool, connect_timeout: float, topic_root: str) -> None:
    """Run N real agents in this process against a broker, serving a bundled dataset; or run a
    scenario file (exit code 0 when its checks pass, 8 when one fails).

    Progress goes to stderr while it runs (--quiet silences it); the totals, or the scenario's
    report, go to stdout at the end (JSON with --json).

    Example: edgewise simulate --devices 100 --broker 127.0.0.1:1883 --duration 60

    Example: edgewise simulate --devices 10 --trust-keys-from /var/lib/edgewise

    Example: edgewise simulate --scenario simulator/scenarios/flaky-site.toml
    """
    if scenario_file is not None:
        from simulator.cli import run_scenario_command

        url = ctx.find_root().obj["url"] if external else None
        sys.exit(run_scenario_command(scenario_file, data_dir, broker=broker if external else None,
                                      controller_url=url, report_json=report_json,
                                      as_json=as_json, quiet=quiet))
    from simulator.cli import run_simulation

    sys.exit(run_simulation(devices, broker, data_dir, dataset, rate, duration,
                            trust_keys_from, as_json=as_json, quiet=quiet,
                            connect_timeout=connect_timeout, topic_root=topic_root))


@cli.command("demo")
@click.option("--devices", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--dir", "workdir", type=click.Path(path_type=Path), default=Path("edgewise-demo"),
              show_default=True, help="Where the broker, controller and devices keep their files.")
@click.option("--broker", "broker_kind", type=click.Choice(["auto", "mosquitto", "amqtt"]),
              default="auto", show_default=True,
              help="auto: Mosquitto when installed, else the embedded amqtt broker.")
@click.option("--serve-seconds", type=float, default=8.0, show_default=True,
              help="How long the fleet serves predictions after the rollout.")
@json_option
def demo(devices: int, workdir: Path, broker_kind: str, serve_seconds: float,
         as_json: bool) -> None:
    """Everything on this machine: broker, controller, a simulated fleet, a model trained,
    converted, pushed, rolled out and monitored; then a clean shutdown.

    With --json the tour is narrated on stderr and stdout gets one JSON summary.

    Example: edgewise demo --devices 50 --dir /tmp/edgewise-demo
    """
    from simulator.demo import run_demo

    sys.exit(run_demo(devices, workdir, broker_kind, serve_seconds, as_json))


# every feature's commands, registered one way
for _feature in (models_cli, agent_cli, fleet_cli, rollouts_cli, experiments_cli, monitoring_cli,
                 audit_cli,
                 cli_tokens, cli_keys, cli_pki, cli_claims, cli_db, data_cli):
    for _command in _feature.COMMANDS:
        cli.add_command(_command)
# agent versions in waves: the rollout engine's command, under `edgewise agent`
agent_cli.agent.add_command(rollouts_cli.agent_rollout)


def main() -> None:
    cli(prog_name="edgewise")



if __name__ == "__main__":
    main()
