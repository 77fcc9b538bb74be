"""The model manifest: everything a device needs to verify, load, test and monitor an artifact.

The converter drafts it (schema, labels, parity, reference profile, smoke tests), the controller's
registry completes it (version number), and it travels to the agent inside the desired state.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from edgewise_wire.errors import SchemaError
from edgewise_wire.records import InputSchema
from edgewise_wire.validation import (
    SHA256_HEX,
    get_dict,
    get_float,
    get_free_form,
    get_int,
    get_list,
    get_sha256,
    get_str,
)

MANIFEST_SCHEMA = 1
DEFAULT_CHUNK_SIZE = 64 * 1024
MAX_ARTIFACT_SIZE = 512 * 1024 * 1024
MAX_URL_LENGTH = 2048

FORMATS = ("onnx", "tflite")
# What a manifest describes: a model (the default; model manifests carry no "kind" field, so
# every manifest signed before agent bundles existed keeps its exact form) or an agent bundle.
KIND_MODEL = "model"
KIND_AGENT = "agent"
KINDS = (KIND_MODEL, KIND_AGENT)
# agent versions are labels like "0.2.0" or "0.2.0+pi4": they name a launcher slot's version in
# its journal and in the device's reports, so no whitespace, slashes or control characters
AGENT_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$")
# device classes ("pi4", "camera-v2", "jetson-orin.arm64"): a device's is set at enrollment
# (agent.toml's device_class); a model version's names the one class it is built for
DEVICE_CLASS = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$")
TASKS = ("classification", "regression")

Scalar = int | float | str


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name, e.g. "float32"
    shape: tuple[int | None, ...]  # None for a free (batch) dimension

    @classmethod
    def from_dict(cls, d: Any, ctx: str) -> TensorSpec:
        if not isinstance(d, dict):
            raise SchemaError(f"{ctx} must be an object")
        shape = get_list(d, "shape", ctx, max_items=16)
        for dim in shape:
            if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 0):
                raise SchemaError(f"{ctx}.shape must hold non-negative integers or null")
        return cls(get_str(d, "name", ctx), get_str(d, "dtype", ctx), tuple(shape))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class ArtifactRef:
    """Content address of an artifact and the per-chunk hashes used to resume a transfer.

    ``url``: where else the same bytes can be fetched over HTTP(S) with range requests (an
    S3-compatible object store); optional, and no part of the address: two refs with the same
    hashes are equal wherever they may be fetched from. The chunk hashes verify what comes from
    the URL exactly as they verify MQTT chunks, so a wrong object there is refused chunk by chunk.
    Agents that do not know the field ignore it and download over MQTT.
    """

    sha256: str
    size: int
    chunk_size: int
    chunk_sha256: tuple[str, ...]
    url: str | None = field(default=None, compare=False)

    @property
    def chunk_count(self) -> int:
        return len(self.chunk_sha256)

    def chunk_length(self, index: int) -> int:
        if index == self.chunk_count - 1:
            return self.size - index * self.chunk_size
        return self.chunk_size

    @classmethod
    def describe(cls, data: bytes, chunk_size: int = DEFAULT_CHUNK_SIZE) -> ArtifactRef:
        chunks = tuple(
            hashlib.sha256(data[i : i + chunk_size]).hexdigest()
            for i in range(0, max(len(data), 1), chunk_size)
        )
        return cls(hashlib.sha256(data).hexdigest(), len(data), chunk_size, chunks)

    @classmethod
    def from_dict(cls, d: dict[str, Any], ctx: str) -> ArtifactRef:
        sha = get_sha256(d, "sha256", ctx)
        size = get_int(d, "size", ctx, minimum=1)
        chunk_size = get_int(d, "chunk_size", ctx, minimum=1024)
        hashes = get_list(d, "chunk_sha256", ctx)
        if size > MAX_ARTIFACT_SIZE:
            raise SchemaError(f"{ctx}.size {size} exceeds the limit of {MAX_ARTIFACT_SIZE} bytes")
        expected = (size + chunk_size - 1) // chunk_size
        if len(hashes) != expected:
            raise SchemaError(
                f"{ctx}.chunk_sha256 has {len(hashes)} entries, expected {expected} "
                f"for {size} bytes in chunks of {chunk_size}"
            )
        if not all(isinstance(h, str) and SHA256_HEX.fullmatch(h) for h in hashes):
            raise SchemaError(f"{ctx}.chunk_sha256 must hold 64-character hex digests")
        url = get_str(d, "url", ctx, optional=True, max_len=MAX_URL_LENGTH)
        if url is not None:
            check_artifact_url(url, f"{ctx}.url")
        return cls(sha, size, chunk_size, tuple(hashes), url)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "sha256": self.sha256,
            "size": self.size,
            "chunk_size": self.chunk_size,
            "chunk_sha256": list(self.chunk_sha256),
        }
        if self.url is not None:  # optional: refs without one keep their exact signed form
            d["url"] = self.url
        return d


def check_artifact_url(url: str, ctx: str = "artifact.url") -> str:
    """Return ``url`` if it is an absolute http(s) URL with a host and no whitespace or control
    characters (it goes into an HTTP request line as it is); raise SchemaError otherwise."""
    if len(url) > MAX_URL_LENGTH:
        raise SchemaError(f"{ctx} is longer than {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise SchemaError(f"{ctx} must not hold whitespace or control characters")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        raise SchemaError(f"{ctx} must be an http:// or https:// URL")
    host = rest.split("/", 1)[0].split("?", 1)[0].rpartition("@")[2]
    if not host or host.startswith(":"):
        raise SchemaError(f"{ctx} names no host")
    return url


@dataclass(frozen=True)
class SmokeTest:
    """A batch of inputs and the outputs the converted artifact gave for them."""

    inputs: list[list[float]]
    expected_labels: list[Scalar]
    expected_scores: list[list[float]] | None = None

    @classmethod
    def from_dict(cls, d: Any, ctx: str) -> SmokeTest:
        if not isinstance(d, dict):
            raise SchemaError(f"{ctx} must be an object")
        inputs = get_list(d, "inputs", ctx, max_items=1000)
        labels = get_list(d, "expected_labels", ctx, max_items=1000)
        scores = get_list(d, "expected_scores", ctx, optional=True, max_items=1000)
        if len(inputs) != len(labels) or (scores is not None and len(scores) != len(inputs)):
            raise SchemaError(f"{ctx}: inputs, expected_labels and expected_scores differ in length")
        return cls(inputs, labels, scores)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"inputs": self.inputs, "expected_labels": self.expected_labels}
        if self.expected_scores is not None:
            d["expected_scores"] = self.expected_scores
        return d


@dataclass(frozen=True)
class ProbationPolicy:
    """The health window a newly activated model serves under before the device commits it.

    For ``duration_s`` after the switch the agent counts predictions, inference errors and
    latencies of the new model. It rolls back when, with at least ``min_predictions`` served, the
    share of failed predictions exceeds ``max_error_rate`` or the p95 latency of a prediction call
    exceeds ``max_p95_latency_ms``; otherwise it commits at the end of the window. ``duration_s``
    0 commits right after the smoke test. A window that saw fewer than ``min_predictions`` is
    committed: there was nothing to judge (the fleet-level rollout gates still watch).
    """

    duration_s: float
    max_error_rate: float = 0.05
    max_p95_latency_ms: float | None = None
    min_predictions: int = 1

    MAX_DURATION_S = 86_400.0

    @classmethod
    def from_dict(cls, d: Any, ctx: str = "probation") -> ProbationPolicy:
        if not isinstance(d, dict):
            raise SchemaError(f"{ctx} must be an object")
        duration = get_float(d, "duration_s", ctx)
        if not 0.0 <= duration <= cls.MAX_DURATION_S:
            raise SchemaError(f"{ctx}.duration_s must be within [0, {cls.MAX_DURATION_S:g}] s")
        rate = get_float(d, "max_error_rate", ctx, optional=True)
        if rate is not None and not 0.0 <= rate <= 1.0:
            raise SchemaError(f"{ctx}.max_error_rate must be within [0, 1]")
        latency = get_float(d, "max_p95_latency_ms", ctx, optional=True)
        if latency is not None and not latency > 0:
            raise SchemaError(f"{ctx}.max_p95_latency_ms must be a positive number of ms")
        minimum = get_int(d, "min_predictions", ctx, optional=True, minimum=0)
        return cls(float(duration), 0.05 if rate is None else float(rate),
                   None if latency is None else float(latency),
                   1 if minimum is None else minimum)

    def to_dict(self) -> dict[str, Any]:
        return {"duration_s": self.duration_s, "max_error_rate": self.max_error_rate,
                "max_p95_latency_ms": self.max_p95_latency_ms,
                "min_predictions": self.min_predictions}


@dataclass(frozen=True)
class Manifest:
    model: str
    version: int  # 0 until the registry assigns one
    format: str
    task: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    label_output: str  # output holding predicted labels (classification) or values (regression)
    score_output: str | None  # output holding class probabilities, if any
    class_labels: tuple[Scalar, ...] | None
    feature_names: tuple[str, ...]
    artifact: ArtifactRef
    smoke_tests: tuple[SmokeTest, ...]
    smoke_tolerance: float
    precision: str = "float32"
    source: dict[str, Any] = field(default_factory=dict)
    opset: dict[str, int] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    reference_profile: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    # -- converter additions (optional; older manifests have none) --------------------------
    # Runtimes the converter loaded and ran this artifact in, as "name==version"
    # (e.g. "onnxruntime==1.32.0", "ai-edge-litert==2.3.0", "tflite-runtime==2.14.0").
    verified_runtimes: tuple[str, ...] = ()
    # TFLite artifacts: builtin (or custom) op name → highest op version the model uses.
    tflite_ops: dict[str, int] = field(default_factory=dict)
    # The device-side health window after activation; None: the agent's default.
    probation: ProbationPolicy | None = None
    # Tabular models with one named, typed input per column (edgewise_wire/records.py); None:
    # the artifact takes one float matrix. Older agents do not know it and fail the smoke test
    # of such a model (its smoke inputs hold strings), so it is never activated there.
    input_schema: InputSchema | None = None
    # The device class this version is built for (an arm64 build, a camera-v2 model); None:
    # any. The controller signs it into the envelope's device_class, and a device of another
    # class refuses the version (edgewise_wire.envelope, docs/security.md).
    device_class: str | None = None
    schema: int = MANIFEST_SCHEMA

    @property
    def takes_records(self) -> bool:
        return self.input_schema is not None

    @property
    def n_features(self) -> int:
        if self.input_schema is not None:
            return len(self.input_schema.fields)
        shape = self.inputs[0].shape
        last = shape[-1] if shape else None
        return int(last) if last is not None else len(self.feature_names)

    def to_dict(self) -> dict[str, Any]:
        """The manifest as JSON-ready data, keys in field order.

        Built field by field, not with ``dataclasses.asdict``: asdict deep-copies the reference
        profile and smoke tests (1.4 ms for a typical manifest, paid at every model switch by
        a thousand simulated agents). The free-form objects (``source``, ``opset``, ``parity``,
        ``reference_profile``, ``tflite_ops``) and smoke-test lists are copied one level deep
        only: callers serialise or copy the result (signing deep-copies it), never mutate it.
        """
        d: dict[str, Any] = {
            "model": self.model,
            "version": self.version,
            "format": self.format,
            "task": self.task,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "label_output": self.label_output,
            "score_output": self.score_output,
            "class_labels": list(self.class_labels) if self.class_labels is not None else None,
            "feature_names": list(self.feature_names),
            "artifact": self.artifact.to_dict(),
            "smoke_tests": [s.to_dict() for s in self.smoke_tests],
            "smoke_tolerance": self.smoke_tolerance,
            "precision": self.precision,
            "source": dict(self.source),
            "opset": dict(self.opset),
            "parity": dict(self.parity),
            "reference_profile": dict(self.reference_profile),
            "created_at": self.created_at,
            "verified_runtimes": list(self.verified_runtimes),
            "tflite_ops": dict(self.tflite_ops),
        }
        if self.probation is not None:  # optional: manifests without one keep their exact form
            d["probation"] = self.probation.to_dict()
        if self.input_schema is not None:
            d["input_schema"] = self.input_schema.to_dict()
        if self.device_class is not None:
            d["device_class"] = self.device_class
        d["schema"] = self.schema
        return d

    @classmethod
    def from_dict(cls, d: Any, ctx: str = "manifest") -> Manifest:
        if not isinstance(d, dict):
            raise SchemaError(f"{ctx} must be an object")
        kind = get_str(d, "kind", ctx, optional=True)
        if kind is not None and kind != KIND_MODEL:
            raise SchemaError(f"{ctx}.kind {kind!r} is not a model manifest")
        schema = get_int(d, "schema", ctx)
        if schema != MANIFEST_SCHEMA:
            raise SchemaError(f"{ctx}.schema {schema} is not supported (this agent knows {MANIFEST_SCHEMA})")
        fmt = get_str(d, "format", ctx)
        if fmt not in FORMATS:
            raise SchemaError(f"{ctx}.format {fmt!r} is not one of {FORMATS}")
        task = get_str(d, "task", ctx)
        if task not in TASKS:
            raise SchemaError(f"{ctx}.task {task!r} is not one of {TASKS}")
        inputs = tuple(TensorSpec.from_dict(t, f"{ctx}.inputs[{i}]")
                       for i, t in enumerate(get_list(d, "inputs", ctx, max_items=64)))
        outputs = tuple(TensorSpec.from_dict(t, f"{ctx}.outputs[{i}]")
                        for i, t in enumerate(get_list(d, "outputs", ctx, max_items=64)))
        if not inputs or not outputs:
            raise SchemaError(f"{ctx} needs at least one input and one output")
        output_names = {o.name for o in outputs}
        label_output = get_str(d, "label_output", ctx)
        score_output = get_str(d, "score_output", ctx, optional=True)
        for name in (label_output, score_output):
            if name is not None and name not in output_names:
                raise SchemaError(f"{ctx}: output {name!r} is not among {sorted(output_names)}")
        labels = get_list(d, "class_labels", ctx, optional=True)
        if labels is not None and not all(isinstance(x, (int, float, str)) for x in labels):
            raise SchemaError(f"{ctx}.class_labels must hold numbers or strings")
        return cls(
            model=get_str(d, "model", ctx, max_len=128),
            version=get_int(d, "version", ctx, minimum=0),
            format=fmt,
            task=task,
            inputs=inputs,
            outputs=outputs,
            label_output=label_output,
            score_output=score_output,
            class_labels=tuple(labels) if labels is not None else None,
            feature_names=tuple(str(x) for x in get_list(d, "feature_names", ctx)),
            artifact=ArtifactRef.from_dict(get_dict(d, "artifact", ctx), f"{ctx}.artifact"),
            smoke_tests=tuple(SmokeTest.from_dict(s, f"{ctx}.smoke_tests[{i}]")
                              for i, s in enumerate(get_list(d, "smoke_tests", ctx, max_items=16))),
            smoke_tolerance=get_float(d, "smoke_tolerance", ctx),
            precision=get_str(d, "precision", ctx),
            source=get_free_form(d, "source", ctx),
            opset=get_free_form(d, "opset", ctx),
            parity=get_free_form(d, "parity", ctx),
            reference_profile=get_free_form(d, "reference_profile", ctx),
            created_at=get_str(d, "created_at", ctx, optional=True) or "",
            verified_runtimes=_verified_runtimes(d, ctx),
            tflite_ops=_tflite_ops(d, ctx),
            probation=(ProbationPolicy.from_dict(d["probation"], f"{ctx}.probation")
                       if d.get("probation") is not None else None),
            input_schema=(InputSchema.from_dict(d["input_schema"], f"{ctx}.input_schema")
                          if d.get("input_schema") is not None else None),
            device_class=_device_class(d, ctx),
            schema=schema,
        )


def check_device_class(value: str, ctx: str = "device_class") -> str:
    """Return ``value`` if it is a usable device class name; raise SchemaError otherwise."""
    if not isinstance(value, str) or not DEVICE_CLASS.fullmatch(value):
        raise SchemaError(f"{ctx} {value!r} is not a device class: use 1-64 letters, digits, "
                          "'.', '_' or '-', starting with a letter or digit")
    return value


def _device_class(d: dict[str, Any], ctx: str) -> str | None:
    value = get_str(d, "device_class", ctx, optional=True, max_len=64)
    return None if value is None else check_device_class(value, f"{ctx}.device_class")


def _verified_runtimes(d: dict[str, Any], ctx: str) -> tuple[str, ...]:
    runtimes = get_list(d, "verified_runtimes", ctx, optional=True, max_items=16) or []
    if not all(isinstance(r, str) and 0 < len(r) <= 128 for r in runtimes):
        raise SchemaError(f"{ctx}.verified_runtimes must hold short strings like 'onnxruntime==1.20'")
    return tuple(runtimes)


def _tflite_ops(d: dict[str, Any], ctx: str) -> dict[str, int]:
    ops = get_dict(d, "tflite_ops", ctx, optional=True) or {}
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ops.values()):
        raise SchemaError(f"{ctx}.tflite_ops must map op names to version numbers")
    return dict(ops)


def check_agent_version(version: str, ctx: str = "version") -> str:
    """Return ``version`` if it is a usable agent version label; raise SchemaError otherwise."""
    if not isinstance(version, str) or not AGENT_VERSION.fullmatch(version):
        raise SchemaError(f"{ctx} {version!r} is not an agent version: use 1-64 letters, digits, "
                          "'.', '+', '_' or '-', starting with a letter or digit")
    return version


@dataclass(frozen=True)
class AgentManifest:
    """An agent bundle: a tar archive of a prepared agent (``bin/edgewise-agent`` and what it
    runs) that the device's ``edgewise-agent-launcher`` stages into its standby slot.

    Same content address as a model artifact (sha256, size, chunk hashes, optional URL), so it
    travels over the same signed, resumable chunk path; ``version`` is the label the device
    reports as its ``agent_version`` once the bundle runs. ``kind`` is always ``"agent"``: a
    model manifest parser refuses it, and this one refuses a model manifest, so neither can be
    taken for the other.
    """

    version: str
    artifact: ArtifactRef
    created_at: str = ""
    kind: str = KIND_AGENT
    schema: int = MANIFEST_SCHEMA

    ALLOWED_KEYS = frozenset({"kind", "version", "artifact", "created_at", "schema"})

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "version": self.version, "artifact": self.artifact.to_dict(),
                "created_at": self.created_at, "schema": self.schema}

    @classmethod
    def from_dict(cls, d: Any, ctx: str = "manifest") -> AgentManifest:
        if not isinstance(d, dict):
            raise SchemaError(f"{ctx} must be an object")
        kind = get_str(d, "kind", ctx, optional=True)
        if kind != KIND_AGENT:
            raise SchemaError(f"{ctx}.kind {kind!r} is not {KIND_AGENT!r}: not an agent manifest")
        unknown = sorted(str(k) for k in d if k not in cls.ALLOWED_KEYS)
        if unknown:
            raise SchemaError(f"{ctx} has fields an agent manifest does not know: {unknown[:5]}")
        schema = get_int(d, "schema", ctx)
        if schema != MANIFEST_SCHEMA:
            raise SchemaError(f"{ctx}.schema {schema} is not supported (this agent knows {MANIFEST_SCHEMA})")
        version = check_agent_version(get_str(d, "version", ctx, max_len=64), f"{ctx}.version")
        return cls(version=version,
                   artifact=ArtifactRef.from_dict(get_dict(d, "artifact", ctx), f"{ctx}.artifact"),
                   created_at=get_str(d, "created_at", ctx, optional=True, max_len=64) or "",
                   schema=schema)


def manifest_kind(d: Any) -> str:
    """The kind of a manifest as data: ``"model"`` when it names none (raises SchemaError for a
    kind this side does not know)."""
    kind = d.get("kind", KIND_MODEL) if isinstance(d, dict) else KIND_MODEL
    if kind not in KINDS:
        raise SchemaError(f"manifest.kind {kind!r} is not one of {KINDS}")
    return str(kind)
