"""Object storage for evidence: S3 (any endpoint, Object Lock aware) or a local folder."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from lgpd_tasks.errors import EvidenceError, EvidenceTargetUnusable


@dataclass(frozen=True)
class StoredObject:
    """Where an object went and what the store says about its retention."""

    url: str
    sha256: str
    size: int
    lock_mode: str | None = None
    retain_until: str | None = None


class ObjectTarget(Protocol):
    """Somewhere evidence objects are written; ``url`` names it in records and manifests."""

    url: str

    def put(
        self, key: str, body: bytes, *, content_type: str, retain_until: datetime | None = None
    ) -> StoredObject: ...

    def get(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def object_lock(self) -> bool:
        """Whether the target keeps objects immutable (S3 Object Lock enabled on the bucket)."""
        ...


def open_target(url: str, *, endpoint_url: str | None = None) -> ObjectTarget:
    """``s3://bucket/prefix`` or ``file:///folder`` (a plain path is a folder too)."""
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise EvidenceTargetUnusable(f"{url!r}: an S3 URL needs a bucket (s3://BUCKET/PREFIX)")
        return S3Target(parsed.netloc, parsed.path.strip("/"), endpoint_url=endpoint_url)
    if parsed.scheme == "file":
        return FolderTarget(Path(unquote(parsed.path)))
    if parsed.scheme == "":
        return FolderTarget(Path(url))
    raise EvidenceTargetUnusable(
        f"{url!r}: unsupported target; use s3://BUCKET/PREFIX or file:///folder"
    )


class FolderTarget:
    """A local folder; objects are files written once (rewriting the same bytes is allowed)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.url = self.root.as_uri()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise EvidenceError(f"object key {key!r} leaves the folder {self.root}")
        return path

    def put(
        self, key: str, body: bytes, *, content_type: str, retain_until: datetime | None = None
    ) -> StoredObject:
        path = self._path(key)
        digest = hashlib.sha256(body).hexdigest()
        if path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise EvidenceError(f"{path} exists with other content; evidence is never rewritten")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".part")
            tmp.write_bytes(body)
            os.replace(tmp, path)
        except OSError as err:
            raise EvidenceError(f"cannot write {path}: {err.strerror or err}") from None
        return StoredObject(url=path.as_uri(), sha256=digest, size=len(body))

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except OSError as err:
            raise EvidenceError(f"cannot read {self._path(key)}: {err.strerror or err}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def object_lock(self) -> bool:
        return False


class S3Target:
    """An S3 bucket and prefix through boto3; Object Lock (COMPLIANCE) when the bucket has it."""

    def __init__(self, bucket: str, prefix: str, *, endpoint_url: str | None = None) -> None:
        try:
            import boto3
            from botocore.config import Config
        except ImportError:  # pragma: no cover - the s3 extra is missing
            raise EvidenceError(
                "S3 targets need the 's3' extra: pip install 'lgpd-tasks[s3]'"
            ) from None
        self.bucket = bucket
        self.prefix = prefix
        self.url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self.endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or None
        self._client: Any = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            config=Config(retries={"max_attempts": 5, "mode": "standard"}),
        )
        self._lock: bool | None = None

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def object_lock(self) -> bool:
        if self._lock is None:
            from botocore.exceptions import ClientError

            try:
                found = self._client.get_object_lock_configuration(Bucket=self.bucket)
                config = found.get("ObjectLockConfiguration", {})
                self._lock = config.get("ObjectLockEnabled") == "Enabled"
            except ClientError as err:
                code = err.response.get("Error", {}).get("Code", "")
                if code in {"ObjectLockConfigurationNotFoundError", "NotImplemented"}:
                    self._lock = False
                else:
                    raise self._error("cannot read the Object Lock configuration of", err) from None
        return self._lock

    def put(
        self, key: str, body: bytes, *, content_type: str, retain_until: datetime | None = None
    ) -> StoredObject:
        from botocore.exceptions import BotoCoreError, ClientError

        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self._key(key),
            "Body": body,
            "ContentType": content_type,
            "ChecksumAlgorithm": "SHA256",
        }
        locked = retain_until is not None and self.object_lock()
        if locked:
            args["ObjectLockMode"] = "COMPLIANCE"
            args["ObjectLockRetainUntilDate"] = retain_until
        try:
            self._client.put_object(**args)
        except (ClientError, BotoCoreError) as err:
            raise self._error(f"cannot write {self._key(key)} to", err) from None
        return StoredObject(
            url=f"s3://{self.bucket}/{self._key(key)}",
            sha256=hashlib.sha256(body).hexdigest(),
            size=len(body),
            lock_mode="COMPLIANCE" if locked else None,
            retain_until=retain_until.isoformat() if locked and retain_until else None,
        )

    def get(self, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            found = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
            return bytes(found["Body"].read())
        except (ClientError, BotoCoreError) as err:
            raise self._error(f"cannot read {self._key(key)} from", err) from None

    def exists(self, key: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise self._error(f"cannot read {self._key(key)} from", err) from None
        except BotoCoreError as err:
            raise self._error(f"cannot read {self._key(key)} from", err) from None
        return True

    def _error(self, what: str, err: Exception) -> EvidenceError:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return EvidenceError(f"{what} s3://{self.bucket}: {detail}")
