"""Conversion report: for each model, conversion time, artifact size, and single-row and batch
latency of the source framework vs ONNX (onnxruntime) vs TFLite (ai-edge-litert), in one run.

Usage: python bench/bench_convert.py [--quick] [--rows N] [--only CASE ...]

``--only`` runs the cases whose names contain one of the words given (e.g. ``--only XGBoost
LightGBM ColumnTransformer``) and replaces just their rows in the table of docs/benchmarks.md,
keeping the other rows from the earlier run.

Every artifact comes from converters.api.convert (so it passed its parity check first). Latency:
one thread everywhere (onnxruntime intra-op 1, LiteRT num_threads=1, torch.set_num_threads(1),
TensorFlow intra/inter-op 1); the single-row figure is the median of 200 calls after warm-up,
the batch figure the median of 5 runs of --rows rows. "source" is the model's own framework as
the converter calls it (scikit-learn predict + predict_proba; a Keras model through a
tf.function; a torch module under no_grad). Results: bench/results/convert.json and the
"convert" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the repo importable

import numpy as np  # noqa: E402

from bench.common import (  # noqa: E402
    load_average,
    machine,
    machine_line,
    table,
    update_doc_section,
    write_result,
)


def median_seconds(run: Callable[[], Any], repeats: int) -> float:
    run()
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def latency(predict: Callable[[np.ndarray], Any], rows: np.ndarray, single: int) -> dict[str, float]:
    return {"single_row_us": median_seconds(lambda: predict(rows[:1]), single) * 1e6,
            "batch_ms": median_seconds(lambda: predict(rows), 5) * 1e3}


def artifact_predict(fmt: str, artifact: bytes, manifest: Any) -> Callable[[Any], Any]:
    if manifest.input_schema is not None:  # named inputs: rows are a DataFrame
        import onnxruntime as ort

        from converters.tabular import feed

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(artifact, options, providers=["CPUExecutionProvider"])
        wanted = [manifest.label_output] + ([manifest.score_output] if manifest.score_output
                                            else [])
        return lambda frame: session.run(wanted, feed(manifest.input_schema, frame))
    if fmt == "onnx":
        from converters.onnx_model import OnnxRunner

        runner = OnnxRunner(artifact)
        names = [manifest.label_output] + ([manifest.score_output] if manifest.score_output
                                           else [])
        return lambda rows: runner.run(rows, names)
    from converters.tflite_check import TfliteRunner

    tflite = TfliteRunner(artifact)
    return tflite.run


def cases(quick: bool) -> list[tuple[str, Callable[[], tuple[Any, np.ndarray, np.ndarray]],
                                     tuple[str, ...], tuple[str, ...]]]:
    from sklearn.datasets import load_diabetes, load_digits
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    Xd, yd = load_diabetes(return_X_y=True)
    trees = 20 if quick else 100

    def sk(model: Any) -> Callable[[], tuple[Any, np.ndarray, np.ndarray]]:
        return lambda: (model.fit(X, y), X, y)

    def keras_mlp() -> tuple[Any, np.ndarray, np.ndarray]:
        import keras

        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
        m.compile("adam", "sparse_categorical_crossentropy")
        m.fit(X, y, epochs=10, verbose=0)
        return m, X, y

    def keras_cnn() -> tuple[Any, np.ndarray, np.ndarray]:
        import keras

        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(16, 3, activation="relu"),
                              keras.layers.MaxPooling2D(2), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
        m.compile("adam", "sparse_categorical_crossentropy")
        m.fit(X.reshape(-1, 8, 8, 1), y, epochs=10, verbose=0)
        return m, X.reshape(-1, 8, 8, 1), y

    def torch_model(kind: str) -> Callable[[], tuple[Any, np.ndarray, np.ndarray]]:
        def build() -> tuple[Any, np.ndarray, np.ndarray]:
            import torch

            torch.manual_seed(0)
            if kind == "mlp":
                m = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(),
                                        torch.nn.Linear(64, 10))
                inputs = X
            else:
                m = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(),
                                        torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                                        torch.nn.Linear(16 * 16, 10))
                inputs = X.reshape(-1, 1, 8, 8)
            optimizer = torch.optim.Adam(m.parameters(), lr=0.01)
            batch, target = torch.from_numpy(inputs), torch.from_numpy(y)
            for _ in range(60):
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(m(batch), target).backward()
                optimizer.step()
            return m.eval(), inputs, y
        return build

    def onnx_file() -> tuple[Any, np.ndarray, np.ndarray]:
        import torch

        m, inputs, labels = torch_model("cnn")()
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(m, (torch.zeros(1, 1, 8, 8),), buffer,  # type: ignore[arg-type]
                              input_names=["image"],
                              output_names=["logits"], dynamic_axes={"image": {0: "n"}},
                              dynamo=False)
        path = Path(os.environ.get("TMPDIR", "/tmp")) / "edgewise-bench-cnn.onnx"
        path.write_bytes(buffer.getvalue())
        return path, inputs, labels

    def boosting(library: str) -> Callable[[], tuple[Any, np.ndarray, np.ndarray]]:
        def build() -> tuple[Any, np.ndarray, np.ndarray]:
            if library == "xgboost":
                import xgboost

                return xgboost.XGBClassifier(n_estimators=trees, max_depth=4).fit(X, y), X, y
            import lightgbm

            return lightgbm.LGBMClassifier(n_estimators=trees, verbose=-1).fit(X, y), X, y
        return build

    def mixed_table() -> tuple[Any, Any, np.ndarray]:
        from sklearn.linear_model import LogisticRegression as Logistic

        from tests.harness.tabular import mixed_frame, mixed_pipeline

        frame, labels, _ = mixed_frame(n=1000)
        return mixed_pipeline(Logistic(max_iter=1000)).fit(frame, labels), frame, labels

    both = ("onnx", "tflite")
    return [
        ("sklearn LogisticRegression", sk(LogisticRegression(max_iter=2000)), ("onnx",),
         ("float32",)),
        (f"sklearn RandomForest({trees})", sk(RandomForestClassifier(trees, max_depth=10,
                                                                    random_state=0)),
         both, ("float32",)),
        ("sklearn GradientBoosting(20)", sk(GradientBoostingClassifier(
            n_estimators=20, max_depth=3, random_state=0)), both, ("float32",)),
        ("sklearn StandardScaler+MLP", sk(make_pipeline(StandardScaler(), MLPClassifier(
            (64,), max_iter=300, random_state=0))), both, ("float32", "int8-dynamic")),
        ("sklearn Ridge (diabetes/100)", lambda: (Ridge().fit(Xd, yd / 100), Xd, yd / 100),
         both, ("float32",)),
        ("keras MLP", keras_mlp, both, ("float32", "float16", "int8-dynamic", "int8-static")),
        ("keras CNN 8x8", keras_cnn, both, ("float32", "int8-static")),
        ("torch MLP", torch_model("mlp"), both, ("float32", "int8-dynamic")),
        ("torch CNN 8x8", torch_model("cnn"), both, ("float32",)),
        ("ONNX CNN file", onnx_file, both, ("float32",)),
        (f"XGBoost XGBClassifier({trees})", boosting("xgboost"), ("onnx",), ("float32",)),
        (f"LightGBM LGBMClassifier({trees})", boosting("lightgbm"), ("onnx",), ("float32",)),
        ("sklearn ColumnTransformer pipeline (mixed table)", mixed_table, ("onnx",),
         ("float32",)),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller forests, fewer calls")
    parser.add_argument("--rows", type=int, default=1000, help="batch size for batch latency")
    parser.add_argument("--only", nargs="+", metavar="WORD",
                        help="run only the cases whose name contains one of these words, and "
                             "replace only their rows in docs/benchmarks.md")
    args = parser.parse_args()
    import tensorflow as tf
    import torch

    from converters.api import convert, load_source

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    torch.set_num_threads(1)
    info = machine()
    single = 100 if args.quick else 200
    results = []
    for name, build, formats, precisions in cases(args.quick):
        if args.only and not any(word.lower() in name.lower() for word in args.only):
            continue
        model, sample, labels = build()
        print(f"== {name}", flush=True)
        rows: Any
        if hasattr(sample, "columns"):  # a mixed-type table: the model's own predict_proba
            import pandas as pd

            rows = pd.concat([sample] * (args.rows // len(sample) + 1)).iloc[:args.rows]
            source_latency = latency(model.predict_proba, rows, single)
        else:
            source, flat = load_source(model, sample, labels=labels)
            rows = np.resize(flat, (args.rows, flat.shape[1]))
            source_latency = latency(source.predict, rows, single)
        entry: dict[str, Any] = {"case": name, "source": source_latency, "artifacts": []}
        for outcome in convert(model, sample, name="bench", formats=formats,
                               precisions=precisions, labels=labels):
            row: dict[str, Any] = {"format": outcome.format, "precision": outcome.precision,
                                   "convert_s": round(outcome.seconds, 2)}
            if outcome.result is None:
                row["error"] = str(outcome.error)[:200]
                print(f"   {outcome.format} {outcome.precision}: FAILED {row['error']}")
            else:
                result = outcome.result
                predict = artifact_predict(outcome.format, result.artifact, result.manifest)
                row["convert_s"] = result.report["seconds"]  # the tool's run + verification
                row.update(bytes=len(result.artifact),
                           max_abs_diff=result.manifest.parity["max_abs_diff"],
                           accuracy=result.manifest.parity.get("artifact_accuracy"),
                           **latency(predict, rows if hasattr(rows, "columns")
                                     else rows.astype(np.float32), single))
                print(f"   {outcome.format} {outcome.precision}: {row['bytes']} B, "
                      f"{row['single_row_us']:.1f} µs/row, {row['batch_ms']:.2f} ms/batch")
            entry["artifacts"].append(row)
        results.append(entry)
    info["load_average_1m_at_end"] = round(load_average(), 2)
    write_result("convert" if not args.only else "convert_only",
                 {"machine": info, "rows": args.rows, "quick": args.quick, "cases": results})
    table_rows = []
    for entry in results:
        src = entry["source"]
        table_rows.append([entry["case"], "source", "-", "-", "-",
                           f"{src['single_row_us']:.0f}", f"{src['batch_ms']:.2f}", "-"])
        for a in entry["artifacts"]:
            if "error" in a:
                table_rows.append(["", f"{a['format']} {a['precision']}", f"{a['convert_s']:.1f}",
                                   "-", "-", "-", "-", "refused: " + a["error"][:70]])
                continue
            table_rows.append([
                "", f"{a['format']} {a['precision']}", f"{a['convert_s']:.1f}",
                f"{a['bytes'] / 1024:.1f}", f"{a['max_abs_diff']:.1e}",
                f"{a['single_row_us']:.0f}", f"{a['batch_ms']:.2f}",
                f"{a['accuracy']:.3f}" if a.get("accuracy") is not None else "-"])
    if args.only:
        merged = merge_rows(table_rows)
        print(merged)
        return 0
    markdown = "\n".join([
        "## Conversion (`bench/bench_convert.py`)",
        "",
        f"Each model converted by `converters.api.convert` (every artifact passed its parity "
        f"check on the sample), then timed in one thread: single-row latency (median of "
        f"{single} calls) and a batch of {args.rows} rows (median of 5), source framework vs "
        f"ONNX (onnxruntime) vs TFLite (ai-edge-litert). Convert seconds: the tool's run plus "
        f"verification; onnx2tf and hummingbird start a side-environment Python per model, and "
        f"one onnx2tf run writes every TFLite precision of that model (listed on each). "
        f"Max |diff| is on probabilities (logits are compared after softmax) or values; "
        f"accuracy on the 8x8 digits sample.{' Quick run.' if args.quick else ''}",
        "",
        table(["model", "runtime", "convert s", "KiB", "max diff", "1 row µs",
               f"{args.rows} rows ms", "accuracy"], table_rows),
        "",
        f"Machine: {machine_line(info)}; load average {info['load_average_1m_at_start']} at "
        f"start, {info['load_average_1m_at_end']} at end (other work was running).",
    ])
    update_doc_section("convert", markdown)
    print(markdown)
    return 0


def merge_rows(new_rows: list[list[str]]) -> str:
    """The convert table of docs/benchmarks.md with the new cases' rows in place of their old
    ones (or appended), and a line naming the run they come from; returns the new section."""
    from bench.common import DOC

    text = DOC.read_text()
    start, end = "<!-- bench:convert:start -->", "<!-- bench:convert:end -->"
    section = text.split(start, 1)[1].split(end, 1)[0].strip("\n")
    lines = section.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("| model |"))
    last = first + 2
    while last < len(lines) and lines[last].startswith("|"):
        last += 1
    groups: list[list[str]] = []
    for line in lines[first + 2:last]:
        if not line.startswith("|  |") or not groups:
            groups.append([line])
        else:
            groups[-1].append(line)
    rendered = table(["x"] * len(new_rows[0]), new_rows).splitlines()[2:]
    added: list[list[str]] = []
    for line in rendered:
        if not line.startswith("|  |") or not added:
            added.append([line])
        else:
            added[-1].append(line)
    names = {group[0].split("|")[1].strip(): group for group in added}
    kept = [g for g in groups if g[0].split("|")[1].strip() not in names]
    body = [line for group in kept + added for line in group]
    note = (f"Rows {', '.join(names)}: measured later with `--only` on the same machine "
            f"(load average {load_average():.1f}; other work was running). A mixed-table "
            f"artifact's latency includes laying a pandas DataFrame out as its named inputs on "
            f"every call; the boosting libraries' own predict uses their thread pools, which "
            f"the load slows most.")
    notes = [line for line in lines[last:] if not line.startswith("Rows ")]
    markdown = "\n".join(lines[:first + 2] + body + notes + ["", note])
    update_doc_section("convert", markdown)
    return markdown


if __name__ == "__main__":
    sys.exit(main())
