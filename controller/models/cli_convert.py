"""`edgewise convert`: turn a model into verified ONNX/TFLite artifacts plus manifests, locally.

One call into converters.api.convert, progress on stderr, and a report table; `models push`
uses ``convert_file`` from here, so pushing and converting run the same code.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from controller.cli.common import Progress, json_option, quiet_option
from controller.cli.exit_codes import ExitCode, exit_codes_help

TFLITE_RUNTIMES = ("ai-edge-litert", "tflite-runtime")


def parse_tolerances(values: Sequence[str], agreements: Sequence[str]) -> dict[str, Any]:
    """``--tolerance 1e-3`` / ``--tolerance float16=0.02`` and ``--min-agreement`` → overrides.

    A bare value applies to every precision; ``PRECISION=VALUE`` to one. Unset parts keep the
    precision's default.
    """
    from converters.precision import DEFAULT_TOLERANCES, PRECISIONS, Tolerance, normalize_precision

    def split(text: str, option: str) -> tuple[str, float]:
        key, sep, value = text.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            raise click.BadParameter(f"{text!r}: expected VALUE or PRECISION=VALUE",
                                     param_hint=option) from None
        if not sep:
            return "*", number
        try:
            return normalize_precision(key), number
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=option) from None

    diffs = dict(split(v, "--tolerance") for v in values)
    mins = dict(split(v, "--min-agreement") for v in agreements)
    overrides: dict[str, Any] = {}
    for precision in PRECISIONS:
        default = DEFAULT_TOLERANCES[precision]
        diff = diffs.get(precision, diffs.get("*", default.max_abs_diff))
        agreement = mins.get(precision, mins.get("*", default.min_label_agreement))
        try:
            overrides[precision] = Tolerance(diff, agreement)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return overrides


def convert_file(model_file: Path, sample_file: Path, labels_file: Path | None, *, name: str,
                 formats: Sequence[str], precisions: Sequence[str],
                 tolerances: dict[str, Any] | None = None, task: str | None = None,
                 classes: Sequence[str] | None = None, input_shape: Sequence[int] | None = None,
                 tflite_runtimes: Sequence[str] = ("ai-edge-litert",),
                 progress: Callable[[str], None] | None = None) -> list[Any]:
    """Load the files and run converters.api.convert; each step is told to ``progress`` (the
    commands pass a :class:`~controller.cli.common.Progress`: stderr unless ``--quiet``)."""
    from converters import load_labels_file
    from converters.api import convert
    from converters.loading import load_table_file

    sample = load_table_file(sample_file)
    labels = load_labels_file(labels_file) if labels_file else None
    example = None
    if input_shape:
        import numpy as np

        example = np.zeros((1, *input_shape), dtype=np.float32)
    class_labels = _typed_classes(classes) if classes else None

    def say(message: str) -> None:
        if progress is not None:
            progress(message)

    return convert(model_file, sample, name=name, formats=formats, precisions=precisions,
                   labels=labels, task=task, class_labels=class_labels, tolerances=tolerances,
                   tflite_runtimes=tflite_runtimes, example_input=example, progress=say)


def report_table(outcomes: Sequence[Any]) -> str:
    """FORMAT PRECISION SIZE PARITY ACCURACY LATENCY STATUS, one row per requested artifact."""
    rows = []
    for o in outcomes:
        if o.result is None:
            rows.append([o.format, o.precision, "-", "-", "-", "-",
                         f"FAILED: {_short(str(o.error))}"])
            continue
        parity = o.result.manifest.parity
        agreement = parity.get("label_agreement", 1.0)
        parity_text = f"{parity['max_abs_diff']:.1e}"
        if o.result.manifest.task == "classification":
            parity_text += f" / {agreement:.1%}"
        rows.append([o.format, o.precision, _size(len(o.result.artifact)), parity_text,
                     _quality(parity), f"{o.result.report['latency_us']:.0f} µs",
                     "ok (" + ", ".join(o.result.manifest.verified_runtimes) + ")"])
    header = ["FORMAT", "PRECISION", "SIZE", "MAX|DIFF| / LABELS", "ACCURACY", "1-ROW",
              "STATUS"]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
             for r in [header, *rows]]
    return "\n".join(lines + route_lines(outcomes))


def route_lines(outcomes: Sequence[Any]) -> list[str]:
    """Which converter made each artifact, and what the routes before it did (only where more
    than one route was tried): the first route whose artifact passes the parity check wins."""
    lines = []
    for o in outcomes:
        attempts = (o.result.report.get("attempts") if o.result is not None
                    else getattr(o.error, "attempts", None)) or []
        if len(attempts) < 2:
            continue
        verdict = (f"route {o.result.report['route']} won" if o.result is not None
                   else "no route verified")
        lines.append(f"{o.format} {o.precision}: {verdict}; routes tried in order:")
        for a in attempts:
            if a["ok"]:
                outcome = f"ok, parity max|diff| {a['parity'].get('max_abs_diff', 0.0):.1e}"
            else:
                outcome = f"failed: {_short(a.get('error') or '', 200)}"
            lines.append(f"  {a['route']}: {outcome}")
    return lines


def write_outcomes(outcomes: Sequence[Any], out_dir: Path, name: str) -> list[Path]:
    """``NAME.PRECISION.FORMAT`` and ``NAME.PRECISION.FORMAT.manifest.json`` per artifact."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for o in outcomes:
        if o.result is None:
            continue
        path = out_dir / f"{name}.{o.precision}.{o.format}"
        path.write_bytes(o.result.artifact)
        manifest = path.with_name(path.name + ".manifest.json")
        manifest.write_text(json.dumps(o.result.manifest.to_dict(), indent=2) + "\n")
        written += [path, manifest]
    return written


@click.command("convert", epilog=exit_codes_help(ExitCode.OK, ExitCode.ERROR, ExitCode.USAGE,
                                                  ExitCode.CONVERSION_FAILED))
@click.argument("model", type=click.Path(path_type=Path, exists=True))
@click.option("--sample", "sample_file", required=True,
              type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="Sample input rows (.npy, .csv or .parquet): parity, calibration, smoke "
                   "tests, profile. A .csv with a header or a .parquet keeps column names and "
                   "types (needed for mixed-type pipelines). A .npy may hold rows shaped like "
                   "the model's input (e.g. N x 8 x 8 x 1).")
@click.option("--labels", "labels_file", type=click.Path(path_type=Path, exists=True,
                                                        dir_okay=False),
              help="True labels for the sample rows (.npy, .csv or a one-column .parquet), "
                   "to report accuracy.")
@click.option("--to", "formats", default="onnx", show_default=True,
              help="Comma-separated formats: onnx, tflite.")
@click.option("--quantize", default="", help="Comma-separated extra precisions besides "
              "float32: fp16 (TFLite), int8 (dynamic range), int8-static (calibrated on the "
              "sample).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              default=Path("edgewise-artifacts"), show_default=True,
              help="Directory for the artifacts and their manifests.")
@click.option("--name", help="Model name in the manifests (default: the file's stem).")
@click.option("--task", type=click.Choice(["classification", "regression"]),
              help="Network models: what the output means (default: 2+ outputs classify).")
@click.option("--classes", help="Network classifiers: comma-separated class names, in output "
              "order (default: the distinct --labels values, else 0..K-1).")
@click.option("--input-shape", help="PyTorch: the shape of one input row, e.g. 1,8,8, when the "
              "sample holds flat rows.")
@click.option("--tolerance", "tolerances", multiple=True, metavar="[PRECISION=]VALUE",
              help="Largest allowed score/value difference vs the source (all precisions, or "
                   "one). Defaults: float32 1e-4, float16 1e-2, int8 5e-2, int8-static 0.1.")
@click.option("--min-agreement", "agreements", multiple=True, metavar="[PRECISION=]SHARE",
              help="Least share of rows whose label must match. Defaults: float32 1.0, "
                   "float16 0.99, int8 0.97, int8-static 0.95.")
@click.option("--verify-on", default="ai-edge-litert", show_default=True,
              help="TFLite runtimes to run each TFLite artifact in: ai-edge-litert, "
                   "tflite-runtime (2.14, for devices on numpy < 2).")
@json_option
@quiet_option
def convert_command(model: Path, sample_file: Path, labels_file: Path | None, formats: str,
                    quantize: str, out_dir: Path, name: str | None, task: str | None,
                    classes: str | None, input_shape: str | None, tolerances: tuple[str, ...],
                    agreements: tuple[str, ...], verify_on: str, as_json: bool,
                    quiet: bool) -> None:
    """Convert MODEL to ONNX and/or TFLite, verify every artifact against MODEL, write them.

    MODEL: scikit-learn .joblib/.pkl (unpickling runs code: trusted files only; XGBoost,
    LightGBM and CatBoost models too), Keras .keras/.h5 or a SavedModel directory, PyTorch
    TorchScript .pt or torch.export .pt2, .onnx, or .tflite (passed through after
    verification). A pipeline over named, mixed-type columns (ColumnTransformer) takes its
    --sample as a .csv with a header or a .parquet and gets one named input per column.

    Each artifact has an ordered list of converter routes; the first whose artifact passes the
    parity check wins, and the output lists every route tried and what it did.

    Exit code 0 when every artifact was made and verified, 9 when any failed (the table says
    why; the others are still written). Progress goes to stderr (--quiet silences it).

    Example: edgewise convert digits.keras --sample X.npy --labels y.npy --to onnx,tflite --quantize int8 --out build/

    Example: edgewise convert churn.joblib --sample customers.parquet --labels churned.csv
    """
    from converters.precision import normalize_precision

    try:
        precisions = ["float32", *(normalize_precision(q) for q in quantize.split(",")
                                   if q.strip())]
        shape = [int(d) for d in input_shape.split(",")] if input_shape else None
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    runtimes = [r.strip() for r in verify_on.split(",") if r.strip()]
    for runtime in runtimes:
        if runtime not in TFLITE_RUNTIMES:
            raise click.BadParameter(f"unknown runtime {runtime!r}; choose from "
                                     f"{', '.join(TFLITE_RUNTIMES)}", param_hint="--verify-on")
    name = name or (model.stem if model.is_file() else model.name)
    progress = Progress(quiet)
    progress(f"converting {model} to {formats} ({', '.join(dict.fromkeys(precisions))})")
    try:
        outcomes = convert_file(model, sample_file, labels_file, name=name,
                                formats=formats.split(","),
                                precisions=list(dict.fromkeys(precisions)),
                                tolerances=parse_tolerances(tolerances, agreements), task=task,
                                classes=classes.split(",") if classes else None,
                                input_shape=shape, tflite_runtimes=runtimes,
                                progress=progress)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    written = write_outcomes(outcomes, out_dir, name)
    if as_json:
        click.echo(json.dumps([{"format": o.format, "precision": o.precision,
                                "ok": o.result is not None,
                                "error": str(o.error) if o.error else None,
                                "attempts": (o.result.report.get("attempts") if o.result
                                             else getattr(o.error, "attempts", None)),
                                "report": o.result.report if o.result else None}
                               for o in outcomes], indent=2))
    else:
        click.echo(report_table(outcomes))
        if written:
            click.echo(f"wrote {len(written) // 2} artifacts with manifests to {out_dir}/")
    if any(o.result is None for o in outcomes):
        sys.exit(ExitCode.CONVERSION_FAILED)


def _typed_classes(values: Sequence[str]) -> list[Any]:
    try:
        return [int(v) for v in values]
    except ValueError:
        return [v.strip() for v in values]


def _size(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n >= 1024 else f"{n} B"


def _quality(parity: dict[str, Any]) -> str:
    if "source_accuracy" in parity:
        return f"{parity['artifact_accuracy']:.1%} (src {parity['source_accuracy']:.1%})"
    if "source_mae" in parity:
        return f"MAE {parity['artifact_mae']:.3g} (src {parity['source_mae']:.3g})"
    return "-"


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
