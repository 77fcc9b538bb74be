"""The REST client of the CLI, the simulator and the tests: one method per endpoint, errors in
the server's words.

One class for the whole API, its calls grouped by resource in the order of the routers
(``controller/*/api.py``), so any command can make any call. Every call names its actor
(``user@host``) for the audit log.
"""

from __future__ import annotations

import getpass
import json
import socket
import ssl
from typing import Any

import httpx

from edgewise_wire import Manifest

API_PREFIX = "/api/v1"


class ControllerClientError(Exception):
    """The controller refused a call or could not be reached; the message says what to do."""


def local_actor() -> str:
    """``user@host``: who acted, as the audit log records it."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in this environment (containers)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _params(**kwargs: Any) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if v is not None}


def check_base_url(url: str) -> str:
    """``url`` without its trailing slash if it is a controller's base URL (``http(s)://HOST``
    with an optional port, no path), else :class:`ControllerClientError` saying what to write."""
    setting = "set --controller or EDGEWISE_URL"
    example = "e.g. http://127.0.0.1:8700"
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise ControllerClientError(f"controller URL {url!r} is not a URL ({exc}); write "
                                    f"http(s)://HOST[:PORT], {example}; {setting}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ControllerClientError(f"controller URL {url!r} is not an http(s) URL with a host; "
                                    f"write http(s)://HOST[:PORT], {example}; {setting}")
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment:
        base = f"{parsed.scheme}://{parsed.netloc.decode()}"
        raise ControllerClientError(f"controller URL {url!r} has a path; give the controller's "
                                    f"base URL ({base}), the API's /api/v1 is added by the "
                                    f"client; {setting}")
    return str(url).strip().rstrip("/")


class ControllerClient:
    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30.0,
                 ca_cert: str | None = None) -> None:
        headers = {"X-Edgewise-Actor": local_actor()}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.base_url = check_base_url(base_url)
        # ca_cert: the CA that signed an https controller's certificate
        verify: ssl.SSLContext | bool = (ssl.create_default_context(cafile=ca_cert)
                                         if ca_cert else True)
        self._http = httpx.Client(base_url=self.base_url + API_PREFIX, headers=headers,
                                  timeout=timeout, verify=verify)

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; a read of a kept-alive connection that the server closed at that
        moment (its keep-alive timeout) is sent once more on a new connection, for reads
        only: they change nothing, so a second send is safe."""
        try:
            return self._http.request(method, path, **kwargs)
        except (httpx.ReadError, httpx.RemoteProtocolError):
            if method.upper() not in ("GET", "HEAD"):
                raise
            return self._http.request(method, path, **kwargs)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._send(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ControllerClientError(
                f"cannot reach the controller at {self.base_url} ({exc}); is "
                "`edgewise controller serve` running? Set --controller or EDGEWISE_URL.") from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ControllerClientError(f"{response.status_code}: {detail}")
        return response.json()

    def close(self) -> None:
        self._http.close()

    # -- the controller and who calls it ---------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def whoami(self) -> dict[str, Any]:
        """Which token this client sends: ``{"auth", "name", "scope"}``."""
        return self._call("GET", "/auth/whoami")

    # -- models ------------------------------------------------------------------------------------

    def push_version(self, manifest: Manifest, artifact: bytes) -> dict[str, Any]:
        return self._call(
            "POST", f"/models/{manifest.model}/versions",
            data={"manifest": json.dumps(manifest.to_dict())},
            files={"artifact": ("artifact.bin", artifact, "application/octet-stream")})

    def push_agent_version(self, version: str, archive: bytes) -> dict[str, Any]:
        return self._call("POST", "/agent-versions", data={"version": version},
                          files={"archive": ("agent.tar.gz", archive, "application/gzip")})

    def deploy_agent_version(self, version: str, devices: list[str] | None) -> dict[str, Any]:
        return self._call("POST", f"/agent-versions/{version}/deploy", json={"devices": devices})

    def list_agent_versions(self) -> list[dict[str, Any]]:
        return self._call("GET", "/agent-versions")

    def list_models(self) -> list[dict[str, Any]]:
        return self._call("GET", "/models")

    def get_model(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/models/{name}")

    def latest_version(self, model: str) -> int:
        versions = self.get_model(model)["versions"]
        return max(int(v["version"]) for v in versions)

    def model_summary(self, name: str, window: float, group_by: str) -> dict[str, Any]:
        return self._call("GET", f"/models/{name}/summary",
                          params={"window": window, "group_by": group_by})

    # -- devices -----------------------------------------------------------------------------------

    def list_devices(self) -> list[dict[str, Any]]:
        return self.devices()

    def devices(self, selector: str | None = None) -> list[dict[str, Any]]:
        return self._call("GET", "/devices", params=_params(selector=selector))

    def device(self, device_id: str) -> dict[str, Any]:
        return self._call("GET", f"/devices/{device_id}")

    def register(self, device_id: str, labels: dict[str, str], note: str) -> dict[str, Any]:
        return self._call("POST", "/devices", json={"device_id": device_id, "labels": labels,
                                                    "note": note})

    def set_labels(self, device_id: str, set_: dict[str, str],
                   remove: list[str]) -> dict[str, Any]:
        return self._call("PATCH", f"/devices/{device_id}/labels",
                          json={"set": set_, "remove": remove})

    def device_history(self, device_id: str, limit: int) -> list[dict[str, Any]]:
        return self._call("GET", f"/devices/{device_id}/history", params={"limit": limit})

    def device_errors(self, device_id: str, limit: int) -> list[dict[str, Any]]:
        return self._call("GET", f"/devices/{device_id}/errors", params={"limit": limit})

    def device_series(self, device_id: str, window: float, buckets: int) -> dict[str, Any]:
        return self._call("GET", f"/devices/{device_id}/series",
                          params={"window": window, "buckets": buckets})

    # -- fleet and telemetry -----------------------------------------------------------------------

    def fleet_devices(self, **params: Any) -> dict[str, Any]:
        return self._call("GET", "/fleet/devices", params=_params(**params))

    def export_data(self, params: dict[str, Any], out: Any) -> int:
        """Stream ``GET /data/export`` into the binary file ``out``; return the bytes written.
        An error before the stream starts is raised as one line."""
        try:
            with self._http.stream("GET", "/data/export", params=params,
                                   timeout=httpx.Timeout(30.0, read=None)) as response:
                if response.status_code >= 400:
                    response.read()
                    try:
                        detail = response.json().get("detail", response.text)
                    except ValueError:
                        detail = response.text
                    raise ControllerClientError(f"{response.status_code}: {detail}")
                written = 0
                for chunk in response.iter_bytes():
                    out.write(chunk)
                    written += len(chunk)
                return written
        except httpx.TransportError as exc:
            raise ControllerClientError(
                f"cannot reach the controller at {self.base_url} ({exc}); is "
                "`edgewise controller serve` running? Set --controller or EDGEWISE_URL.") from None

    def sampling_shares(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/data/sampling"))

    def set_sampling_share(self, selector: str, share: float) -> dict[str, Any]:
        return dict(self._call("PUT", "/data/sampling",
                               json={"selector": selector, "share": share}))

    def clear_sampling_share(self, selector: str) -> dict[str, Any]:
        return dict(self._call("DELETE", "/data/sampling", params={"selector": selector}))

    def apply_retention(self, days: float | None, rows: int | None) -> dict[str, Any]:
        return self._call("POST", "/data/retention", json={"days": days, "rows": rows})

    def telemetry_count(self, device_id: str | None = None, kind: str | None = None) -> int:
        """Telemetry records stored (of one device, of one kind); records, not predictions."""
        return int(self._call("GET", "/telemetry/count",
                              params=_params(device_id=device_id, kind=kind))["count"])

    # -- deployments and rollouts ------------------------------------------------------------------

    def deploy(self, model: str, version: int | None = None,
               devices: list[str] | None = None,
               probation: dict[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "version": version, "devices": devices}
        if probation is not None:  # ProbationPolicy fields
            body["probation"] = probation
        return self._call("POST", "/deployments", json=body)

    def create_rollout(self, spec: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
        return self._call("POST", "/rollouts", json=spec,
                          params={"dry_run": "true"} if dry_run else {})

    def rollouts(self, include_finished: bool = True, limit: int = 20) -> list[dict[str, Any]]:
        return self._call("GET", "/rollouts", params={"all": str(include_finished).lower(),
                                                      "limit": limit})

    def rollout(self, ref: str) -> dict[str, Any]:
        return self._call("GET", f"/rollouts/{ref}")

    def rollout_action(self, ref: str, action: str, reason: str = "") -> dict[str, Any]:
        return self._call("POST", f"/rollouts/{ref}/{action}", json={"reason": reason})

    def start_experiment(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/experiments", json=spec)

    def experiments(self, limit: int = 50) -> list[dict[str, Any]]:
        return self._call("GET", "/experiments", params={"limit": limit})

    def experiment(self, experiment_id: str) -> dict[str, Any]:
        return self._call("GET", f"/experiments/{experiment_id}")

    def stop_experiment(self, experiment_id: str, reason: str = "") -> dict[str, Any]:
        return self._call("POST", f"/experiments/{experiment_id}/stop", json={"reason": reason})

    def promote_experiment(self, experiment_id: str, rollout: dict[str, Any],
                           force: bool = False) -> dict[str, Any]:
        return self._call("POST", f"/experiments/{experiment_id}/promote",
                          json={"rollout": rollout, "force": force})

    def audit(self, **params: Any) -> dict[str, Any]:
        return self._call("GET", "/audit", params=_params(**params))

    # -- monitoring --------------------------------------------------------------------------------

    def alerts(self, include_cleared: bool = False, kind: str | None = None,
               device_id: str | None = None) -> list[dict[str, Any]]:
        return self._call("GET", "/alerts", params=_params(
            all=str(include_cleared).lower(), kind=kind, device_id=device_id))

    def alert_history(self, since: float | None = None, limit: int = 200,
                      kind: str | None = None,
                      device_id: str | None = None) -> list[dict[str, Any]]:
        return self._call("GET", "/alerts/history", params=_params(
            since=since, limit=limit, kind=kind, device_id=device_id))

    def explain_alert(self, event_id: int) -> dict[str, Any]:
        return self._call("GET", f"/alerts/events/{event_id}")

    def evaluate_alerts(self) -> dict[str, Any]:
        return self._call("POST", "/alerts/evaluate")

    def ack_alert(self, event_id: int, comment: str = "") -> dict[str, Any]:
        return self._call("POST", f"/alerts/events/{event_id}/ack", json={"comment": comment})

    def silence_alerts(self, *, event_id: int | None = None, matchers: list[str] | None = None,
                       duration_s: float = 7200.0, comment: str = "") -> dict[str, Any]:
        return self._call("POST", "/alerts/silences", json={
            "event_id": event_id, "matchers": matchers or [], "duration_s": duration_s,
            "comment": comment})

    def silences(self, include_expired: bool = False) -> list[dict[str, Any]]:
        return self._call("GET", "/alerts/silences",
                          params={"all": str(include_expired).lower()})

    def expire_silence(self, silence_id: int) -> dict[str, Any]:
        return self._call("DELETE", f"/alerts/silences/{silence_id}")

    def retrain_runs(self, limit: int = 50) -> list[dict[str, Any]]:
        return self._call("GET", "/retrain-runs", params={"limit": limit})

    def fleet_metrics(self, since: float | None = None) -> list[dict[str, Any]]:
        return self._call("GET", "/metrics/fleet", params=_params(since=since))

    def device_metrics(self, device_id: str, since: float | None = None) -> list[dict[str, Any]]:
        return self._call("GET", f"/metrics/devices/{device_id}", params=_params(since=since))

    def version_metrics(self, model: str, version: int, since: float | None = None,
                        selector: str | None = None,
                        per_device: bool = False) -> dict[str, Any]:
        return self._call("GET", f"/metrics/models/{model}/versions/{version}", params=_params(
            since=since, selector=selector, per_device=str(per_device).lower()))

    def group_metrics(self, model: str, version: int, label: str,
                      since: float | None = None) -> dict[str, Any]:
        return self._call("GET", f"/metrics/models/{model}/versions/{version}/groups/{label}",
                          params=_params(since=since))

    def drift(self, model: str, version: int | None = None, *, window: float = 3600,
              buckets: int = 30, by: str = "feature", group_by: str | None = None,
              top: int | None = None, limit: int | None = None) -> dict[str, Any]:
        """Per-feature drift of a model version (default: the latest) over the last
        ``window`` seconds, or per device or label group (``by``)."""
        return self._call("GET", f"/drift/{model}", params=_params(
            version=version, window=window, buckets=buckets, by=by, group_by=group_by, top=top,
            limit=limit))

    # -- device health -------------------------------------------------------------------------

    def device_health(self, device_id: str, window: float) -> dict[str, Any]:
        return self._call("GET", f"/devices/{device_id}/health", params={"window": window})

    def device_logs(self, device_id: str, since: float, max_lines: int,
                    timeout: float) -> dict[str, Any]:
        return self._call("GET", f"/devices/{device_id}/logs", params={
            "since": since, "max_lines": max_lines, "timeout": timeout})

    def fleet_health(self, ids: list[str] | None = None,
                     alerts: bool = True) -> dict[str, Any]:
        return self._call("GET", "/health/devices", params=_params(
            ids=",".join(ids) if ids is not None else None, alerts=str(alerts).lower()))
