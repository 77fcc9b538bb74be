"""`edgewise`: the operator's command line. Each command is one library call plus error
translation; the controller is reached over its REST API (``--controller`` / ``EDGEWISE_URL``)."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from controller.client import ControllerClient, ControllerClientError
from controller.config import DEFAULT_HTTP_PORT

DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_HTTP_PORT}"


def _client(ctx: click.Context) -> ControllerClient:
    obj = ctx.find_root().obj
    return ControllerClient(obj["url"], obj["token"])


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
def controller_serve(config_path: Path | None, data_dir: Path | None, db_url: str | None,
                     broker: str | None, http_host: str | None, http_port: int | None,
                     api_token: str | None) -> None:
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
                                        http_port=http_port, api_token=api_token)
        click.echo(f"edgewise controller: API http://{config.http_host}:{config.http_port}, "
                   f"broker {config.broker}, data {config.data_dir}")
        run(config)
    except (EdgewiseError, ValueError) as exc:
        _fail(str(exc))


# -- models -----------------------------------------------------------------------------------

@cli.group()
def models() -> None:
    """Convert, register and list models."""


@models.command("push")
@click.argument("model_file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--sample", "sample_file", required=True,
              type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="Sample input rows (.npy or .csv) for parity checks and the reference profile.")
@click.option("--labels", "labels_file", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="True labels for the sample rows (.npy or .csv), to report accuracy.")
@click.option("--name", help="Model name in the registry (default: the file's stem).")
@click.option("--tolerance", type=float, default=1e-4, show_default=True,
              help="Largest output difference allowed between the source model and the artifact.")
@click.pass_context
def models_push(ctx: click.Context, model_file: Path, sample_file: Path, labels_file: Path | None,
                name: str | None, tolerance: float) -> None:
    """Convert MODEL_FILE locally (scikit-learn pickle/joblib -> ONNX), check parity, upload.

    Unpickling runs code: push only files you trust.

    Example: edgewise models push iris.joblib --sample X.npy --labels y.npy --name iris
    """
    from converters import convert_sklearn, load_labels_file, load_model_file, load_sample_file

    estimator = load_model_file(model_file)
    sample = load_sample_file(sample_file)
    labels = load_labels_file(labels_file) if labels_file else None
    click.echo(f"converting {model_file.name} ({type(estimator).__name__}) to ONNX ...")
    result = convert_sklearn(estimator, sample, name=name or model_file.stem, labels=labels,
                             tolerance=tolerance)
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


# -- rollout ----------------------------------------------------------------------------------

@cli.group()
def rollout() -> None:
    """Roll a model version out to devices."""


@rollout.command("start")
@click.argument("target", metavar="NAME[:VERSION]")
@click.option("--wait/--no-wait", default=False, help="Follow progress until every device runs it.")
@click.option("--timeout", type=float, default=300.0, show_default=True,
              help="Seconds to wait with --wait.")
@click.pass_context
def rollout_start(ctx: click.Context, target: str, wait: bool, timeout: float) -> None:
    """Send NAME:VERSION (default: latest) to every registered device at once.

    Exit code with --wait: 0 all devices run it, 2 some failed, 3 timed out.

    Example: edgewise rollout start iris:2 --wait
    """
    name, _, version_text = target.partition(":")
    if version_text and not version_text.isdigit():
        _fail(f"version in {target!r} must be a number, e.g. {name}:2")
    client = _client(ctx)
    result = client.deploy(name, int(version_text) if version_text else None)
    devices = set(result["devices"])
    click.echo(f"deployment {result['deployment_id']}: {result['model']}:{result['version']} "
               f"to {len(devices)} devices")
    if not wait:
        return
    code = _follow(client, result["model"], result["version"], devices, timeout)
    sys.exit(code)


def _follow(client: ControllerClient, model: str, version: int, devices: set[str],
            timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        rows = [d for d in client.list_devices() if d["device_id"] in devices]
        active = [d for d in rows if d["active_model"] == model and d["active_version"] == version
                  and d["state"] == "active"]
        failed = [d for d in rows if d["state"] == "failed" and d.get("target_version") == version]
        width = 30
        filled = int(width * len(active) / max(len(devices), 1))
        click.echo(f"\r[{'#' * filled}{'.' * (width - filled)}] {len(active)}/{len(devices)} active"
                   f", {len(failed)} failed", nl=False)
        if len(active) + len(failed) >= len(devices):
            click.echo()
            for d in failed:
                click.echo(f"  {d['device_id']}: {d['last_error']}")
            return 0 if not failed else 2
        if time.monotonic() > deadline:
            click.echo("\ntimed out; `edgewise fleet` shows where each device stands")
            return 3
        time.sleep(0.5)


# -- fleet ------------------------------------------------------------------------------------

@cli.command("fleet")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def fleet(ctx: click.Context, as_json: bool) -> None:
    """Show every device: online, model version, last seen, predictions, accuracy.

    Example: edgewise --controller http://ctl:8700 fleet
    """
    _emit(_client(ctx).list_devices(), as_json, format_fleet_table)


def format_fleet_table(rows: list[dict[str, Any]]) -> str:
    now = time.time()
    table = []
    for d in rows:
        version = f"{d['active_model']}:{d['active_version']}" if d.get("active_model") else "-"
        accuracy = f"{d['accuracy']:.1%}" if d.get("accuracy") is not None else "-"
        seen = f"{now - d['last_seen']:.0f}s ago" if d.get("last_seen") else "never"
        table.append([d["device_id"], "online" if d.get("online") else "offline", version,
                      d.get("state") or "-", seen, d.get("predictions", 0), accuracy])
    online = sum(1 for d in rows if d.get("online"))
    return _format_table(["DEVICE", "ONLINE", "MODEL", "STATE", "LAST SEEN", "PREDICTIONS",
                          "ACCURACY"], table) + f"\n{len(rows)} devices, {online} online"


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
def simulate(devices: int, broker: str, data_dir: Path, dataset: str, rate: float,
             duration: float) -> None:
    """Run N real agents in this process against a broker, serving a bundled dataset.

    Example: edgewise simulate --devices 100 --broker 127.0.0.1:1883 --duration 60
    """
    from simulator.cli import run_simulation

    sys.exit(run_simulation(devices, broker, data_dir, dataset, rate, duration))


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


def main() -> None:
    cli(prog_name="edgewise")


if __name__ == "__main__":
    main()
