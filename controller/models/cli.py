"""`edgewise models ...`: register, list and show models (and `edgewise convert`, in
:mod:`controller.models.cli_convert`, which converts without registering).

``models push`` converts locally, exactly as ``convert`` does, then uploads the verified artifact
and its manifest (``POST /models/{name}/versions``, ``controller/models/api.py``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from controller.cli.common import (
    Progress,
    client_from,
    emit,
    fail,
    format_table,
    json_option,
    quiet_option,
)
from controller.cli.exit_codes import ExitCode, exit_codes_help
from controller.cli.render import is_tty, paint, pct, span
from controller.errors import ValidationError
from controller.models.cli_convert import convert_command
from controller.models.names import check_model_name, default_model_name


@click.group()
def models() -> None:
    """Convert, register and list models."""


@models.command("push", epilog=exit_codes_help(ExitCode.OK, ExitCode.ERROR, ExitCode.USAGE,
                                                ExitCode.CONVERSION_FAILED))
@click.argument("model_file", type=click.Path(path_type=Path, exists=True))
@click.option("--sample", "sample_file", required=True,
              type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="Sample input rows (.npy, .csv or .parquet; a .csv with a header or a .parquet "
                   "keeps column names and types, for mixed-type pipelines) for parity checks "
                   "and the reference profile.")
@click.option("--labels", "labels_file", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="True labels for the sample rows (.npy, .csv or a one-column .parquet), to "
                   "report accuracy.")
@click.option("--name", help="Model name in the registry (default: the file's stem in lower "
                             "case): 1-64 of a-z 0-9 . _ -, starting with a letter or digit.")
@click.option("--tolerance", "tolerances", multiple=True, metavar="[PRECISION=]VALUE",
              help="Largest output difference allowed between the source model and the artifact "
                   "(default per precision, float32 1e-4; see `edgewise convert --help`).")
# -- converters: the same conversion as `edgewise convert`, one artifact -------------
@click.option("--format", "fmt", type=click.Choice(["onnx", "tflite"]), default="onnx",
              show_default=True, help="Artifact format the devices run.")
@click.option("--quantize", default="float32", show_default=True,
              help="Precision: float32, fp16 (TFLite), int8 (dynamic range), int8-static.")
@click.option("--verify-on", default="ai-edge-litert", show_default=True,
              help="TFLite: runtimes to verify on (ai-edge-litert, tflite-runtime).")
@json_option
@quiet_option
@click.pass_context
def models_push(ctx: click.Context, model_file: Path, sample_file: Path, labels_file: Path | None,
                name: str | None, tolerances: tuple[str, ...], fmt: str, quantize: str,
                verify_on: str, as_json: bool, quiet: bool) -> None:
    """Convert MODEL_FILE locally (as `edgewise convert` does), check parity, upload.

    Progress goes to stderr (--quiet silences it); stdout gets the registered version (JSON
    with --json). Unpickling runs code: push only files you trust.

    Example: edgewise models push iris.joblib --sample X.npy --labels y.npy --name iris
    """
    from controller.models.cli_convert import convert_file, parse_tolerances
    from converters.precision import normalize_precision

    try:
        precision = normalize_precision(quantize)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--quantize") from None
    model_name = name or default_model_name(model_file.stem if model_file.is_file()
                                            else model_file.name)
    try:
        check_model_name(model_name)
    except ValidationError as exc:
        raise click.BadParameter(str(exc), param_hint="--name") from None
    progress = Progress(quiet)
    client = client_from(ctx)  # a bad --controller URL is refused before the conversion
    progress(f"converting {model_file.name} to {fmt} {precision}")
    try:
        (outcome,) = convert_file(model_file, sample_file, labels_file, name=model_name,
                                  formats=[fmt], precisions=[precision],
                                  tolerances=parse_tolerances(tolerances, ()),
                                  tflite_runtimes=verify_on.split(","), progress=progress)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if outcome.error is not None:
        fail(f"{model_file.name}: {outcome.error}", ExitCode.CONVERSION_FAILED)
    result = outcome.result
    parity = result.manifest.parity
    progress(f"parity on {parity.get('n')} rows: max |diff| "
             f"{parity.get('max_abs_diff', 0):.2e}, label agreement "
             f"{parity.get('label_agreement', 1.0):.2%}")
    progress(f"uploading {len(result.artifact):,} bytes to {client.base_url}")
    stored = client.push_version(result.manifest, result.artifact)
    emit(stored, as_json, f"registered {stored['model']}:{stored['version']} "
                          f"({stored['size']} bytes, sha256 {stored['sha256'][:12]})")


@models.command("list")
@json_option
@click.pass_context
def models_list(ctx: click.Context, as_json: bool) -> None:
    """List registered models and their latest versions.

    Example: edgewise models list --json
    """
    emit(client_from(ctx).list_models(), as_json, lambda rows: format_table(
        ["MODEL", "TASK", "VERSIONS", "LATEST"],
        [[r["name"], r["task"], r["versions"], r["latest_version"]] for r in rows]))



@models.command("show")
@click.argument("name")
@click.option("--group-by", default="site", show_default=True,
              help="Device label whose values split the 'where it runs' counts.")
@click.option("--window", type=click.FloatRange(60, 30 * 86400), default=3600.0,
              show_default=True, help="Seconds of recent figures per version.")
@json_option
@click.pass_context
def models_show(ctx: click.Context, name: str, group_by: str, window: float,
                as_json: bool) -> None:
    """Show a model: its versions with conversion parity, where each runs, how each does.

    Example: edgewise models show iris --group-by site
    """
    summary = client_from(ctx).model_summary(name, window, group_by)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(format_model(summary, is_tty()))


def format_model(s: dict[str, Any], colour: bool = False) -> str:
    lines = [f"model   {paint(s['name'], colour, bold=True)}  ({s['task']})", ""]
    rows = []
    for v in s["versions"]:
        parity = v.get("parity") or {}
        diff = parity.get("max_abs_diff")
        agree = parity.get("label_agreement")
        f = v["figures"]
        rows.append([
            v["version"], v["format"], f"{v['size'] / 1024:.0f} KiB", v["sha256"][:12],
            time.strftime("%Y-%m-%d %H:%M", time.localtime(v["created_at"])),
            f"{diff:.1e}" if isinstance(diff, (int, float)) else "-",
            pct(agree) if isinstance(agree, (int, float)) else "-",
            f"{v['running']} ({v['online']} online)", v["installing"], v["failed"],
            f["predictions"], pct(f["accuracy"]),
            f"{f['drift_psi']:.3f}" if f.get("drift_psi") is not None else "-"])

    def paint_cell(column: int, cell: str) -> str:
        if column == 9 and cell.strip() not in ("0", ""):
            return paint(cell, colour, fg="red")
        return cell

    lines.append(format_table(
        ["VERSION", "FORMAT", "SIZE", "SHA256", "CREATED", "PARITY |DIFF|", "AGREE",
         "RUNNING", "INSTALLING", "FAILED", f"PREDICTIONS {span(s['window_s'])}", "ACCURACY",
         "DRIFT"], rows, paint_cell if colour else None))
    placed = [(v["version"], v["groups"]) for v in s["versions"] if v["groups"]]
    if placed:
        lines += ["", paint(f"WHERE IT RUNS (by {s['group_by']})", colour, bold=True)]
        for version, groups in placed:
            parts = ", ".join(f"{g or '(none)'} {n}" for g, n in groups.items())
            lines.append(f"  v{version}: {parts}")
    return "\n".join(lines)



COMMANDS = (models, convert_command)
