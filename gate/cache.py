"""Cache of what the judge learned from a release's history, across processes and containers.

The seasonal model is learned once per deploy; `gate check` runs once per interval in a new
process (Jenkins, cron) and the Lambda in whichever container is free, so the reference is kept
under a key made of the release, its deploy time, the policy and the scopes: a changed policy
learns again. On the CLI the cache is a folder (`GATE_CACHE_DIR`, default `.gate/cache`); in the
Lambda it is the stack's bucket (`GATE_REFERENCE_BUCKET`, under `references/`) behind the
container's `/tmp`, so every container of the stack reads what the first one learned
(`LayeredCache`).

An entry is the pickle with the key it was written for and its SHA-256: an entry that is
truncated, damaged, or stored under another key is never unpickled, only relearned. A cache that
cannot be read or written is only slower, never wrong.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

MAGIC = b"gate-reference/1\n"
BUCKET_ENV = "GATE_REFERENCE_BUCKET"
PREFIX = "references/"


class Cache(Protocol):
    """Where an evaluation keeps what the judge learned; a miss is None."""

    def key(self, release: str, deployed_at: int, policy_json: str, scopes: tuple) -> str: ...

    def load(self, key: str) -> Any | None: ...

    def save(self, key: str, reference: Any) -> None: ...


def reference_key(release: str, deployed_at: int, policy_json: str, scopes: tuple) -> str:
    text = "\n".join([release, str(deployed_at), policy_json, repr(scopes)])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def pack(key: str, reference: Any) -> bytes:
    body = pickle.dumps(reference, protocol=pickle.HIGHEST_PROTOCOL)
    return MAGIC + key.encode() + b"\n" + hashlib.sha256(body).hexdigest().encode() + b"\n" + body


def unpack(key: str, entry: bytes, where: str) -> Any | None:
    """The reference an entry holds, or None when it is not whole or not this key's."""
    head, _, rest = entry.partition(b"\n")
    stored_key, _, rest = rest.partition(b"\n")
    digest, _, body = rest.partition(b"\n")
    if head + b"\n" != MAGIC or stored_key != key.encode():
        log.warning("ignoring cached reference %s: not an entry for this key", where)
        return None
    if hashlib.sha256(body).hexdigest().encode() != digest:
        log.warning("ignoring cached reference %s: damaged (its checksum does not match)", where)
        return None
    try:
        return pickle.loads(body)
    except Exception as e:  # noqa: BLE001 - a reference of an older gate is relearned, not fatal
        log.warning("ignoring unreadable cached reference %s: %s", where, e)
        return None


class ReferenceCache:
    """A folder of entries: the CLI's cache, and the Lambda container's own (`/tmp`)."""

    key = staticmethod(reference_key)

    def __init__(self, folder: str | Path | None = None):
        self.folder = Path(folder or os.environ.get("GATE_CACHE_DIR") or ".gate/cache")

    def load(self, key: str) -> Any | None:
        path = self.folder / f"{key}.pickle"
        try:
            entry = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            log.warning("ignoring unreadable cached reference %s: %s", path, e)
            return None
        return unpack(key, entry, str(path))

    def save(self, key: str, reference: Any) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            # Write then rename: a process killed mid-write never leaves half an entry behind.
            with tempfile.NamedTemporaryFile("wb", dir=self.folder, delete=False, suffix=".tmp") as f:
                f.write(pack(key, reference))
            os.replace(f.name, self.folder / f"{key}.pickle")
        except Exception as e:  # noqa: BLE001
            log.warning("could not cache the reference in %s: %s", self.folder, e)


class S3ReferenceCache:
    """Entries in the stack's bucket, shared by every container: written once (the first
    container to learn a deploy's history writes it; a concurrent second write is refused by
    S3 and harmless), read by all. A damaged entry is overwritten by the next one to relearn it."""

    key = staticmethod(reference_key)

    def __init__(self, bucket: str, client: Any = None):
        import boto3

        self.bucket = bucket
        self.client = client or boto3.client("s3")
        self._damaged: set[str] = set()

    def _where(self, key: str) -> str:
        return f"{PREFIX}{key}"

    def load(self, key: str) -> Any | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            entry = self.client.get_object(Bucket=self.bucket, Key=self._where(key))["Body"].read()
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
                log.warning("ignoring the shared reference s3://%s/%s: %s", self.bucket, self._where(key), e)
            return None
        except BotoCoreError as e:
            log.warning("ignoring the shared reference s3://%s/%s: %s", self.bucket, self._where(key), e)
            return None
        reference = unpack(key, entry, f"s3://{self.bucket}/{self._where(key)}")
        if reference is None:
            self._damaged.add(key)
        return reference

    def save(self, key: str, reference: Any) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        # Written once: only a damaged entry is replaced.
        once = {} if key in self._damaged else {"IfNoneMatch": "*"}
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._where(key), Body=pack(key, reference), **once)
            self._damaged.discard(key)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "ConditionalRequestConflict"):
                log.warning("could not share the reference in s3://%s: %s", self.bucket, e)
        except BotoCoreError as e:
            log.warning("could not share the reference in s3://%s: %s", self.bucket, e)


class LayeredCache:
    """A near cache (the container's folder) in front of a far one (the stack's bucket): a warm
    container reads its own copy; a new one reads the bucket once, then its own copy."""

    key = staticmethod(reference_key)

    def __init__(self, near: Cache, far: Cache):
        self.near, self.far = near, far

    def load(self, key: str) -> Any | None:
        reference = self.near.load(key)
        if reference is None:
            reference = self.far.load(key)
            if reference is not None:
                self.near.save(key, reference)
        return reference

    def save(self, key: str, reference: Any) -> None:
        self.near.save(key, reference)
        self.far.save(key, reference)


def lambda_cache(folder: str) -> Cache:
    """The Lambda's cache: the container's folder, in front of the stack's bucket when
    `GATE_REFERENCE_BUCKET` names one."""
    local = ReferenceCache(folder)
    bucket = os.environ.get(BUCKET_ENV)
    return LayeredCache(local, S3ReferenceCache(bucket)) if bucket else local
