"""The manifest fields the converters added: verified runtimes and TFLite ops, optional and
checked, so older manifests still load and bad values are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from converters import convert_one
from edgewise_wire.errors import SchemaError
from edgewise_wire.manifest import Manifest


@pytest.fixture(scope="module")
def manifest() -> Manifest:
    X, y = load_iris(return_X_y=True)
    return convert_one(LogisticRegression(max_iter=1000).fit(X, y), X, name="iris").manifest


def test_older_manifests_without_the_fields_still_load(manifest: Manifest) -> None:
    d = manifest.to_dict()
    assert d["verified_runtimes"][0].startswith("onnxruntime==") and d["tflite_ops"] == {}
    del d["verified_runtimes"], d["tflite_ops"]
    old = Manifest.from_dict(json.loads(json.dumps(d)))
    assert old.verified_runtimes == () and old.tflite_ops == {}


@pytest.mark.parametrize(("field", "value", "message"), [
    ("verified_runtimes", "onnxruntime", "must be a list"),
    ("verified_runtimes", [1], "short strings"),
    ("verified_runtimes", ["x" * 200], "short strings"),
    ("tflite_ops", {"FULLY_CONNECTED": "12"}, "version numbers"),
    ("tflite_ops", {"FULLY_CONNECTED": True}, "version numbers"),
    ("tflite_ops", [1], "must be an object"),
])
def test_bad_values_are_refused(manifest: Manifest, field: str, value: object,
                                message: str) -> None:
    d = manifest.to_dict()
    d[field] = value
    with pytest.raises(SchemaError, match=message):
        Manifest.from_dict(d)


def test_parity_figures_record_the_precision_rule(manifest: Manifest) -> None:
    assert manifest.parity["tolerance"] == 1e-4 and "min_label_agreement" not in manifest.parity
    assert np.isfinite(manifest.parity["max_abs_diff"])
