"""Artifacts in an S3-compatible object store (AWS S3, MinIO, Ceph RGW, ...), for replicas
without a shared file system, and the URL devices download them from.

Objects are content-addressed like the files of :class:`ArtifactStore`: ``prefix/ab/<sha256>``.
Each replica keeps a local cache (its own ``artifact_dir``, an ordinary :class:`ArtifactStore`):

* :meth:`ObjectArtifactStore.put` writes the cache and uploads the object (again, when it is
  there already: an upload is idempotent and repairs an object damaged in the bucket);
* a read on a replica that does not hold the artifact yet downloads the whole object once,
  checks its sha256 and only then caches it, so the MQTT chunks a replica serves are verified
  even if the bucket was tampered with (the read fails with StorageError instead).

:meth:`ObjectArtifactStore.url_for` is what the desired-state signer writes into the signed
manifest (``artifact.url``): a presigned GET URL valid for ``presign_s`` (S3's limit is seven
days; a device that resumes later gets 403 and falls back to MQTT chunks), or the object's
address under ``public_url`` for a bucket (or CDN) devices may read without a signature.

boto3 is imported only when an object store is configured (the ``objstore`` extra).
Credentials come from boto3's usual chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
``~/.aws``, an instance role), never from the controller's configuration file.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from typing import Any

from controller.errors import NotFoundError, StorageError, ValidationError
from controller.models.artifact_store import ArtifactStore, check_sha256

log = logging.getLogger("edgewise.controller.objstore")

MAX_PRESIGN_S = 7 * 86400  # SigV4's longest validity
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")


@dataclass(frozen=True)
class StoreLocation:
    """Where artifacts live: ``s3://bucket/prefix`` parsed."""

    bucket: str
    prefix: str  # no leading or trailing slash; may be empty

    @classmethod
    def parse(cls, url: str) -> StoreLocation:
        scheme, sep, rest = url.partition("://")
        if not sep or scheme != "s3":
            raise ValidationError(f"artifact store {url!r} must look like s3://bucket/prefix")
        bucket, _, prefix = rest.partition("/")
        if not _BUCKET.fullmatch(bucket):
            raise ValidationError(f"artifact store {url!r}: {bucket!r} is not a valid bucket name "
                                  "(3-63 lowercase letters, digits, '.' or '-')")
        prefix = prefix.strip("/")
        if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
            raise ValidationError(f"artifact store {url!r}: the prefix has an empty, '.' or "
                                  "'..' part")
        return cls(bucket, prefix)

    def key(self, sha: str) -> str:
        check_sha256(sha)
        tail = f"{sha[:2]}/{sha}"
        return f"{self.prefix}/{tail}" if self.prefix else tail

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def _is_missing(exc: Exception) -> bool:
    response = getattr(exc, "response", None)
    code = str((response or {}).get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound")


class ObjectArtifactStore:
    """The registry's artifact store backed by a bucket; same methods as :class:`ArtifactStore`.

    ``client``: a boto3 S3 client (or anything with its ``put_object``, ``get_object``,
    ``head_object`` and ``generate_presigned_url``)."""

    def __init__(self, location: StoreLocation, client: Any, cache: ArtifactStore, *,
                 public_url: str | None = None, presign_s: float = MAX_PRESIGN_S) -> None:
        if not 1 <= presign_s <= MAX_PRESIGN_S:
            raise ValidationError(f"artifact_store_presign_s must be within [1, {MAX_PRESIGN_S}]"
                                  " seconds (S3 presigned URLs last seven days at most)")
        self.location = location
        self.client = client
        self.cache = cache
        self.public_url = public_url.rstrip("/") if public_url else None
        self.presign_s = int(presign_s)

    def __repr__(self) -> str:
        return f"ObjectArtifactStore({self.location})"

    # -- writes --------------------------------------------------------------------------------

    def put(self, data: bytes) -> str:
        sha = self.cache.put(data)
        try:
            self.client.put_object(Bucket=self.location.bucket, Key=self.location.key(sha),
                                   Body=data, ContentType="application/octet-stream",
                                   Metadata={"sha256": sha})
        except Exception as exc:  # botocore's errors: connection, credentials, ClientError
            raise StorageError(f"cannot upload artifact {sha[:12]} to {self.location}: "
                               f"{exc}") from exc
        return sha

    # -- reads: through the verified local cache -------------------------------------------------

    def _ensure_cached(self, sha: str) -> None:
        if self.cache.exists(sha):
            return
        data = self._download(sha)
        got = hashlib.sha256(data).hexdigest()
        if got != sha:
            raise StorageError(f"object {self.location.key(sha)} in {self.location.bucket} is not "
                               f"the artifact it is named after (its sha256 is {got[:12]}): "
                               "refused; upload the artifact again")
        self.cache.put(data)

    def _download(self, sha: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.location.bucket,
                                              Key=self.location.key(sha))
            return bytes(response["Body"].read())
        except Exception as exc:
            if _is_missing(exc):
                raise NotFoundError("artifact", sha) from None
            raise StorageError(f"cannot read artifact {sha[:12]} from {self.location}: "
                               f"{exc}") from exc

    def exists(self, sha: str) -> bool:
        if self.cache.exists(sha):
            return True
        try:
            self.client.head_object(Bucket=self.location.bucket, Key=self.location.key(sha))
        except Exception as exc:
            if _is_missing(exc):
                return False
            raise StorageError(f"cannot look up artifact {sha[:12]} in {self.location}: "
                               f"{exc}") from exc
        return True

    def get(self, sha: str) -> bytes:
        self._ensure_cached(sha)
        return self.cache.get(sha)

    def size(self, sha: str) -> int:
        self._ensure_cached(sha)
        return self.cache.size(sha)

    def open_range(self, sha: str, offset: int, length: int) -> bytes:
        self._ensure_cached(sha)
        return self.cache.open_range(sha, offset, length)

    def verify(self, sha: str) -> bool:
        """Whether the object in the bucket still hashes to ``sha`` (downloads it)."""
        return hashlib.sha256(self._download(sha)).hexdigest() == sha

    # -- where devices fetch it ------------------------------------------------------------------

    def url_for(self, sha: str) -> str | None:
        """The URL a device downloads ``sha`` from, or None when none can be made."""
        key = self.location.key(sha)
        if self.public_url is not None:
            return f"{self.public_url}/{sha[:2]}/{sha}"
        try:
            return str(self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.location.bucket, "Key": key},
                ExpiresIn=self.presign_s))
        except Exception as exc:  # no credentials to sign with, say: MQTT chunks only
            log.warning("cannot presign a URL for artifact %s: %s", sha[:12], exc)
            return None


def s3_client(endpoint: str | None, region: str | None) -> Any:
    """A boto3 S3 client for ``endpoint`` (None: AWS), path-style addressing (MinIO and most
    self-hosted stores need it), SigV4."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise ValidationError("an s3:// artifact store needs boto3 on the controller: "
                              "pip install 'edgewise[objstore]'") from None
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name=region or "us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                      retries={"max_attempts": 3, "mode": "standard"}))
