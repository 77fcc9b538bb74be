"""Zero-touch enrollment and certificate renewal, on the device (``edgewise-agent-enroll``).

First boot, with a claim token baked into the image::

    edgewise-agent-enroll --controller https://ctl.example.net:8700 --claim ewc_... \\
        --device-id pi-berlin-07 --out /etc/edgewise [--ca-cert fleet-ca.crt]

1. makes an Ed25519 key pair (:func:`edgewise_wire.public_keys.new_device_key`) and writes
   ``device.key`` (0600) *before* anything is sent: a retry after a power cut uses the same key,
   and the private key never leaves the device;
2. sends a certificate request for ``CN = device id`` with the claim token to
   ``POST /api/v1/enroll`` (:mod:`controller.security.enroll_api`), and asks again every
   ``--poll`` seconds while an operator has not approved it (``edgewise devices approve``);
3. writes what the answer holds: ``device.crt``, ``ca.crt``, ``trusted_keys/``, ``agent.toml``
   (broker, TLS paths, labels, device class) and ``enrollment.json`` (the controller's URL and the
   certificate's validity, for renewal).

Renewal (:func:`renew_if_due`): once less than a third of the certificate's lifetime is left, a
request signed by the same key goes to ``POST /api/v1/enroll/renew``; no token, no operator. The
daemon checks at start and every hour; a certificate renewed while it runs takes effect when it
restarts, which it then does (systemd restarts it: ``Restart=always``).

Standard library only (``urllib``), besides the wire package: a device carries no
``cryptography``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_agent.durable import replace_durably
from edgewise_wire import public_keys
from edgewise_wire.csr import csr_pem, private_key_pem, seed_from_pem
from edgewise_wire.envelope import key_id_of

log = logging.getLogger("edgewise.agent.enroll")

STATE_FILE = "enrollment.json"
RENEW_FRACTION = 1 / 3  # renew once less than this share of the lifetime is left


class EnrollError(RuntimeError):
    """Enrollment or renewal did not succeed; the message says why and what to do."""


def _post(url: str, body: dict[str, Any], ca_file: str | None, timeout: float
          ) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=ca_file) if url.startswith("https") else None
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            answer: dict[str, Any] = json.loads(response.read(1 << 20))
            return answer
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read(1 << 16)).get("detail")
        except ValueError:
            detail = None
        raise EnrollError(f"the controller refused ({exc.code}): {detail or exc.reason}"
                          ) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise EnrollError(f"cannot reach the controller at {url}: {exc}") from None


def _key(out_dir: Path) -> bytes:
    """The device's key seed: read back if it exists, else made and written durably now."""
    path = out_dir / "device.key"
    if path.exists():
        return seed_from_pem(path.read_bytes())
    seed, _ = public_keys.new_device_key()
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("device.key.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_key_pem(seed))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return seed


def _toml(value: str) -> str:
    return json.dumps(value)


def _write_bundle(out_dir: Path, answer: dict[str, Any], controller: str, ca_file: str | None,
                  agent_data_dir: str) -> Path:
    replace_durably(out_dir / "ca.crt", answer["ca"])
    keys = []
    (out_dir / "trusted_keys").mkdir(exist_ok=True)
    for pem in answer.get("trusted_keys") or []:
        kid = key_id_of(pem.encode())
        replace_durably(out_dir / "trusted_keys" / f"{kid}.pem", pem)
        keys.append(f"trusted_keys/{kid}.pem")
    broker = answer.get("broker") or {}
    lines = [f"# written by edgewise-agent-enroll for {answer['device_id']}",
             f"device_id = {_toml(answer['device_id'])}",
             f"data_dir = {_toml(agent_data_dir)}",
             f"device_class = {_toml(answer.get('device_class') or 'generic')}",
             "trusted_keys = [" + ", ".join(_toml(k) for k in keys) + "]", "", "[broker]",
             f"host = {_toml(str(broker.get('host', 'localhost')))}",
             f"port = {int(broker.get('port', 8883))}",
             'tls_ca = "ca.crt"', 'tls_cert = "device.crt"', 'tls_key = "device.key"']
    labels = answer.get("labels") or {}
    if labels:
        lines += ["", "[labels]"] + [f"{_toml(k)} = {_toml(v)}" for k, v in sorted(labels.items())]
    replace_durably(out_dir / "agent.toml", "\n".join(lines) + "\n")
    _write_cert(out_dir, answer, controller, ca_file)
    return out_dir / "agent.toml"


def _write_cert(out_dir: Path, answer: dict[str, Any], controller: str,
                ca_file: str | None) -> None:
    replace_durably(out_dir / "device.crt", answer["certificate"])
    replace_durably(out_dir / STATE_FILE, json.dumps({
        "controller": controller, "ca_file": ca_file, "device_id": answer["device_id"],
        "not_before": answer["not_before"], "not_after": answer["not_after"]}, indent=1))


def enroll(controller: str, claim: str, device_id: str, out_dir: Path, *,
           ca_file: str | None = None, poll_s: float = 10.0, timeout_s: float = 3600.0,
           agent_data_dir: str = "/var/lib/edgewise-agent", request_timeout_s: float = 30.0,
           sleep: Callable[[float], None] = time.sleep) -> Path:
    """Enroll by claim; returns the path of the written ``agent.toml``."""
    seed = _key(out_dir)
    body = {"claim": claim, "device_id": device_id,
            "csr": csr_pem(device_id, seed).decode("ascii")}
    url = controller.rstrip("/") + "/api/v1/enroll"
    deadline = time.monotonic() + timeout_s
    while True:
        answer = _post(url, body, ca_file, request_timeout_s)
        status = answer.get("status")
        if status == "issued":
            return _write_bundle(out_dir, answer, controller, ca_file, agent_data_dir)
        if status == "rejected":
            raise EnrollError(f"enrollment of {device_id} was rejected: "
                              f"{answer.get('reason') or 'by an operator'}")
        if time.monotonic() + poll_s > deadline:
            raise EnrollError(f"enrollment of {device_id} is still pending approval "
                              "(`edgewise devices approve ID` on the controller host); run "
                              "this again to keep waiting (the same key is used)")
        log.info("enrollment of %s pending approval; asking again in %.0f s", device_id, poll_s)
        sleep(poll_s)


def renewal_due(state: dict[str, Any], now: float, fraction: float = RENEW_FRACTION) -> bool:
    lifetime = float(state["not_after"]) - float(state["not_before"])
    return float(state["not_after"]) - now < lifetime * fraction


def renew_if_due(config_dir: Path, *, now: float | None = None,
                 request_timeout_s: float = 30.0) -> bool:
    """Renew the certificate if less than a third of its lifetime is left; True if renewed.
    Nothing to do (False) for a device not enrolled by claim (no ``enrollment.json``)."""
    path = config_dir / STATE_FILE
    if not path.exists():
        return False
    state = json.loads(path.read_text())
    if not renewal_due(state, time.time() if now is None else now):
        return False
    seed = seed_from_pem((config_dir / "device.key").read_bytes())
    device_id = state["device_id"]
    answer = _post(state["controller"].rstrip("/") + "/api/v1/enroll/renew",
                   {"device_id": device_id, "csr": csr_pem(device_id, seed).decode("ascii")},
                   state.get("ca_file"), request_timeout_s)
    if answer.get("status") != "issued":
        raise EnrollError(f"renewal of {device_id}: {answer.get('reason') or answer}")
    _write_cert(config_dir, answer, state["controller"], state.get("ca_file"))
    log.info("%s: certificate renewed, valid until %s", device_id,
             time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(answer["not_after"])))
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="edgewise-agent-enroll",
        description="Enroll this device by claim token (zero-touch): make a key pair here, "
                    "send a certificate request, write agent.toml and the certificate.")
    parser.add_argument("--controller", required=True, help="the controller's base URL")
    parser.add_argument("--claim", required=True, help="the claim token of the fleet group")
    parser.add_argument("--device-id", required=True)
    parser.add_argument("--out", type=Path, default=Path("/etc/edgewise"))
    parser.add_argument("--ca-cert", help="CA to check the controller's HTTPS certificate with")
    parser.add_argument("--data-dir", default="/var/lib/edgewise-agent",
                        help="data_dir written into agent.toml")
    parser.add_argument("--poll", type=float, default=10.0, help="seconds between asks while "
                                                                 "pending approval")
    parser.add_argument("--wait", type=float, default=3600.0, help="give up after this many "
                                                                   "seconds pending")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        path = enroll(args.controller, args.claim, args.device_id, args.out,
                      ca_file=args.ca_cert, poll_s=args.poll, timeout_s=args.wait,
                      agent_data_dir=args.data_dir)
    except (EnrollError, ValueError, OSError) as exc:
        print(f"edgewise-agent-enroll: error: {exc}", file=sys.stderr)
        sys.exit(1)
    print(f"enrolled {args.device_id}: {path}")


if __name__ == "__main__":
    main()
