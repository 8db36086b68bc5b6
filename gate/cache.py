"""Cache of what the judge learned from a release's history, across processes and containers.

The seasonal model is learned once per deploy; `gate check` runs once per interval in a new
process (Jenkins, cron) and the Lambda in whichever container is free, so the reference is kept
under a key made of what determines it: the release, its deploy time, the policy, the scopes, the
origin of the data (Datadog's site or URL; CloudWatch's account, region and endpoint: never a
credential), and the code that learned it (`learned_by`: a digest of the gate's own modules and
the versions of the numeric libraries it fits with). A changed policy learns again, and so does an
upgraded gate: a reference learned by older code is never read by newer code, nor one learned from
another site or account. An origin that cannot be told (CloudWatch's account unknown) caches nothing. On the CLI the cache is a folder
(`GATE_CACHE_DIR`, default `.gate/cache`); in the Lambda it is the stack's bucket
(`GATE_REFERENCE_BUCKET`, under `references/`) behind the container's `/tmp`, so every container
of the stack reads what the first one learned (`LayeredCache`).

An entry is data, never code: the reference as JSON, with the key it was written for and its
SHA-256. Reading one can give a reference of the judge's types (`gate.judge.Reference`, each field
of its declared type, each array of its shape) or nothing: bytes that are truncated, damaged,
stored under another key, of an older format (the pickles of before), too large, or anything
else (whoever wrote them: the bucket's prefix is writable by more than this code) are relearned.
A cache that cannot be read or written is only slower, never wrong.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import types
import typing
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from gate.settings import REFERENCE_BUCKET, current_settings

log = logging.getLogger(__name__)

MAGIC = b"gate-reference/2\n"  # /1 were pickles: never read again
BUCKET_ENV = REFERENCE_BUCKET
PREFIX = "references/"
SUFFIX = ".reference"
# A reference's entry is kilobytes (the corpus': 13 kB median, 17 kB at most); one far larger is
# not one, and is not read whole into memory.
MAX_ENTRY_BYTES = 8 * 1024 * 1024
# The libraries a reference is fitted with (STL and its dependencies): a new version may fit otherwise.
FITTED_WITH = ("numpy", "scipy", "statsmodels", "pandas")


class Cache(Protocol):
    """Where an evaluation keeps what the judge learned; a miss is None."""

    def key(self, release: str, deployed_at: int, policy_json: str, scopes: tuple) -> str | None: ...

    def load(self, key: str | None) -> Any | None: ...

    def save(self, key: str | None, reference: Any) -> None: ...


# -- the key: what determines a reference ------------------------------------------------------


def reference_key(release: str, deployed_at: int, policy_json: str, scopes: tuple) -> str | None:
    """The key of a reference, or None (nothing cached) when its data's origin cannot be told.
    The origin (`gate.sources.data_origin`: Datadog's site or URL, CloudWatch's account, region
    and endpoint) is part of it: the same policy read from another site or account is other data,
    and a reference learned there must not be read here. (Entries keyed before it simply miss.)"""
    origin = _origin(policy_json)
    if origin is None:
        return None
    text = "\n".join([learned_by(), release, str(deployed_at), policy_json, repr(scopes), origin])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _origin(policy_json: str) -> str | None:
    from gate.sources import data_origin

    try:
        source = json.loads(policy_json).get("source") or {}
    except (ValueError, AttributeError):
        return None
    if not isinstance(source, dict):
        return None
    return data_origin(source.get("type"), source.get("options"))


@lru_cache(maxsize=1)
def learned_by() -> str:
    """The code a reference is learned by, as a digest: the gate's modules (which history is asked,
    how it is shaped, how it is learned: spread over analysis, sources, policy, judge and stats, so
    all of them) and the libraries it is fitted with. Computed once per process."""
    import gate

    return code_digest(Path(gate.__file__).parent)


def code_digest(package: Path) -> str:
    """A digest of a package's code as installed: its sources (`.py`), or its bytecode where the
    sources were removed (the Lambda's zip holds `.pyc` only); `__pycache__` is derived, left out."""
    digest = hashlib.sha256()
    for path in sorted(p for p in package.rglob("*") if p.suffix in (".py", ".pyc") and "__pycache__" not in p.parts):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    for library in FITTED_WITH:
        try:
            digest.update(f"{library}=={metadata.version(library)}\n".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{library} absent\n".encode())
    return digest.hexdigest()[:16]


# -- the entry: data, with its key and checksum ------------------------------------------------


class NotAReference(ValueError):
    """What an entry holds is not a reference of the judge's types."""


def pack(key: str, reference: Any) -> bytes:
    body = json.dumps(_data(reference), separators=(",", ":")).encode()
    return MAGIC + key.encode() + b"\n" + hashlib.sha256(body).hexdigest().encode() + b"\n" + body


def unpack(key: str, entry: bytes, where: str) -> Any | None:
    """The reference an entry holds, or None when it is not whole, not this key's, or not a reference."""
    head, _, rest = entry.partition(b"\n")
    stored_key, _, rest = rest.partition(b"\n")
    digest, _, body = rest.partition(b"\n")
    if head + b"\n" != MAGIC or stored_key != key.encode():
        log.warning("ignoring cached reference %s: not an entry of this format for this key", where)
        return None
    if hashlib.sha256(body).hexdigest().encode() != digest:
        log.warning("ignoring cached reference %s: damaged (its checksum does not match)", where)
        return None
    from gate.judge import Reference

    try:
        return _typed(json.loads(body), Reference, "reference")
    except Exception as e:  # noqa: BLE001 - not JSON, not a reference, nested too deep: only relearned
        log.warning("ignoring cached reference %s: %s", where, e)
        return None


def unpack_at_most(key: str, entry: bytes, where: str) -> Any | None:
    """`unpack`, of an entry read up to one byte past `MAX_ENTRY_BYTES`: longer, it is not one."""
    if len(entry) > MAX_ENTRY_BYTES:
        log.warning("ignoring cached reference %s: larger than %d bytes", where, MAX_ENTRY_BYTES)
        return None
    return unpack(key, entry, where)


def _data(value: Any) -> Any:
    """A reference as JSON's values: a dataclass as its fields, an array as nested lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _data(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot keep a {type(value).__name__} in a cached reference")


def _array_shapes() -> dict[tuple[type, str], tuple[int, ...]]:
    """The shape of every array a reference holds: one of another shape would fail the judge."""
    from gate.judge.reference import MetricReference
    from gate.stats.seasonal import BUCKETS_PER_DAY, SeasonalModel

    return {(SeasonalModel, "daily"): (BUCKETS_PER_DAY,), (SeasonalModel, "weekly"): (7, BUCKETS_PER_DAY),
            (SeasonalModel, "hourly_scale"): (24,), (MetricReference, "by_time_of_day"): (BUCKETS_PER_DAY,)}


def _typed(value: Any, kind: Any, where: str, shape: tuple[int, ...] | None = None) -> Any:
    """`value` (JSON's) as `kind` (a type annotation of the judge's dataclasses), or NotAReference:
    every dataclass built with exactly its fields, each of its declared type."""
    origin, arguments = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in arguments:
            return None
        for argument in (a for a in arguments if a is not type(None)):
            try:
                return _typed(value, argument, where, shape)
            except NotAReference:
                continue
        raise NotAReference(f"{where} is not {kind}")
    if origin is dict and isinstance(value, dict) and arguments[0] is str:
        return {k: _typed(v, arguments[1], f"{where}[{k!r}]") for k, v in value.items()}
    if dataclasses.is_dataclass(kind) and isinstance(value, dict):
        fields = {f.name for f in dataclasses.fields(kind)}
        if set(value) != fields:
            raise NotAReference(f"{where} has the fields {sorted(value)}, not {sorted(fields)}")
        hints, shapes = typing.get_type_hints(kind), _array_shapes()
        return kind(**{name: _typed(value[name], hints[name], f"{where}.{name}", shapes.get((kind, name)))
                       for name in fields})
    if kind is np.ndarray and shape is not None and isinstance(value, list):
        array = np.array(value, dtype=object)
        if array.shape != shape or not all(type(x) in (int, float) for x in array.flat):
            raise NotAReference(f"{where} is not an array of {shape} numbers")
        return array.astype(float)
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind in (int, str, bool) and type(value) is kind:
        return value
    raise NotAReference(f"{where} is not {getattr(kind, '__name__', kind)}")


class ReferenceCache:
    """A folder of entries: the CLI's cache, and the Lambda container's own (`/tmp`)."""

    key = staticmethod(reference_key)

    def __init__(self, folder: str | Path | None = None):
        self.folder = Path(folder or current_settings().cache_dir or ".gate/cache")

    def load(self, key: str | None) -> Any | None:
        if key is None:  # no key (the data's origin unknown): nothing cached
            return None
        path = self.folder / f"{key}{SUFFIX}"
        try:
            with open(path, "rb") as f:
                entry = f.read(MAX_ENTRY_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as e:
            log.warning("ignoring unreadable cached reference %s: %s", path, e)
            return None
        return unpack_at_most(key, entry, str(path))

    def save(self, key: str | None, reference: Any) -> None:
        if key is None:  # no key: nothing cached
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            # Write then rename: a process killed mid-write never leaves half an entry behind.
            with tempfile.NamedTemporaryFile("wb", dir=self.folder, delete=False, suffix=".tmp") as f:
                f.write(pack(key, reference))
            os.replace(f.name, self.folder / f"{key}{SUFFIX}")
        except Exception as e:  # noqa: BLE001
            log.warning("could not cache the reference in %s: %s", self.folder, e)


class S3ReferenceCache:
    """Entries in the stack's bucket, shared by every container: written once (the first
    container to learn a deploy's history writes it; a concurrent second write is refused by
    S3 and harmless), read by all. A damaged entry is overwritten by the next one to relearn it."""

    key = staticmethod(reference_key)

    def __init__(self, bucket: str, client: Any = None):
        from gate.aws import make_client

        self.bucket = bucket
        self.client = client or make_client("s3", raw_errors=True)
        self._damaged: set[str] = set()

    def _where(self, key: str) -> str:
        return f"{PREFIX}{key}"

    def load(self, key: str | None) -> Any | None:
        from botocore.exceptions import BotoCoreError, ClientError

        if key is None:
            return None
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._where(key))["Body"]
            with body:  # a larger object is not read to its end
                entry = body.read(MAX_ENTRY_BYTES + 1)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
                log.warning("ignoring the shared reference s3://%s/%s: %s", self.bucket, self._where(key), e)
            return None
        except BotoCoreError as e:
            log.warning("ignoring the shared reference s3://%s/%s: %s", self.bucket, self._where(key), e)
            return None
        reference = unpack_at_most(key, entry, f"s3://{self.bucket}/{self._where(key)}")
        if reference is None:
            self._damaged.add(key)
        return reference

    def save(self, key: str | None, reference: Any) -> None:
        if key is None:  # no key: nothing cached
            return
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

    def load(self, key: str | None) -> Any | None:
        if key is None:
            return None
        reference = self.near.load(key)
        if reference is None:
            reference = self.far.load(key)
            if reference is not None:
                self.near.save(key, reference)
        return reference

    def save(self, key: str | None, reference: Any) -> None:
        if key is None:  # no key: nothing cached
            return
        self.near.save(key, reference)
        self.far.save(key, reference)


def lambda_cache(folder: str) -> Cache:
    """The Lambda's cache: the container's folder, in front of the stack's bucket when
    `GATE_REFERENCE_BUCKET` names one."""
    local = ReferenceCache(folder)
    bucket = current_settings().reference_bucket
    return LayeredCache(local, S3ReferenceCache(bucket)) if bucket else local
