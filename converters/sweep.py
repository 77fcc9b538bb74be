"""Sweep scikit-learn's estimator registry through the converter and tabulate what happens.

Every classifier and regressor ``sklearn.utils.all_estimators`` lists is built with its
defaults (a meta-estimator around LogisticRegression or Ridge), fitted on a small bundled
dataset (iris or diabetes, no download), converted to ONNX float32 with every route
(converters.routes) and marked:

- **converted**: an artifact passed the parity check (route and max |diff| given);
- **refused**: Edgewise declined with a reason (no converter, not fittable on plain rows, ...);
- **failed**: a converter made an artifact that disagreed with the model, or crashed.

``python -m converters.sweep --write docs/converters.md`` rewrites the table between the
markers in that file; ``--check docs/converters.md`` exits 1 when the table lists other
estimators, or another scikit-learn release, than the one installed (the cheap check CI runs).
"""

from __future__ import annotations

import argparse
import inspect
import logging
import re
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

START = "<!-- sweep:start -->"
END = "<!-- sweep:end -->"
KINDS = ("classifier", "regressor")


@dataclass(frozen=True)
class Row:
    name: str
    kind: str
    status: str  # "converted" | "refused" | "failed"
    detail: str


def registry() -> list[tuple[str, str, type]]:
    """(name, kind, class) of every classifier and regressor of the installed scikit-learn."""
    from sklearn.utils import all_estimators

    out = []
    for kind in KINDS:
        for name, cls in all_estimators(type_filter=kind):
            out.append((name, kind, cls))
    return sorted(out, key=lambda item: (item[1], item[0]))


def build(cls: type, kind: str) -> Any:
    """The estimator with its defaults; meta-estimators wrap LogisticRegression or Ridge."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    base = LogisticRegression(max_iter=1000) if kind == "classifier" else Ridge()
    other = DecisionTreeClassifier(max_depth=3) if kind == "classifier" else \
        DecisionTreeRegressor(max_depth=3)
    kwargs: dict[str, Any] = {}
    for name, param in inspect.signature(cls).parameters.items():
        if param.default is not inspect.Parameter.empty or \
                param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        if name in ("estimator", "base_estimator", "regressor", "classifier"):
            kwargs[name] = base
    for name in ("estimator", "base_estimator"):  # a default of None that fit() then refuses
        parameter = inspect.signature(cls).parameters.get(name)
        if parameter is not None and parameter.default is None and name not in kwargs:
            kwargs[name] = base
        elif name == "estimators":
            kwargs[name] = [("linear", base), ("tree", other)]
    return cls(**kwargs)


def data(kind: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_diabetes, load_iris

    if kind == "classifier":
        X, y = load_iris(return_X_y=True)
        return X, y
    X, y = load_diabetes(return_X_y=True)
    return X[:200], y[:200]


def sweep_one(name: str, kind: str, cls: type) -> Row:
    from converters.api import convert
    from converters.errors import ParityError, UnsupportedModelError

    X, y = data(kind)
    try:
        model = _fit(cls, kind, X, y)
    except Exception as first:
        if kind != "classifier":
            return Row(name, kind, "refused", f"not fittable on rows with one target "
                                              f"({_reason(first)})")
        X, y = X[y < 2], y[y < 2]  # some classifiers are binary only
        try:
            model = _fit(cls, kind, X, y)
        except Exception as exc:
            return Row(name, kind, "refused", f"not fittable on rows with one target "
                                              f"({_reason(exc)})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (outcome,) = convert(model, X, name="sweep", labels=y)
    except UnsupportedModelError as exc:
        return Row(name, kind, "refused", _reason(exc))
    except Exception as exc:
        return Row(name, kind, "failed", _reason(exc))
    if outcome.result is not None:
        report = outcome.result.report
        diff = outcome.result.manifest.parity["max_abs_diff"]
        return Row(name, kind, "converted", f"{report.get('route', 'skl2onnx')}, max diff "
                                            f"{_magnitude(diff)}")
    error = outcome.error
    if isinstance(error, ParityError):
        return Row(name, kind, "failed", f"parity: max diff {_magnitude(error.max_abs_diff)}, "
                                         f"labels agree {error.label_agreement:.0%}")
    if isinstance(error, UnsupportedModelError):
        return Row(name, kind, "refused", _reason(error))
    return Row(name, kind, "failed", _reason(error))


def _fit(cls: type, kind: str, X: np.ndarray, y: np.ndarray) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build(cls, kind).fit(X, y)


def _magnitude(value: float) -> str:
    """A difference as its order of magnitude, so reruns give the same table."""
    if value == 0:
        return "0"
    if not np.isfinite(value):
        return "inf"
    return f"< 1e{int(np.floor(np.log10(value))) + 1}"


def _reason(exc: BaseException | None) -> str:
    """The first route's reason (the others are named after it), on one short line."""
    attempts = getattr(exc, "attempts", None) or []
    failed = [a for a in attempts if not a.get("ok")]
    if len(failed) > 1:
        text = f"{failed[0]['error']}; also tried: " + ", ".join(a["route"] for a in failed[1:])
    else:
        text = getattr(exc, "reason", "") or str(exc)
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"0x[0-9a-f]+", "0x…", text)  # object addresses differ between runs
    text = text.replace("|", "/")
    return text if len(text) <= 160 else text[:157] + "..."


def versions() -> str:
    import onnx
    import onnxruntime
    import skl2onnx
    import sklearn

    return (f"scikit-learn {sklearn.__version__}, skl2onnx {skl2onnx.__version__}, "
            f"onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}")


def table(rows: Sequence[Row]) -> str:
    counts = {s: sum(r.status == s for r in rows) for s in ("converted", "refused", "failed")}
    lines = [START,
             f"Generated by `python -m converters.sweep --write docs/converters.md` with "
             f"{versions()} (side environments as installed). {counts['converted']} converted, "
             f"{counts['refused']} refused, {counts['failed']} failed.",
             "",
             "| estimator | kind | result | detail |",
             "|---|---|---|---|"]
    lines += [f"| {r.name} | {r.kind} | {r.status} | {r.detail} |" for r in rows]
    lines.append(END)
    return "\n".join(lines)


def listed(doc: str) -> tuple[str, list[tuple[str, str]]]:
    """(the version line, [(estimator, kind)]) of the table in ``doc``."""
    if START not in doc or END not in doc:
        raise ValueError(f"no table between {START} and {END}")
    body = doc.split(START, 1)[1].split(END, 1)[0]
    header = body.strip().splitlines()[0]
    pairs = re.findall(r"^\| (\w+) \| (classifier|regressor) \|", body, flags=re.M)
    return header, pairs


def parse_rows(doc: str) -> list[Row]:
    """The rows of the table in ``doc``."""
    body = doc.split(START, 1)[1].split(END, 1)[0]
    return [Row(*(cell.strip() for cell in match))
            for match in re.findall(r"^\| (\w+) \| (classifier|regressor) \| (\w+) \| (.*) \|$",
                                    body, flags=re.M)]


def check(doc: str) -> list[str]:
    """What is stale in the table of ``doc`` (empty when it matches the installed release)."""
    import sklearn

    header, pairs = listed(doc)
    problems = []
    if f"scikit-learn {sklearn.__version__}," not in header:
        problems.append(f"the table was made with another scikit-learn ({header[:120]}); "
                        f"installed: {sklearn.__version__}")
    wanted = [(name, kind) for name, kind, _ in registry()]
    if pairs != wanted:
        missing = sorted(set(wanted) - set(pairs))
        extra = sorted(set(pairs) - set(wanted))
        problems.append(f"the table's estimators differ from the registry: missing {missing}, "
                        f"not in this release {extra}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m converters.sweep",
        description="Convert every scikit-learn classifier and regressor and tabulate the "
                    "outcome (converted with parity, refused with the reason, or failed).",
        epilog="Example: python -m converters.sweep --write docs/converters.md")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", type=Path, metavar="DOC",
                       help="replace the table between the sweep markers in DOC")
    group.add_argument("--check", type=Path, metavar="DOC",
                       help="exit 1 when DOC's table is stale (other estimators or release)")
    parser.add_argument("--only", nargs="*", metavar="NAME",
                        help="sweep these estimators only (with --write: replace their rows)")
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.check.read_text())
        for problem in problems:
            print(f"stale: {problem}; run: python -m converters.sweep --write {args.check}",
                  file=sys.stderr)
        return 1 if problems else 0
    logging.disable(logging.WARNING)
    rows = []
    for name, kind, cls in registry():
        if args.only and name not in args.only:
            continue
        started = time.perf_counter()
        row = sweep_one(name, kind, cls)
        print(f"{name:40} {kind:10} {row.status:9} {time.perf_counter() - started:5.1f}s  "
              f"{row.detail}", file=sys.stderr)
        rows.append(row)
    if args.write and args.only:  # replace just these rows of the existing table
        old = {(r.name, r.kind): r for r in parse_rows(args.write.read_text())}
        old.update({(r.name, r.kind): r for r in rows})
        rows = sorted(old.values(), key=lambda r: (r.kind, r.name))
    text = table(rows)
    if args.write:
        doc = args.write.read_text()
        if START in doc and END in doc:
            doc = doc.split(START, 1)[0] + text + doc.split(END, 1)[1]
        else:
            doc = doc.rstrip("\n") + "\n\n" + text + "\n"
        args.write.write_text(doc)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
