"""The claim policy of zero-touch enrollment (controller.security.claims), on a fleet CA in a
temporary directory: quota, expiry, revocation, manual approval, takeover, renewal."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cryptography import x509

from controller.errors import ConflictError, ValidationError
from controller.security.claims import ClaimRefused, ClaimStore
from edgewise_wire import public_keys
from edgewise_wire.csr import csr_pem


def _csr(device_id: str, seed: bytes | None = None) -> tuple[str, bytes]:
    seed = seed or public_keys.new_device_key()[0]
    return csr_pem(device_id, seed).decode(), seed


@pytest.fixture
def claims(tmp_path: Path) -> ClaimStore:
    store = ClaimStore.for_data_dir(tmp_path)
    store.ca.init()
    return store


def test_auto_token_issues_within_its_quota_for_the_device_key(claims: ClaimStore) -> None:
    token = claims.create_token("t", group="g", quota=2, expires_in_s=60, labels={"a": "1"})
    csr, seed = _csr("d1")
    outcome = claims.request(token, "d1", csr)
    assert outcome.status == "issued" and outcome.labels == {"a": "1", "group": "g"}
    assert outcome.certificate is not None
    cert = x509.load_pem_x509_certificate(outcome.certificate)
    assert cert.public_key().public_bytes_raw() == public_keys.public_of_seed(seed)
    assert claims.request(token, "d1", csr).status == "issued"  # asked again: same outcome
    assert claims.request(token, "d2", _csr("d2")[0]).status == "issued"
    with pytest.raises(ClaimRefused, match="quota of 2"):
        claims.request(token, "d3", _csr("d3")[0])
    assert [t["used"] for t in claims.tokens()] == [2]


def test_refusals_expired_revoked_unknown_wrong_cn_and_takeover(
        claims: ClaimStore, monkeypatch: pytest.MonkeyPatch) -> None:
    expired = claims.create_token("old", group="g", quota=5, expires_in_s=60)
    later = time.time() + 61
    with monkeypatch.context() as m:
        m.setattr("controller.security.claims._now", lambda: later)
        with pytest.raises(ClaimRefused, match="expired"):
            claims.request(expired, "d1", _csr("d1")[0])
    token = claims.create_token("t", group="g", quota=5, expires_in_s=60)
    with pytest.raises(ClaimRefused, match="unknown claim token"):
        claims.request(token + "x", "d1", _csr("d1")[0])
    with pytest.raises(ValidationError, match="not 'd1'"):
        claims.request(token, "d1", _csr("other")[0])
    claims.request(token, "d1", _csr("d1")[0])
    with pytest.raises(ConflictError, match="another key"):
        claims.request(token, "d1", _csr("d1")[0])  # a new key for an enrolled id
    claims.revoke_token("t")
    with pytest.raises(ClaimRefused, match="revoked"):
        claims.request(token, "d2", _csr("d2")[0])


def test_manual_approval_rejection_gives_the_place_back(claims: ClaimStore) -> None:
    token = claims.create_token("m", group="g", quota=1, expires_in_s=60, approval="manual")
    csr, _ = _csr("d1")
    assert claims.request(token, "d1", csr).status == "pending"
    with pytest.raises(ClaimRefused, match="quota"):
        claims.request(token, "d2", _csr("d2")[0])  # pending ones count
    assert [p["device_id"] for p in claims.pending()] == ["d1"]
    assert claims.reject("d1", "not ours").status == "rejected"
    assert claims.request(token, "d1", csr).reason == "not ours"
    assert claims.request(token, "d2", _csr("d2")[0]).status == "pending"
    assert claims.approve("d2").status == "issued"
    with pytest.raises(ConflictError, match="not pending"):
        claims.approve("d2")


def test_renewal_needs_the_enrolled_key_and_an_unrevoked_device(claims: ClaimStore) -> None:
    token = claims.create_token("t", group="g", quota=5, expires_in_s=60)
    csr, seed = _csr("d1")
    first = claims.request(token, "d1", csr)
    renewed = claims.renew("d1", _csr("d1", seed)[0])
    assert renewed.certificate != first.certificate
    with pytest.raises(ClaimRefused, match="the key the device was enrolled with"):
        claims.renew("d1", _csr("d1")[0])
    identity = claims.ca.current("d1")
    assert identity is not None
    claims.ca.revoke("d1")
    revoked = {r.serial for r in claims.ca.identities() if r.revoked}
    assert identity.serial in revoked and len(revoked) == 2  # the renewed one and the first
    with pytest.raises(ClaimRefused, match="revoked"):
        claims.renew("d1", _csr("d1", seed)[0])
    with pytest.raises(ClaimRefused, match="revoked"):
        claims.request(token, "d1", csr)
