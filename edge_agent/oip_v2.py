"""Open Inference Protocol v2 (KServe v2, as Triton, MLServer and OpenVINO Model Server speak it)
mapped onto the agent's model: pure request and response translation, no I/O.

The local API (edge_agent/local_api.py) routes ``/v2/...`` here. A standard v2 client
(``tritonclient.http``, KServe's ``InferenceRESTClient``) then talks to a device unchanged:

    GET  /v2/health/live | /v2/health/ready
    GET  /v2                                            server metadata
    GET  /v2/models/{name}[/versions/{v}]               model metadata (from the manifest)
    GET  /v2/models/{name}[/versions/{v}]/ready
    POST /v2/models/{name}[/versions/{v}]/infer         tensors in, tensors out

Only the active model is served, under its name and its registry version. A model taking one
float matrix has one input tensor ``[rows, features]``; a model with an input schema (named,
typed fields) has one ``[rows, 1]`` tensor per field (``BYTES`` for strings; a nullable
number field's missing values are JSON ``null`` or NaN in binary data). The outputs are the
label tensor (``[rows]``) and, for classifiers with probabilities, the score tensor
(``[rows, classes]``). Tensor data may be JSON (flat or nested, row-major) or the binary tensor
extension (``binary_data_size`` per input, ``binary_data`` per output or ``binary_data_output``
for all), which tritonclient uses by default. The ids of the predictions (for ``/v1/feedback``)
come back in the response's ``parameters.prediction_ids``, comma-separated.

Errors are ``{"error": "..."}`` with 400 (the request does not fit the model: shape, datatype,
names, malformed body), 404 (another model or version) and 503 (no active model yet).
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgewise_wire.manifest import Manifest, TensorSpec

PROTOCOL = "v2"
SERVER_NAME = "edgewise-agent"

# manifest element types (numpy names) and v2 datatypes
_DATATYPES = {"float32": "FP32", "float64": "FP64", "float16": "FP16", "int64": "INT64",
              "int32": "INT32", "int16": "INT16", "int8": "INT8", "uint8": "UINT8",
              "bool": "BOOL", "string": "BYTES", "str": "BYTES", "object": "BYTES"}
_NUMPY = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16, "INT64": np.int64,
          "INT32": np.int32, "INT16": np.int16, "INT8": np.int8, "UINT8": np.uint8,
          "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64, "BOOL": np.bool_}
_NUMBER_TYPES = {"FP32", "FP64", "FP16", "INT64", "INT32", "INT16", "INT8", "UINT8", "UINT16",
                 "UINT32", "UINT64"}
_PLATFORMS = {"onnx": "onnxruntime_onnx", "tflite": "tensorflow_lite"}
MAX_BATCH_ROWS = 100_000


class V2Error(Exception):
    """A request the protocol answers with an error body; ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Route:
    """A parsed ``/v2`` path: ``kind`` is live, ready, server, model, model_ready or infer."""

    kind: str
    model: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class InferRequest:
    """What the agent is asked to predict, and how the answer must be shaped."""

    features: Any  # rows of numbers, or columns of named fields
    rows: int
    request_id: str | None
    outputs: tuple[str, ...] | None  # None: every output
    binary_outputs: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class V2Response:
    """The response body: JSON, then the binary tensor data when there is any."""

    body: bytes
    header_length: int | None  # JSON part's length when binary data follows, else None


def datatype(dtype: str) -> str:
    return _DATATYPES.get(dtype, dtype.upper())


def route(method: str, path: str) -> Route:
    """The v2 endpoint ``path`` names; V2Error 404/405 when none does."""
    parts = [p for p in path.split("/") if p]
    if not parts or parts[0] != PROTOCOL:
        raise V2Error(404, f"no endpoint {path}")
    rest = parts[1:]
    want = "GET"
    found: Route | None = None
    if not rest:
        found = Route("server")
    elif rest == ["health", "live"]:
        found = Route("live")
    elif rest == ["health", "ready"]:
        found = Route("ready")
    elif rest[0] == "models" and len(rest) >= 2:
        name, tail = rest[1], rest[2:]
        version = None
        if len(tail) >= 2 and tail[0] == "versions":
            version, tail = tail[1], tail[2:]
        if tail == []:
            found = Route("model", name, version)
        elif tail == ["ready"]:
            found = Route("model_ready", name, version)
        elif tail == ["infer"]:
            found, want = Route("infer", name, version), "POST"
    if found is None:
        raise V2Error(404, f"no endpoint {path}; see /v2/health/ready, /v2/models/NAME, "
                           "/v2/models/NAME/infer")
    if method != want:
        raise V2Error(405, f"use {want} on {path}")
    return found


def check_model(r: Route, manifest: Manifest | None) -> Manifest:
    """The active manifest when ``r`` names it; V2Error 503 or 404 otherwise."""
    if manifest is None:
        raise V2Error(503, "no active model yet; try again once the controller has rolled a "
                           "model out")
    if r.model != manifest.model:
        raise V2Error(404, f"model {r.model!r} is not served here; the active model is "
                           f"{manifest.model!r}")
    if r.version is not None and r.version != str(manifest.version):
        raise V2Error(404, f"version {r.version} of {manifest.model!r} is not served here; "
                           f"the active version is {manifest.version}")
    return manifest


def server_metadata(agent_version: str) -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": agent_version, "extensions": ["binary_tensor_data"]}


def _shape(spec: TensorSpec) -> list[int]:
    return [-1 if d is None else int(d) for d in spec.shape]


def input_specs(manifest: Manifest) -> list[dict[str, Any]]:
    """The input tensors a client sends, as the model metadata lists them."""
    if manifest.input_schema is not None:
        return [{"name": f.name, "datatype": datatype(f.dtype), "shape": [-1, 1]}
                for f in manifest.input_schema.fields]
    return [{"name": t.name, "datatype": datatype(t.dtype), "shape": _shape(t)}
            for t in manifest.inputs]


def _output_spec(manifest: Manifest, name: str) -> TensorSpec | None:
    return next((t for t in manifest.outputs if t.name == name), None)


def output_specs(manifest: Manifest) -> list[dict[str, Any]]:
    specs = []
    label = _output_spec(manifest, manifest.label_output)
    if manifest.class_labels is not None and any(isinstance(c, str) for c in manifest.class_labels):
        label_type = "BYTES"
    else:
        label_type = datatype(label.dtype) if label is not None else "FP32"
    specs.append({"name": manifest.label_output, "datatype": label_type, "shape": [-1]})
    if manifest.score_output is not None:
        n = len(manifest.class_labels) if manifest.class_labels is not None else -1
        specs.append({"name": manifest.score_output, "datatype": "FP32", "shape": [-1, n]})
    return specs


def model_metadata(manifest: Manifest) -> dict[str, Any]:
    return {"name": manifest.model, "versions": [str(manifest.version)],
            "platform": _PLATFORMS.get(manifest.format, manifest.format),
            "inputs": input_specs(manifest), "outputs": output_specs(manifest)}


# -- infer --------------------------------------------------------------------------------------


def split_body(raw: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    """The JSON header of an infer request and the binary data after it."""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise V2Error(400, "Inference-Header-Content-Length is not a number") from None
        if not 0 < n <= len(raw):
            raise V2Error(400, f"Inference-Header-Content-Length {n} is outside the body of "
                               f"{len(raw)} bytes")
        head, tail = raw[:n], raw[n:]
    else:
        head, tail = raw, b""
    try:
        body = json.loads(head)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise V2Error(400, f"inference request is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise V2Error(400, "inference request must be a JSON object")
    return body, tail


def _flatten(data: Any, ctx: str) -> list[Any]:
    out: list[Any] = []
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            out.append(item)
    if len(out) > MAX_BATCH_ROWS * 1000:
        raise V2Error(400, f"{ctx}: too many elements")
    return out


def _decode_bytes(blob: bytes, count: int, ctx: str) -> list[str]:
    """BYTES elements in the binary extension: each a 4-byte little-endian length, then bytes."""
    values, pos = [], 0
    for _ in range(count):
        if pos + 4 > len(blob):
            raise V2Error(400, f"{ctx}: binary BYTES data ends early")
        (n,) = struct.unpack_from("<I", blob, pos)
        pos += 4
        if pos + n > len(blob):
            raise V2Error(400, f"{ctx}: binary BYTES data ends early")
        try:
            values.append(blob[pos:pos + n].decode())
        except UnicodeDecodeError:
            raise V2Error(400, f"{ctx}: BYTES element is not UTF-8 text") from None
        pos += n
    if pos != len(blob):
        raise V2Error(400, f"{ctx}: binary BYTES data holds more than {count} elements")
    return values


def _tensor_values(tensor: dict[str, Any], expected_type: str, tail: bytes, offset: int,
                   ctx: str, nullable: bool = False) -> tuple[list[Any], list[int], int]:
    """The flat values, the shape and the next offset into the binary data of one input."""
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not shape or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise V2Error(400, f"{ctx}: shape must be a list of non-negative integers")
    given = tensor.get("datatype")
    if given != expected_type:
        raise V2Error(400, f"{ctx}: datatype {given!r} does not match the model's "
                           f"{expected_type}")
    count = math.prod(shape)
    params = tensor.get("parameters") or {}
    if not isinstance(params, dict):
        raise V2Error(400, f"{ctx}: parameters must be an object")
    size = params.get("binary_data_size")
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0 \
                or offset + size > len(tail):
            raise V2Error(400, f"{ctx}: binary_data_size {size!r} is outside the binary data "
                               f"of {len(tail)} bytes")
        blob = tail[offset:offset + size]
        offset += size
        if expected_type == "BYTES":
            values: list[Any] = _decode_bytes(blob, count, ctx)
        else:
            np_type = _NUMPY[expected_type]
            if size != count * np.dtype(np_type).itemsize:
                raise V2Error(400, f"{ctx}: {size} bytes of binary data for shape {shape} of "
                                   f"{expected_type}")
            values = np.frombuffer(blob, dtype=np_type).tolist()
            if nullable:  # a nullable field's missing values travel as NaN in binary data
                values = [None if isinstance(v, float) and math.isnan(v) else v for v in values]
    else:
        if "data" not in tensor:
            raise V2Error(400, f"{ctx}: no data (and no binary_data_size)")
        values = _flatten(tensor["data"], ctx)
        if len(values) != count:
            raise V2Error(400, f"{ctx}: {len(values)} values do not fill shape {shape} "
                               f"({count} elements)")
        for v in values:
            if v is None and nullable:
                continue
            if expected_type == "BYTES":
                ok = isinstance(v, str)
            elif expected_type == "BOOL":
                ok = isinstance(v, bool)
            else:
                ok = isinstance(v, (int, float)) and not isinstance(v, bool)
                if ok and expected_type.startswith(("INT", "UINT")):
                    ok = isinstance(v, int)
            if not ok:
                raise V2Error(400, f"{ctx}: value {v!r} is not {expected_type}")
    return values, shape, offset


def _check_shape(shape: list[int], want: list[int], ctx: str) -> int:
    """The number of rows in a tensor of ``shape`` where the model takes ``want``."""
    if len(shape) != len(want):
        raise V2Error(400, f"{ctx}: shape {shape} has {len(shape)} dimensions, the model "
                           f"takes {len(want)} ({want}, -1 for any)")
    for got, need in zip(shape, want, strict=True):
        if need != -1 and got != need:
            raise V2Error(400, f"{ctx}: shape {shape} does not match the model's {want}")
    rows = shape[0]
    if rows == 0:
        raise V2Error(400, f"{ctx}: no rows")
    if rows > MAX_BATCH_ROWS:
        raise V2Error(400, f"{ctx}: {rows} rows, more than {MAX_BATCH_ROWS}")
    return rows


def parse_infer(body: dict[str, Any], tail: bytes, manifest: Manifest) -> InferRequest:
    """An infer request checked against the model; V2Error 400 naming what does not fit."""
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs or not all(isinstance(t, dict) for t in inputs):
        raise V2Error(400, "inference request needs \"inputs\": a list of tensors")
    specs = {s["name"]: s for s in input_specs(manifest)}
    nullable = {f.name for f in manifest.input_schema.fields if f.nullable} \
        if manifest.input_schema is not None else set()
    names = [t.get("name") for t in inputs]
    if sorted(map(str, names)) != sorted(specs) or len(set(names)) != len(names):
        raise V2Error(400, f"inputs {names} do not match the model's inputs {sorted(specs)}")
    offset = 0
    columns: dict[str, list[Any]] = {}
    rows: int | None = None
    for tensor in inputs:
        name = str(tensor["name"])
        spec = specs[name]
        ctx = f"input {name!r}"
        values, shape, offset = _tensor_values(tensor, spec["datatype"], tail, offset, ctx,
                                               name in nullable)
        if manifest.input_schema is not None and len(shape) == 1:
            shape = [shape[0], 1]
        n = _check_shape(shape, spec["shape"], ctx)
        if rows is not None and n != rows:
            raise V2Error(400, f"{ctx}: {n} rows where the other inputs have {rows}")
        rows = n
        columns[name] = values
    if offset != len(tail):
        raise V2Error(400, f"{len(tail) - offset} bytes of binary data belong to no input")
    assert rows is not None
    if manifest.input_schema is not None:
        features: Any = columns
    else:
        [values] = columns.values()
        width = len(values) // rows
        features = [values[i * width:(i + 1) * width] for i in range(rows)]
    outputs, binary = _requested_outputs(body, manifest)
    request_id = body.get("id")
    return InferRequest(features, rows, request_id if isinstance(request_id, str) else None,
                        outputs, binary)


def _requested_outputs(body: dict[str, Any],
                       manifest: Manifest) -> tuple[tuple[str, ...] | None, frozenset[str]]:
    known = [s["name"] for s in output_specs(manifest)]
    params = body.get("parameters") or {}
    all_binary = isinstance(params, dict) and params.get("binary_data_output") is True
    wanted = body.get("outputs")
    if wanted is None:
        return None, frozenset(known if all_binary else ())
    if not isinstance(wanted, list) or not all(isinstance(o, dict) for o in wanted):
        raise V2Error(400, "\"outputs\" must be a list of objects with a \"name\"")
    names, binary = [], set()
    for o in wanted:
        name = o.get("name")
        if name not in known:
            raise V2Error(400, f"output {name!r} is not one of the model's outputs {known}")
        names.append(name)
        p = o.get("parameters") or {}
        if all_binary or (isinstance(p, dict) and p.get("binary_data") is True):
            binary.add(name)
    return tuple(names), frozenset(binary)


def _encode(values: list[Any], dtype: str) -> bytes:
    if dtype == "BYTES":
        out = bytearray()
        for v in values:
            b = str(v).encode()
            out += struct.pack("<I", len(b)) + b
        return bytes(out)
    return np.asarray(values, dtype=_NUMPY[dtype]).tobytes()


def infer_response(request: InferRequest, manifest: Manifest, labels: list[Any],
                   scores: list[list[float]] | None, prediction_ids: list[str]) -> V2Response:
    """The v2 response to ``request`` from what the agent predicted."""
    specs = {s["name"]: s for s in output_specs(manifest)}
    tensors: dict[str, tuple[list[Any], list[int]]] = {}
    label_type = specs[manifest.label_output]["datatype"]
    if label_type != "BYTES" and any(isinstance(v, str) for v in labels):
        label_type = "BYTES"
    specs[manifest.label_output] = {**specs[manifest.label_output], "datatype": label_type}
    tensors[manifest.label_output] = (labels, [len(labels)])
    if manifest.score_output is not None and scores is not None:
        width = len(scores[0]) if scores else 0
        tensors[manifest.score_output] = ([v for row in scores for v in row],
                                          [len(scores), width])
    names = request.outputs if request.outputs is not None else tuple(tensors)
    out_json, blobs = [], []
    for name in names:
        if name not in tensors:
            continue
        values, shape = tensors[name]
        dtype = specs[name]["datatype"]
        entry: dict[str, Any] = {"name": name, "datatype": dtype, "shape": shape}
        if name in request.binary_outputs:
            blob = _encode(values, dtype)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = values
        out_json.append(entry)
    response: dict[str, Any] = {"model_name": manifest.model,
                                "model_version": str(manifest.version),
                                "outputs": out_json,
                                "parameters": {"prediction_ids": ",".join(prediction_ids)}}
    if request.request_id is not None:
        response["id"] = request.request_id
    head = json.dumps(response, allow_nan=False).encode()
    if not blobs:
        return V2Response(head, None)
    return V2Response(head + b"".join(blobs), len(head))
