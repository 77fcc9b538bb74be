"""`edgewise`: the operator's command line. Each command is one library call plus error
translation; the controller is reached over its REST API (``--controller`` / ``EDGEWISE_URL``)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from controller.cli_monitoring import COMMANDS as MONITORING_COMMANDS
from controller.cli_rollouts import COMMANDS as ROLLOUT_COMMANDS
from controller.cli_security import register as register_security_commands
from controller.cli_security import resolve_credentials
from controller.cli_views import format_fleet_table  # noqa: F401 -- simulator/demo.py uses it
from controller.cli_views import register as register_view_commands
from controller.client import ControllerClient, ControllerClientError
from controller.config import DEFAULT_HTTP_PORT

DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_HTTP_PORT}"


def _client(ctx: click.Context) -> ControllerClient:
    obj = ctx.find_root().obj
    # the token of --token / EDGEWISE_API_TOKEN, else the one `edgewise login` saved (issue 9)
    token, ca_cert = resolve_credentials(obj["url"], obj["token"])
    return ControllerClient(obj["url"], token, ca_cert=ca_cert)


def _fail(message: str, code: int = 1) -> None:
    click.echo(click.style("error: ", fg="red", bold=True) + message, err=True)
    sys.exit(code)


class _Edgewise(click.Group):
    """Turns the library's errors into one line and exit code 1, for every command at once."""

    def invoke(self, ctx: click.Context) -> Any:
        from converters import ConversionError

        try:
            return super().invoke(ctx)
        except (ControllerClientError, ConversionError) as exc:
            _fail(str(exc))


def _emit(rows: Any, as_json: bool, render: Callable[[Any], str]) -> None:
    click.echo(json.dumps(rows, indent=2) if as_json else render(rows))


@click.group(cls=_Edgewise, context_settings={"help_option_names": ["-h", "--help"]})
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


# -- controller -------------------------------------------------------------------------------

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
@click.option("--share-group", help="MQTT shared-subscription group: replicas with the same group "
              "split the fleet's telemetry between them (docs/scaling.md).")
@click.option("--artifact-dir", type=click.Path(path_type=Path),
              help="Content-addressed artifact store; replicas must share one "
                   "(default: DATA_DIR/artifacts).")
def controller_serve(config_path: Path | None, data_dir: Path | None, db_url: str | None,
                     broker: str | None, http_host: str | None, http_port: int | None,
                     api_token: str | None, share_group: str | None,
                     artifact_dir: Path | None) -> None:
    """Serve the REST API and bridge the MQTT fleet until interrupted.

    Example: edgewise controller serve --broker 127.0.0.1:1883 --data-dir /var/lib/edgewise
    """
    from controller.config import load_controller_config
    from controller.errors import EdgewiseError
    from controller.server import run

    logging.getLogger("edgewise").setLevel(logging.INFO)
    try:
        config = load_controller_config(config_path, data_dir=data_dir, db_url=db_url,
                                        broker=broker, http_host=http_host,
                                        http_port=http_port, api_token=api_token,
                                        share_group=share_group, artifact_dir=artifact_dir)
        scheme = "https" if config.http_tls_cert else "http"
        click.echo(f"edgewise controller: API {scheme}://{config.http_host}:{config.http_port}, "
                   f"broker {config.broker}, data {config.data_dir}")
        run(config)
    except (EdgewiseError, ValueError) as exc:
        _fail(str(exc))


# -- models -----------------------------------------------------------------------------------

@cli.group()
def models() -> None:
    """Convert, register and list models."""


@models.command("push")
@click.argument("model_file", type=click.Path(path_type=Path, exists=True))
@click.option("--sample", "sample_file", required=True,
              type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="Sample input rows (.npy or .csv) for parity checks and the reference profile.")
@click.option("--labels", "labels_file", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="True labels for the sample rows (.npy or .csv), to report accuracy.")
@click.option("--name", help="Model name in the registry (default: the file's stem).")
@click.option("--tolerance", "tolerances", multiple=True, metavar="[PRECISION=]VALUE",
              help="Largest output difference allowed between the source model and the artifact "
                   "(default per precision, float32 1e-4; see `edgewise convert --help`).")
# -- converters (issue 3): the same conversion as `edgewise convert`, one artifact -------------
@click.option("--format", "fmt", type=click.Choice(["onnx", "tflite"]), default="onnx",
              show_default=True, help="Artifact format the devices run.")
@click.option("--quantize", default="float32", show_default=True,
              help="Precision: float32, fp16 (TFLite), int8 (dynamic range), int8-static.")
@click.option("--verify-on", default="ai-edge-litert", show_default=True,
              help="TFLite: runtimes to verify on (ai-edge-litert, tflite-runtime).")
@click.pass_context
def models_push(ctx: click.Context, model_file: Path, sample_file: Path, labels_file: Path | None,
                name: str | None, tolerances: tuple[str, ...], fmt: str, quantize: str,
                verify_on: str) -> None:
    """Convert MODEL_FILE locally (as `edgewise convert` does), check parity, upload.

    Unpickling runs code: push only files you trust.

    Example: edgewise models push iris.joblib --sample X.npy --labels y.npy --name iris
    """
    from controller.cli_convert import convert_file, parse_tolerances
    from converters.precision import normalize_precision

    try:
        precision = normalize_precision(quantize)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--quantize") from None
    model_name = name or (model_file.stem if model_file.is_file() else model_file.name)
    click.echo(f"converting {model_file.name} to {fmt} {precision} ...")
    try:
        (outcome,) = convert_file(model_file, sample_file, labels_file, name=model_name,
                                  formats=[fmt], precisions=[precision],
                                  tolerances=parse_tolerances(tolerances, ()),
                                  tflite_runtimes=verify_on.split(","), progress=False)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if outcome.error is not None:
        raise outcome.error
    result = outcome.result
    parity = result.manifest.parity
    click.echo(f"parity on {parity.get('n')} rows: max |diff| {parity.get('max_abs_diff', 0):.2e}, "
               f"label agreement {parity.get('label_agreement', 1.0):.2%}")
    stored = _client(ctx).push_version(result.manifest, result.artifact)
    click.echo(f"registered {stored['model']}:{stored['version']} "
               f"({stored['size']} bytes, sha256 {stored['sha256'][:12]})")


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def models_list(ctx: click.Context, as_json: bool) -> None:
    """List registered models and their latest versions.

    Example: edgewise models list --json
    """
    _emit(_client(ctx).list_models(), as_json, lambda rows: _format_table(
        ["MODEL", "TASK", "VERSIONS", "LATEST"],
        [[r["name"], r["task"], r["versions"], r["latest_version"]] for r in rows]))


# -- rollout, devices, audit: controller/cli_rollouts.py (issue 5), registered at the end ------

# -- fleet, device show, models show: controller/cli_views.py (issue 7), registered at the end --

def _format_table(header: list[str], rows: list[list[Any]]) -> str:
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


# -- simulator and demo -----------------------------------------------------------------------

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
@click.option("--trust-keys-from", type=click.Path(path_type=Path, exists=True),
              help="Trust the manifest-signing keys of this controller data directory (or a PEM "
                   "file, or a bundle's trusted_keys/): the agents then run only models the "
                   "controller signed (default: development mode, unsigned accepted).")
# -- scenarios (issue 8; docs/simulator.md)
@click.option("--scenario", "scenario_file", type=click.Path(path_type=Path, exists=True,
              dir_okay=False), help="Run this scenario (TOML: fleet, workload, timeline of "
              "faults) with a broker and controller of its own, and print its report.")
@click.option("--external", is_flag=True, help="With --scenario: use --broker and --controller "
              "instead of starting a broker and a controller.")
@click.option("--report-json", type=click.Path(path_type=Path, dir_okay=False),
              help="With --scenario: also write the report as JSON here.")
@click.pass_context
def simulate(ctx: click.Context, devices: int, broker: str, data_dir: Path, dataset: str,
             rate: float, duration: float, trust_keys_from: Path | None,
             scenario_file: Path | None, external: bool, report_json: Path | None) -> None:
    """Run N real agents in this process against a broker, serving a bundled dataset; or run a
    scenario file (exit code 0 when its checks pass).

    Example: edgewise simulate --devices 100 --broker 127.0.0.1:1883 --duration 60

    Example: edgewise simulate --devices 10 --trust-keys-from /var/lib/edgewise

    Example: edgewise simulate --scenario simulator/scenarios/flaky-site.toml
    """
    if scenario_file is not None:
        from simulator.cli import run_scenario_command

        url = ctx.find_root().obj["url"] if external else None
        sys.exit(run_scenario_command(scenario_file, data_dir, broker=broker if external else None,
                                      controller_url=url, report_json=report_json))
    from simulator.cli import run_simulation

    sys.exit(run_simulation(devices, broker, data_dir, dataset, rate, duration,
                            trust_keys_from))


@cli.command("demo")
@click.option("--devices", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--dir", "workdir", type=click.Path(path_type=Path), default=Path("edgewise-demo"),
              show_default=True, help="Where the broker, controller and devices keep their files.")
@click.option("--broker", "broker_kind", type=click.Choice(["auto", "mosquitto", "amqtt"]),
              default="auto", show_default=True,
              help="auto: Mosquitto when installed, else the embedded amqtt broker.")
@click.option("--serve-seconds", type=float, default=8.0, show_default=True,
              help="How long the fleet serves predictions after the rollout.")
def demo(devices: int, workdir: Path, broker_kind: str, serve_seconds: float) -> None:
    """Everything on this machine: broker, controller, a simulated fleet, a model trained,
    converted, pushed, rolled out and monitored; then a clean shutdown.

    Example: edgewise demo --devices 50 --dir /tmp/edgewise-demo
    """
    from simulator.demo import run_demo

    sys.exit(run_demo(devices, workdir, broker_kind, serve_seconds))


# -- rollouts (issue 5): rollout start|status|pause|resume|abort|list, devices list|show|label|
# register, audit. Before the security commands: they add `devices enroll|revoke` to this group.
for _command in ROLLOUT_COMMANDS:
    cli.add_command(_command)

# -- security (issue 9): login/logout, tokens, keys, pki, broker config, devices enroll|revoke
register_security_commands(cli)

# -- views (issue 7): fleet [--watch --selector], device show, models show
register_view_commands(cli)

# -- monitoring (issue 6): alerts, metrics, retrain-runs
for _command in MONITORING_COMMANDS:
    cli.add_command(_command)

# -- converters (issue 3): convert MODEL --sample X.npy --to onnx,tflite --quantize ... --out DIR
from controller.cli_convert import convert_command  # noqa: E402  (kept in this block)

cli.add_command(convert_command)


def main() -> None:
    cli(prog_name="edgewise")


if __name__ == "__main__":
    main()
