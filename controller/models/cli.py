"""`edgewise models ...`: register, list and show models (and `edgewise convert`, in
:mod:`controller.models.cli_convert`, which converts without registering).

``models push`` converts locally, exactly as ``convert`` does, then uploads the verified artifact
and its manifest (``POST /models/{name}/versions``, ``controller/models/api.py``).
"""

from __future__ import annotations

import dataclasses
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
from edgewise_wire import SchemaError
from edgewise_wire.manifest import check_device_class


@click.group()
def models() -> None:
    """Convert, register and list models."""


@models.command("push", epilog=exit_codes_help(ExitCode.OK, ExitCode.ERROR, ExitCode.USAGE,
                                                ExitCode.CONVERSION_FAILED))
@click.argument("model", metavar="MODEL_FILE|MLFLOW_URI")
@click.option("--sample", "sample_file",
              type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="Sample input rows (.npy, .csv or .parquet; a .csv with a header or a .parquet "
                   "keeps column names and types, for mixed-type pipelines) for parity checks "
                   "and the reference profile. Required for a file; for an MLflow model the "
                   "model's input example (else rows drawn to its signature) stands in.")
@click.option("--labels", "labels_file", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="True labels for the sample rows (.npy, .csv or a one-column .parquet), to "
                   "report accuracy.")
@click.option("--name", help="Model name in the registry (default: the file's stem in lower "
                             "case, or the MLflow registered model's name): 1-64 of a-z 0-9 . _ -, "
                             "starting with a letter or digit.")
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
# -- MLflow (docs/integrations.md) ---------------------------------------------------
@click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI",
              help="MLflow tracking URI for models:/ and runs:/ (default: $MLFLOW_TRACKING_URI).")
@click.option("--registry-uri", envvar="MLFLOW_REGISTRY_URI",
              help="MLflow model registry URI, when it differs from the tracking URI.")
@click.option("--mlflow-write-back", is_flag=True,
              help="After the upload, tag the MLflow run with the Edgewise version and parity "
                   "and log the conversion report to it (needs write access to the run).")
@click.option("--device-class", default=None, metavar="CLASS",
              help="The device class this version is built for (e.g. camera-v2, pi5-arm64), "
                   "as devices have it in agent.toml: it is signed into every desired state, "
                   "and devices of another class refuse the version. Default: any class.")
@json_option
@quiet_option
@click.pass_context
def models_push(ctx: click.Context, model: str, sample_file: Path | None,
                labels_file: Path | None, name: str | None, tolerances: tuple[str, ...],
                fmt: str, quantize: str, verify_on: str, tracking_uri: str | None,
                registry_uri: str | None, mlflow_write_back: bool, device_class: str | None,
                as_json: bool, quiet: bool) -> None:
    """Convert a model locally (as `edgewise convert` does), check parity, upload.

    MODEL_FILE is a file `edgewise convert` takes; an MLflow URI (models:/NAME/VERSION,
    models:/NAME@ALIAS, runs:/RUN_ID/PATH) is fetched through the MLflow client (the
    [mlflow] extra): its flavour picks the converter, its input example or signature stands
    in for --sample, and its lineage (run, registered version, the run's metrics) goes into the
    manifest (`edgewise models show`).

    Progress goes to stderr (--quiet silences it); stdout gets the registered version (JSON
    with --json). Unpickling runs code: push only models you trust.

    Example: edgewise models push iris.joblib --sample X.npy --labels y.npy --name iris

    Example: edgewise models push models:/churn@champion --tracking-uri http://mlflow:5000
    """
    from controller.models.cli_convert import convert_file, parse_tolerances
    from controller.models.mlflow_source import MlflowSourceError, parse_uri
    from converters.precision import normalize_precision

    try:
        precision = normalize_precision(quantize)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--quantize") from None
    try:
        ref = parse_uri(model)
    except MlflowSourceError as exc:
        raise click.BadParameter(str(exc), param_hint="MODEL_FILE|MLFLOW_URI") from None
    if mlflow_write_back and ref is None:
        raise click.UsageError("--mlflow-write-back needs an MLflow URI (models:/ or runs:/)")
    if ref is None:
        path = Path(model)
        model_name = name or default_model_name(path.stem if path.is_file() else path.name)
    else:
        model_name = name or default_model_name(ref.default_name)
    try:
        check_model_name(model_name)
    except ValidationError as exc:
        raise click.BadParameter(str(exc), param_hint="--name") from None
    if device_class is not None:
        try:
            check_device_class(device_class, "--device-class")
        except SchemaError as exc:
            raise click.BadParameter(str(exc), param_hint="--device-class") from None
    progress = Progress(quiet)
    client = client_from(ctx)  # a bad --controller URL is refused before the conversion
    lineage: dict[str, Any] | None = None
    if ref is None:
        model_file = Path(model)
        if not model_file.exists():
            raise click.BadParameter(f"{model!r} does not exist (nor is it an MLflow URI: "
                                     "models:/NAME/VERSION, models:/NAME@ALIAS, runs:/ID/PATH)",
                                     param_hint="MODEL_FILE|MLFLOW_URI")
        if sample_file is None:
            raise click.UsageError("--sample is required for a model file (an MLflow model "
                                   "may use its input example instead)")
        progress(f"converting {model_file.name} to {fmt} {precision}")
        label = model_file.name
        try:
            (outcome,) = convert_file(model_file, sample_file, labels_file, name=model_name,
                                      formats=[fmt], precisions=[precision],
                                      tolerances=parse_tolerances(tolerances, ()),
                                      tflite_runtimes=verify_on.split(","), progress=progress)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    else:
        label = ref.uri
        progress(f"resolving {ref.uri} through MLflow")
        try:
            (outcome,), lineage = _convert_mlflow(ref, sample_file, labels_file, model_name, fmt,
                                                  precision, parse_tolerances(tolerances, ()),
                                                  verify_on.split(","), tracking_uri,
                                                  registry_uri, progress)
        except MlflowSourceError as exc:
            fail(exc)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    if outcome.error is not None:
        fail(f"{label}: {outcome.error}", ExitCode.CONVERSION_FAILED)
    result = outcome.result
    manifest = result.manifest
    if lineage is not None:
        manifest = dataclasses.replace(manifest, source={**manifest.source, "mlflow": lineage})
    if device_class is not None:
        manifest = dataclasses.replace(manifest, device_class=device_class)
    parity = manifest.parity
    progress(f"parity on {parity.get('n')} rows: max |diff| "
             f"{parity.get('max_abs_diff', 0):.2e}, label agreement "
             f"{parity.get('label_agreement', 1.0):.2%}")
    progress(f"uploading {len(result.artifact):,} bytes to {client.base_url}")
    stored = client.push_version(manifest, result.artifact)
    if mlflow_write_back and lineage is not None:
        from controller.models.mlflow_source import write_back

        try:
            progress("wrote back " + write_back(lineage, stored, manifest.to_dict(),
                                                tracking_uri))
        except MlflowSourceError as exc:  # the version is registered; say so with the error
            fail(f"registered {stored['model']}:{stored['version']}, but {exc}")
    emit(stored, as_json, f"registered {stored['model']}:{stored['version']} "
                          f"({stored['size']} bytes, sha256 {stored['sha256'][:12]})")


def _convert_mlflow(ref: Any, sample_file: Path | None, labels_file: Path | None,
                    name: str | None, fmt: str, precision: str, tolerances: dict[str, Any],
                    runtimes: list[str], tracking_uri: str | None, registry_uri: str | None,
                    progress: Progress) -> tuple[list[Any], dict[str, Any]]:
    """Resolve ``ref`` through MLflow and convert it; the outcomes and the lineage."""
    from controller.models.mlflow_source import MlflowSourceError, resolve
    from converters import load_labels_file
    from converters.api import convert
    from converters.loading import load_table_file

    resolved = resolve(ref, tracking_uri, registry_uri)
    lineage = resolved.lineage
    progress(f"{resolved.flavour} model from run {lineage.get('run_id') or '-'}"
             + (f", registered {lineage['registered_model']} v{lineage['registered_version']}"
                if "registered_version" in lineage else ""))
    if sample_file is not None:
        sample = load_table_file(sample_file)
        lineage["sample"] = f"--sample {sample_file.name}"
    elif resolved.sample is not None:
        sample = resolved.sample
        lineage["sample"] = resolved.sample_origin
        progress(f"no --sample: checking on the model's {resolved.sample_origin}; give --sample "
                 "with real rows for a reference profile that drift is measured against")
    else:
        raise MlflowSourceError(f"{ref.uri}: no --sample and the model has neither an input "
                                "example nor a signature; give --sample")
    labels = load_labels_file(labels_file) if labels_file else None
    is_frame = hasattr(sample, "columns")
    outcomes = convert(resolved.model, sample, name=name or ref.default_name, formats=[fmt],
                       precisions=[precision], labels=labels, tolerances=tolerances,
                       tflite_runtimes=runtimes, kind=resolved.kind,
                       feature_names=None if is_frame else resolved.feature_names,
                       progress=progress)
    return outcomes, lineage


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
            v["version"],
            f"{v['format']} for {v['device_class']}" if v.get("device_class") else v["format"],
            f"{v['size'] / 1024:.0f} KiB", v["sha256"][:12],
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
    lineage: list[tuple[int, dict[str, Any]]] = []
    for v in s["versions"]:
        found = (v.get("source") or {}).get("mlflow")
        if isinstance(found, dict):
            lineage.append((v["version"], found))
    if lineage:
        lines += ["", paint("LINEAGE (MLflow)", colour, bold=True)]
        for version, m in lineage:
            registered = (f"{m['registered_model']} v{m['registered_version']}"
                          if m.get("registered_version") is not None else "not registered")
            alias = f" @{m['alias']}" if m.get("alias") else ""
            lines.append(f"  v{version}: {m.get('uri')} ({m.get('flavour')}), {registered}"
                         f"{alias}, run {m.get('run_id') or '-'} at {m.get('tracking_uri')}")
            metrics = m.get("metrics") or {}
            if metrics:
                lines.append("       run metrics: " + ", ".join(
                    f"{k} {v:.4g}" for k, v in list(metrics.items())[:8]))
    placed = [(v["version"], v["groups"]) for v in s["versions"] if v["groups"]]
    if placed:
        lines += ["", paint(f"WHERE IT RUNS (by {s['group_by']})", colour, bold=True)]
        for version, groups in placed:
            parts = ", ".join(f"{g or '(none)'} {n}" for g, n in groups.items())
            lines.append(f"  v{version}: {parts}")
    return "\n".join(lines)



COMMANDS = (models, convert_command)
