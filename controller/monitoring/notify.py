"""Alerts as other tools read them: Prometheus Alertmanager's v2 alerts, signed webhook bodies,
and the matchers of a silence. Pure: no I/O, time is an argument.

An Edgewise alert state (kind, device or group, model version) becomes one Alertmanager alert
with the labels ``alertname`` (``Edgewise`` and the kind: ``EdgewiseDrift``), ``device`` (the
device id; empty for a group's alert), ``group`` (the group of a group's alert,
``site=berlin``; the device's value of the grouping label otherwise), ``model``, ``version`` and
``severity``, and the explanation in its annotations. A firing alert is sent with ``startsAt``
only (Alertmanager keeps it until ``resolve_timeout`` unless it is sent again, so firing alerts
are re-sent periodically); a cleared one with ``endsAt``, which resolves it.

Matchers (for ``edgewise alerts silence --matcher``) use Alertmanager's grammar on the same
labels plus ``kind``: ``device=pi-1``, ``model!=iris``, ``group=~site=(berlin|paris)``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from controller.errors import ValidationError

GROUP_PREFIX = "group:"
SEVERITY = {"drift": "warning", "accuracy": "critical", "bias": "warning",
            "concept": "critical", "segment": "warning", "latency": "warning",
            "silent": "critical"}
MATCHER_LABELS = ("alertname", "kind", "device", "group", "model", "version", "severity")
SIGNATURE_HEADER = "X-Edgewise-Signature"
TIMESTAMP_HEADER = "X-Edgewise-Timestamp"
_MATCHER = re.compile(r"^\s*([a-z_]+)\s*(=~|!~|!=|=)\s*(.*?)\s*$")


def alertname(kind: str) -> str:
    return "Edgewise" + kind.capitalize()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def labels_of(alert: Mapping[str, Any], device_group: str | None = None) -> dict[str, str]:
    """The labels of one alert state (a row of ``AlertStore.alerts``). ``device_group``: the
    device's value of the grouping label, e.g. ``site=berlin`` (a device alert's group)."""
    scope = str(alert["device_id"])
    kind = str(alert["kind"])
    is_group = scope.startswith(GROUP_PREFIX)
    return {"alertname": alertname(kind), "kind": kind,
            "device": "" if is_group else scope,
            "group": scope[len(GROUP_PREFIX):] if is_group else (device_group or ""),
            "model": str(alert.get("model") or ""),
            "version": "" if alert.get("version") is None else str(alert["version"]),
            "severity": SEVERITY.get(kind, "warning")}


def annotations_of(alert: Mapping[str, Any], dashboard_url: str | None = None
                   ) -> dict[str, str]:
    scope = str(alert["device_id"])
    version = f"{alert['model']}:{alert['version']}" if alert.get("model") else "no model"
    out = {"summary": f"{alert['kind']} alert on {scope} ({version})",
           "description": str(alert.get("detail") or "")}
    if alert.get("value") is not None:
        out["value"] = f"{float(alert['value']):.6g}"
    if alert.get("threshold") is not None:
        out["threshold"] = f"{float(alert['threshold']):.6g}"
    if alert.get("event_id") is not None:
        out["event_id"] = str(alert["event_id"])
        out["explain"] = f"edgewise alerts --explain {alert['event_id']}"
    if alert.get("acked_by"):
        out["acknowledged_by"] = str(alert["acked_by"])
    if dashboard_url:
        out["dashboard"] = dashboard_url
    return out


def alertmanager_alert(alert: Mapping[str, Any], *, resolved_at: float | None,
                       device_group: str | None = None, generator_url: str | None = None
                       ) -> dict[str, Any]:
    """One alert of Alertmanager's ``POST /api/v2/alerts`` body."""
    # an empty label is no label to Alertmanager: left out, so what it stores is what was sent
    labels = {k: v for k, v in labels_of(alert, device_group).items() if k != "kind" and v}
    out: dict[str, Any] = {"labels": labels, "annotations": annotations_of(alert)}
    since = alert.get("since")
    if since is not None:
        out["startsAt"] = iso(float(since))
    if resolved_at is not None:
        out["endsAt"] = iso(resolved_at)
    if generator_url:
        out["generatorURL"] = generator_url
    return out


def webhook_body(events: Iterable[Mapping[str, Any]], now: float) -> dict[str, Any]:
    """The generic webhook's JSON: one entry per alert that fired or cleared."""
    return {"version": 1, "sent_at": iso(now), "alerts": list(events)}


def webhook_event(alert: Mapping[str, Any], status: str, at: float,
                  device_group: str | None = None) -> dict[str, Any]:
    return {"status": status, "at": iso(at), "labels": labels_of(alert, device_group),
            "annotations": annotations_of(alert)}


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=`` and the hex HMAC-SHA256 of ``timestamp.body`` under ``secret``: the receiver
    recomputes it and compares in constant time (and refuses old timestamps: no replays)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


# -- matchers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str  # "=", "!=", "=~", "!~"
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        got = labels.get(self.label, "")
        if self.op == "=":
            return got == self.value
        if self.op == "!=":
            return got != self.value
        found = re.fullmatch(self.value, got) is not None
        return found if self.op == "=~" else not found

    def to_dict(self) -> dict[str, str]:
        return {"label": self.label, "op": self.op, "value": self.value}

    def __str__(self) -> str:
        return f"{self.label}{self.op}{self.value}"


def parse_matcher(text: str) -> Matcher:
    """``label=value``, ``label!=value``, ``label=~regex`` or ``label!~regex``; ValidationError
    naming what is wrong."""
    m = _MATCHER.match(text)
    if m is None:
        raise ValidationError(f"matcher {text!r} is not label=value, label!=value, "
                              f"label=~regex or label!~regex")
    label, op, value = m.groups()
    if label not in MATCHER_LABELS:
        raise ValidationError(f"matcher {text!r}: label {label!r} is not one of "
                              f"{list(MATCHER_LABELS)}")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    if op in ("=~", "!~"):
        try:
            re.compile(value)
        except re.error as exc:
            raise ValidationError(f"matcher {text!r}: bad regular expression: {exc}") from None
    return Matcher(label, op, value)


def matcher_from_dict(d: Mapping[str, Any]) -> Matcher:
    return parse_matcher(f"{d['label']}{d['op']}{d['value']}")


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


def silence_matchers_for(alert: Mapping[str, Any]) -> list[Matcher]:
    """The matchers that silence exactly one alert: its kind and its device or group."""
    labels = labels_of(alert)
    out = [Matcher("kind", "=", labels["kind"])]
    if labels["device"]:
        out.append(Matcher("device", "=", labels["device"]))
    else:
        out += [Matcher("device", "=", ""), Matcher("group", "=", labels["group"])]
    return out


def dumps(body: Any) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()
