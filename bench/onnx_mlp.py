"""ONNX network graphs of a chosen size, made into Edgewise artifacts by the project's converter.

The update benchmark needs valid models of about 1, 10 and 50 MiB, several distinct ones per size
(a device never downloads an artifact it already holds). Training a scikit-learn MLP that large
takes minutes, so the graph is built directly with ``onnx.helper``: a float32 MLP (64 inputs, two
ReLU hidden layers, 10 logits) whose MatMul initializers carry the bytes, with He-initialised
weights from a seeded generator. It then goes through ``converters.convert_one(kind="onnx")``,
the path for ONNX files in docs/converters.md: flat ``input``, ``label`` head, parity checked in
onnxruntime on the 8x8 digits sample, smoke tests, reference profile and per-chunk hashes in the
manifest. Cached in bench/.cache by size and seed.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import CACHE_DIR, MIB, SizedModel, _mlp_layers
from edgewise_wire import Manifest

N_FEATURES = 64
N_CLASSES = 10


def mlp_graph_bytes(target_bytes: int, seed: int) -> tuple[bytes, tuple[int, int]]:
    """Serialized ONNX MLP 64 -> h1 -> h2 -> 10 whose weights come to about ``target_bytes``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    h1, h2 = _mlp_layers(target_bytes, N_FEATURES, N_CLASSES)
    rng = np.random.default_rng(seed)
    nodes: list[Any] = []
    inits: list[Any] = []
    prev, width = "x", N_FEATURES
    for i, out in enumerate((h1, h2, N_CLASSES)):
        # He initialisation keeps activations of the random network in a sane range
        w = (rng.standard_normal((width, out), dtype=np.float32)
             * np.float32(np.sqrt(2.0 / width)))
        b = np.zeros(out, np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"mm{i}"]),
                  helper.make_node("Add", [f"mm{i}", f"b{i}"], [f"z{i}"])]
        prev = f"z{i}"
        if out != N_CLASSES:
            nodes.append(helper.make_node("Relu", [prev], [f"a{i}"]))
            prev = f"a{i}"
        width = out
    nodes.append(helper.make_node("Identity", [prev], ["logits"]))
    graph = helper.make_graph(
        nodes, "bench_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", N_FEATURES])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", N_CLASSES])],
        initializer=inits)
    model = helper.make_model(graph, producer_name="edgewise-bench",
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9  # what onnxruntime 1.16+ reads; onnx's default may be newer
    onnx.checker.check_model(model)
    return model.SerializeToString(), (h1, h2)


def onnx_mlp_model(target_mb: float, seed: int = 0, name: str | None = None,
                   cache_dir: Path = CACHE_DIR) -> SizedModel:
    """A converted ONNX MLP of about ``target_mb`` MiB; distinct seeds give distinct artifacts."""
    from converters import convert_one
    from simulator.workload import load_dataset

    name = name or f"onnx-mlp-{target_mb:g}mb"
    h1, h2 = _mlp_layers(int(target_mb * MIB), N_FEATURES, N_CLASSES)
    stem = cache_dir / f"{name}-{h1}x{h2}-s{seed}"
    description = (f"ONNX MLP 64-{h1}-{h2}-10 (float32, random He weights) built with "
                   f"onnx.helper, converted by converters.convert_one(kind='onnx')")
    onnx_path, json_path = stem.with_suffix(".onnx"), stem.with_suffix(".json")
    if onnx_path.exists() and json_path.exists():
        with contextlib.suppress(Exception):
            manifest = Manifest.from_dict(json.loads(json_path.read_text()))
            artifact = onnx_path.read_bytes()
            if manifest.artifact.size == len(artifact) and manifest.model == name:
                return SizedModel(manifest, artifact, description)
    data, _ = mlp_graph_bytes(int(target_mb * MIB), seed)
    digits = load_dataset("digits")
    result = convert_one(data, digits.features[:200], name=name, kind="onnx",
                         feature_names=digits.feature_names)
    cache_dir.mkdir(parents=True, exist_ok=True)
    onnx_path.write_bytes(result.artifact)
    json_path.write_text(json.dumps(result.manifest.to_dict()))
    return SizedModel(result.manifest, result.artifact, description)
