"""A small REST client for the CLI: one method per endpoint, errors in the server's words."""

from __future__ import annotations

import json
import ssl
from typing import Any

import httpx

from edgewise_wire import Manifest


class ControllerClientError(Exception):
    """The controller refused a call or could not be reached; the message says what to do."""


class ControllerClient:
    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30.0,
                 ca_cert: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        # ca_cert: the CA that signed an https controller's certificate (issue 9)
        verify: ssl.SSLContext | bool = (ssl.create_default_context(cafile=ca_cert)
                                         if ca_cert else True)
        self._http = httpx.Client(base_url=self.base_url + "/api/v1", headers=headers,
                                  timeout=timeout, verify=verify)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
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

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def whoami(self) -> dict[str, Any]:
        """Which token this client sends: ``{"auth", "name", "scope"}`` (issue 9)."""
        return self._call("GET", "/auth/whoami")

    def push_version(self, manifest: Manifest, artifact: bytes) -> dict[str, Any]:
        return self._call(
            "POST", f"/models/{manifest.model}/versions",
            data={"manifest": json.dumps(manifest.to_dict())},
            files={"artifact": ("artifact.bin", artifact, "application/octet-stream")})

    def list_models(self) -> list[dict[str, Any]]:
        return self._call("GET", "/models")

    def get_model(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/models/{name}")

    def list_devices(self) -> list[dict[str, Any]]:
        return self._call("GET", "/devices")

    def deploy(self, model: str, version: int | None = None,
               devices: list[str] | None = None,
               probation: dict[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "version": version, "devices": devices}
        if probation is not None:  # issue 4: ProbationPolicy fields
            body["probation"] = probation
        return self._call("POST", "/deployments", json=body)

    def telemetry_count(self, device_id: str | None = None) -> int:
        params = {"device_id": device_id} if device_id else {}
        return int(self._call("GET", "/telemetry/count", params=params)["count"])

    def close(self) -> None:
        self._http.close()
