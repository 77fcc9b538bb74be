"""The columns of an export, as an Arrow schema.

Columns: ``device_id``, ``device.<key>`` for every label of the devices exported (operator
labels over the device's own), ``model``, ``version``, ``epoch`` and ``seq`` (the record's key
at the controller), ``prediction_id``, ``ts`` (when the device predicted, Unix seconds),
``received_at``, ``latency_ms``, ``prediction``, ``probability`` (the predicted class's, when
the model gives scores), ``label`` (the true label from feedback, when it came back), then one
column per input feature, named as in the manifest (``feature_names``, or the input schema's
fields). Inputs are known for predictions recorded columnar (agents with
``telemetry_columnar``, the default); for the others those columns are empty. A
``sample_share`` column follows ``label`` when the export samples or a record was sampled on its
device (its ``share``): a row stands for 1/sample_share predictions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgewise_wire import Manifest


@dataclass(frozen=True)
class ExportColumns:
    """An export's Arrow schema and what its columns are made of."""

    schema: Any  # pyarrow.Schema
    features: list[str]  # the input features, as the manifest names them
    feature_types: list[Any]  # float64 for a number, string for any other kind
    label_type: Any  # of ``prediction`` and ``label``: int64, float64 or string
    label_keys: list[str]  # the device labels, one ``device.<key>`` column each
    with_share: bool  # whether the ``sample_share`` column is there
    numeric_inputs: bool  # every input feature a float64 column


def export_columns(manifest: Manifest, label_keys: list[str], with_share: bool) -> ExportColumns:
    """The columns of an export of ``manifest``'s model, with a ``device.<key>`` column per
    device label in ``label_keys`` and the ``sample_share`` column when ``with_share``."""
    import pyarrow as pa  # the controller's [controller] extra; only exports need it

    schema = manifest.input_schema
    if schema is not None:
        features = list(schema.names)
        feature_types = [pa.float64() if f.kind == "number" else pa.string()
                         for f in schema.fields]
    else:
        features = list(manifest.feature_names)
        feature_types = [pa.float64()] * len(features)
    classes = manifest.class_labels
    if classes is None:
        label_type = pa.float64()
    elif all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        label_type = pa.int64()
    else:
        label_type = pa.string()
    fields = [("device_id", pa.string())]
    fields += [(f"device.{k}", pa.string()) for k in label_keys]
    fields += [("model", pa.string()), ("version", pa.int64()), ("epoch", pa.int64()),
               ("seq", pa.int64()), ("prediction_id", pa.string()), ("ts", pa.float64()),
               ("received_at", pa.float64()), ("latency_ms", pa.float64()),
               ("prediction", label_type), ("probability", pa.float64()),
               ("label", label_type)]
    if with_share:
        fields.append(("sample_share", pa.float64()))
    taken = {name for name, _ in fields}
    fields += [(f if f not in taken else f"input.{f}", t)
               for f, t in zip(features, feature_types, strict=True)]
    return ExportColumns(pa.schema(fields), features, feature_types, label_type, label_keys,
                         with_share, all(t == pa.float64() for t in feature_types))
