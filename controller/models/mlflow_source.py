"""Models from MLflow: ``models:/NAME/VERSION``, ``models:/NAME@ALIAS`` and ``runs:/RUN_ID/PATH``
resolved through the MLflow client against the user's tracking and registry URIs.

The model's MLflow flavour decides how it is loaded and so which converter route takes it
(scikit-learn, XGBoost, LightGBM, CatBoost, Keras, TensorFlow, PyTorch; ONNX passes through as a
file). Without a sample from the user, the model's saved input example, or else rows drawn to
its signature, become the sample (parity, smoke tests, reference profile). The lineage (tracking
URI, run, experiment, registered name and version, alias, flavour, the run's metrics) goes into
the manifest's ``source.mlflow`` and shows in ``edgewise models show`` and the dashboard.

MLflow is an optional dependency (``pip install 'edgewise[mlflow]'``, mlflow-skinny); every
failure is a :class:`MlflowSourceError` with one line saying what to change.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# flavour -> the mlflow module that loads it, in the order a model with several is taken
FLAVOURS: dict[str, str | None] = {
    "sklearn": "mlflow.sklearn", "xgboost": "mlflow.xgboost", "lightgbm": "mlflow.lightgbm",
    "catboost": "mlflow.catboost", "keras": "mlflow.keras", "tensorflow": "mlflow.tensorflow",
    "pytorch": "mlflow.pytorch", "onnx": None}
SYNTHETIC_ROWS = 200
MAX_METRICS = 50
_MODELS = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+|latest)|@(?P<alias>[\w-]+))?/?$")
_RUNS = re.compile(r"^runs:/(?P<run>[0-9a-zA-Z]+)/(?P<path>.+)$")


class MlflowSourceError(Exception):
    """The URI does not resolve, MLflow is missing, or the flavour has no converter."""


@dataclass(frozen=True)
class MlflowRef:
    uri: str
    scheme: str  # "models" or "runs"
    name: str | None = None  # registered model name, or the logged model's id
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None
    path: str | None = None

    @property
    def default_name(self) -> str:
        if self.scheme == "models" and self.name is not None:
            return self.name
        return (self.path or "model").rstrip("/").split("/")[-1]


def parse_uri(text: str) -> MlflowRef | None:
    """The MLflow reference ``text`` names; None when it is not an MLflow URI (a file path);
    MlflowSourceError for an MLflow URI that is malformed."""
    if not text.startswith(("models:", "runs:")):
        return None
    m = _MODELS.match(text)
    if m is not None:
        return MlflowRef(text, "models", m["name"], m["version"], m["alias"])
    r = _RUNS.match(text)
    if r is not None:
        return MlflowRef(text, "runs", run_id=r["run"], path=r["path"])
    raise MlflowSourceError(f"{text!r} is not an MLflow model URI: use models:/NAME/VERSION, "
                            "models:/NAME@ALIAS or runs:/RUN_ID/PATH")


@dataclass
class MlflowModel:
    model: Any  # the loaded model object, or the path of an .onnx file
    kind: str | None  # "onnx" for a file, None: converters detect it from the object
    flavour: str
    sample: Any | None  # rows from the input example or the signature; None: not derivable
    sample_origin: str  # "input example (N rows)", "signature (N synthetic rows)", ""
    feature_names: list[str] | None
    lineage: dict[str, Any] = field(default_factory=dict)


def _mlflow() -> Any:
    try:
        import mlflow
    except ImportError:
        raise MlflowSourceError("MLflow is not installed: pip install 'edgewise[mlflow]' "
                                "(mlflow-skinny) to push models from an MLflow registry") from None
    return mlflow


def _one_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def resolve(ref: MlflowRef, tracking_uri: str | None = None,
            registry_uri: str | None = None) -> MlflowModel:
    """Download and load the model ``ref`` names, with its sample and lineage."""
    # progress is Edgewise's own (stderr, --quiet); MLflow's bars would break the one-line errors
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow = _mlflow()
    from mlflow import MlflowClient
    from mlflow.models import Model

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
    where = tracking_uri or mlflow.get_tracking_uri()
    lineage: dict[str, Any] = {"uri": ref.uri, "tracking_uri": _redact(where)}
    try:
        if ref.scheme == "models" and ref.name is not None and (ref.version or ref.alias):
            if ref.alias is not None:
                mv = client.get_model_version_by_alias(ref.name, ref.alias)
                lineage["alias"] = ref.alias
            elif ref.version == "latest":
                found = client.search_model_versions(f"name='{ref.name}'")
                if not found:
                    raise MlflowSourceError(f"{ref.uri}: registered model {ref.name!r} has no "
                                            f"versions at {_redact(where)}")
                mv = max(found, key=lambda v: int(v.version))
            else:
                mv = client.get_model_version(ref.name, str(ref.version))
            lineage.update(registered_model=mv.name, registered_version=int(mv.version),
                           run_id=mv.run_id or None)
            uri = f"models:/{mv.name}/{mv.version}"
        else:
            uri = ref.uri
        if tracking_uri:
            mlflow.set_tracking_uri(tracking_uri)
        if registry_uri:
            mlflow.set_registry_uri(registry_uri)
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri,
                                                         tracking_uri=tracking_uri))
        if not (local / "MLmodel").is_file():
            raise MlflowSourceError(f"{ref.uri}: no MLmodel file there; point at the directory "
                                    "a model was logged to (e.g. runs:/RUN_ID/model)")
        mlmodel = Model.load(str(local))
    except MlflowSourceError:
        raise
    except Exception as exc:
        raise MlflowSourceError(f"{ref.uri} does not resolve at {_redact(where)}: "
                                f"{_one_line(exc)}") from None
    run_id = lineage.get("run_id") or mlmodel.run_id or ref.run_id
    lineage["run_id"] = run_id
    flavour = next((f for f in FLAVOURS if f in mlmodel.flavors), None)
    if flavour is None:
        offered = sorted(f for f in mlmodel.flavors if f != "python_function")
        raise MlflowSourceError(
            f"{ref.uri}: flavour {', '.join(offered) or 'python_function only'} has no Edgewise "
            f"converter; supported flavours: {', '.join(FLAVOURS)}")
    lineage["flavour"] = flavour
    lineage.update(_run_lineage(client, run_id))
    model, kind = _load(flavour, local)
    sample, origin, names = _sample(mlmodel, local)
    return MlflowModel(model, kind, flavour, sample, origin, names, lineage)


def _load(flavour: str, local: Path) -> tuple[Any, str | None]:
    module_name = FLAVOURS[flavour]
    if module_name is None:  # onnx: the file itself
        files = sorted(local.rglob("*.onnx"))
        if not files:
            raise MlflowSourceError(f"the onnx flavour at {local} holds no .onnx file")
        return files[0], "onnx"
    import importlib

    try:
        module = importlib.import_module(module_name)
        return module.load_model(str(local)), None
    except ImportError as exc:
        raise MlflowSourceError(f"loading a {flavour} model needs {exc.name or 'its library'} "
                                "installed here") from None
    except Exception as exc:
        raise MlflowSourceError(f"the {flavour} model at {local} does not load: "
                                f"{_one_line(exc)}") from None


def _run_lineage(client: Any, run_id: str | None) -> dict[str, Any]:
    if not run_id:
        return {}
    try:
        run = client.get_run(run_id)
    except Exception:
        return {}  # lineage is informative: a run that cannot be read is left out
    metrics = dict(sorted(run.data.metrics.items())[:MAX_METRICS])
    return {"experiment_id": run.info.experiment_id, "run_name": run.info.run_name,
            "metrics": {k: float(v) for k, v in metrics.items()}}


def _sample(mlmodel: Any, local: Path) -> tuple[Any | None, str, list[str] | None]:
    """Rows to check the conversion on: the input example, else rows drawn to the signature."""
    names = None
    signature = mlmodel.signature
    if signature is not None and signature.inputs is not None and signature.inputs.has_input_names():
        names = list(signature.inputs.input_names())
    try:
        example = mlmodel.load_input_example(str(local))
    except Exception:
        example = None
    if example is not None:
        rows = len(example) if hasattr(example, "__len__") else 0
        if rows:
            return example, f"input example ({rows} rows)", names
    if signature is None or signature.inputs is None:
        return None, "", names
    return _from_signature(signature.inputs), f"signature ({SYNTHETIC_ROWS} drawn rows)", names


def _from_signature(schema: Any) -> Any:
    """Rows drawn to a column or tensor signature: numbers standard normal (integers 0-9)."""
    import numpy as np

    rng = np.random.default_rng(0)
    if schema.is_tensor_spec():
        spec = schema.inputs[0]
        shape = [SYNTHETIC_ROWS, *[d if d and d > 0 else 1 for d in spec.shape[1:]]]
        return rng.standard_normal(shape).astype(spec.type)
    import pandas as pd

    columns: dict[str, Any] = {}
    for col in schema.inputs:
        kind = str(getattr(col.type, "name", col.type)).lower()
        if kind in ("double", "float"):
            columns[col.name] = rng.standard_normal(SYNTHETIC_ROWS)
        elif kind in ("long", "integer"):
            columns[col.name] = rng.integers(0, 10, SYNTHETIC_ROWS)
        elif kind == "boolean":
            columns[col.name] = rng.integers(0, 2, SYNTHETIC_ROWS).astype(bool)
        else:
            raise MlflowSourceError(f"the model's signature has a {kind} column {col.name!r} and "
                                    "no input example: give --sample with real rows")
    return pd.DataFrame(columns)


def _redact(uri: str) -> str:
    """A tracking URI without its password (``https://user:secret@host`` -> ``https://user@host``)."""
    return re.sub(r"//([^:/@]+):[^@/]+@", r"//\1@", uri)


def write_back(lineage: dict[str, Any], stored: dict[str, Any], manifest_dict: dict[str, Any],
               tracking_uri: str | None = None) -> str:
    """Record the Edgewise version on the MLflow run the model came from: tags
    ``edgewise.<model>.version``, ``...parity_max_abs_diff`` and ``...label_agreement``, and the
    conversion report (parity, verified runtimes, artifact hash) as a JSON artifact under
    ``edgewise/``. Returns what was written, for the progress line."""
    run_id = lineage.get("run_id")
    if not run_id:
        raise MlflowSourceError("the model has no MLflow run to write back to")
    _mlflow()
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    model, version = stored["model"], stored["version"]
    parity = manifest_dict.get("parity") or {}
    prefix = f"edgewise.{model}"
    try:
        client.set_tag(run_id, f"{prefix}.version", str(version))
        for key in ("max_abs_diff", "label_agreement", "artifact_accuracy"):
            if isinstance(parity.get(key), (int, float)):
                client.set_tag(run_id, f"{prefix}.parity_{key}", f"{parity[key]:.6g}")
        client.log_dict(run_id, {
            "model": model, "version": version, "sha256": stored.get("sha256"),
            "size": stored.get("size"), "format": manifest_dict.get("format"),
            "precision": manifest_dict.get("precision"), "parity": parity,
            "verified_runtimes": manifest_dict.get("verified_runtimes"),
            "opset": manifest_dict.get("opset")}, f"edgewise/{model}-v{version}.json")
    except Exception as exc:
        raise MlflowSourceError(f"writing back to MLflow run {run_id} failed: "
                                f"{_one_line(exc)}") from None
    return f"tags {prefix}.* and edgewise/{model}-v{version}.json on run {run_id}"
