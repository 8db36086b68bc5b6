"""The reference cache's entries (gate/cache.py): data only, keyed by the code that learned them.

An entry is read from a folder (the CLI, the Lambda's /tmp) or the stack's bucket, which more than
this code can write: whatever its bytes, reading it gives a reference of the judge's types or
nothing (relearned), never runs code. Through the Lambda and S3: tests/test_scale.py."""

from __future__ import annotations

import compileall
import dataclasses
import hashlib
import json
import pickle
import shutil
import struct
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

import gate
import gate.cache
from gate.cache import MAGIC, MAX_ENTRY_BYTES, ReferenceCache, code_digest, pack, reference_key
from gate.judge import MetricReference, Reference
from gate.stats.seasonal import DAY, fit_seasonal

MONDAY = 1_700_438_400  # 2023-11-20 00:00 UTC


@lru_cache(maxsize=1)
def learned() -> Reference:
    """A reference with every kind of field: a seasonal model with daily and weekly profiles (15
    days of history), one without (a glitched count), None and NaN values."""
    from gate.stats.seasonal import BUCKETS_PER_DAY

    t = np.arange(MONDAY, MONDAY + 15 * DAY, 300)
    rng = np.random.default_rng(7)
    x = 100 + 20 * np.sin(2 * np.pi * t / DAY) + 5 * (t // DAY % 7 == 5) + rng.normal(0, 3, len(t))
    seasonal = fit_seasonal(t, x, 300)
    assert seasonal is not None and seasonal.daily is not None and seasonal.weekly is not None
    return Reference({
        "latency": MetricReference(seasonal, 0.031, 0.004, None, 0.25, 0.01, None),
        "errors": MetricReference(None, float("nan"), None, 0.0021, 0.0, 0.0, "glitched history",
                                  by_time_of_day=np.linspace(0.0, 3.5, BUCKETS_PER_DAY)),
    }, len(t))


def same(a, b, where="reference") -> str | None:
    """Where `a` and `b` differ in type or in any bit, or None."""
    if type(a) is not type(b):
        return f"{where}: {type(a).__name__} is {type(b).__name__}"
    if dataclasses.is_dataclass(a):
        return next((d for f in dataclasses.fields(a)
                     if (d := same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}"))), None)
    if isinstance(a, dict):
        if a.keys() != b.keys():
            return f"{where}: keys {sorted(a)} are {sorted(b)}"
        return next((d for k in a if (d := same(a[k], b[k], f"{where}[{k}]"))), None)
    if isinstance(a, np.ndarray):
        return None if (a.dtype, a.shape, a.tobytes()) == (b.dtype, b.shape, b.tobytes()) else f"{where}: array"
    if isinstance(a, float):
        return None if struct.pack("d", a) == struct.pack("d", b) else f"{where}: {a!r} is {b!r}"
    return None if a == b else f"{where}: {a!r} is {b!r}"


def entry(key: str, body: bytes, magic: bytes = MAGIC) -> bytes:
    """An entry as the cache writes it (its checksum right) around any body."""
    return magic + key.encode() + b"\n" + hashlib.sha256(body).hexdigest().encode() + b"\n" + body


class RunsCode:
    """Unpickled, it creates the file `marker`: what a pickle under references/ could do in the Lambda."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def stored_entry(cache: ReferenceCache, key: str) -> Path:
    """The file the cache keeps `key`'s entry in (whatever it names it)."""
    cache.save(key, learned())
    [path] = [p for p in cache.folder.iterdir() if key in p.name]
    return path


def test_a_reference_comes_back_from_its_entry_bit_for_bit():
    reference = learned()
    key = reference_key("web-1.0", MONDAY, "{}", ("c", "b"))
    back = gate.cache.unpack(key, pack(key, reference), "here")
    assert back is not None and same(reference, back) is None


def test_a_reference_the_judge_learned_comes_back_bit_for_bit(corpus):
    """As the judge learns them today (579 corpus references measured: docs/scale.md): every value
    of the type it had (a numpy scalar read back as a float would divide by zero otherwise)."""
    from gate.analysis import Analysis
    from gate.sources.replay import ReplaySource, load_case

    case = load_case(corpus / "k1m-aa-039")
    policy = case.policy()
    reference = Analysis(policy, ReplaySource(case), case.id, case.deployed_at, canary="canary",
                         baseline="baseline").reference()
    assert reference.metrics
    assert same(reference, gate.cache.unpack("k", pack("k", reference), "here")) is None


def forged(key: str, change) -> bytes:
    """The entry of a learned reference, its data changed by `change`, its checksum made right again."""
    data = json.loads(pack(key, learned()).split(b"\n", 3)[3])
    change(data)
    return entry(key, json.dumps(data).encode())


def _set(path: str, value):
    def change(data):
        *parents, last = path.split("/")
        for name in parents:
            data = data[name]
        data[last] = value
    return change


HOSTILE = {
    "an older gate's pickle that runs code": lambda key, marker: entry(
        key, pickle.dumps(RunsCode(marker)), magic=b"gate-reference/1\n"),
    "a pickle that runs code, in this format": lambda key, marker: entry(key, pickle.dumps(RunsCode(marker))),
    "empty": lambda key, marker: b"",
    "not JSON": lambda key, marker: entry(key, b"\x80\x05garbage"),
    "JSON nested past the recursion limit": lambda key, marker: entry(key, b"[" * 200_000),
    "a number too long for a float": lambda key, marker: forged(key, _set("metrics/latency/noise", 10**400)),
    "a field of another type": lambda key, marker: forged(key, _set("history_points", "4320")),
    "a string among an array's numbers": lambda key, marker: forged(
        key, _set("metrics/latency/seasonal/daily", ["1"] * 96)),
    "an array of another shape": lambda key, marker: forged(key, _set("metrics/latency/seasonal/daily", [1.0] * 5)),
    "a ragged array": lambda key, marker: forged(
        key, _set("metrics/latency/seasonal/weekly", [[1.0] * 96] * 6 + [[1.0]])),
    "a field missing": lambda key, marker: forged(key, lambda data: data["metrics"]["errors"].pop("rate")),
    "a field more": lambda key, marker: forged(key, _set("metrics/errors/injected", 1)),
    "None where a number must be": lambda key, marker: forged(key, _set("metrics/errors/offset", None)),
    "a list for the metrics": lambda key, marker: forged(key, _set("metrics", [])),
    "larger than an entry can be": lambda key, marker: entry(key, b" " * MAX_ENTRY_BYTES + b"{}"),
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_whatever_an_entry_holds_it_gives_a_reference_or_nothing_and_runs_no_code(tmp_path, kind):
    """Entries were pickles: whoever could write the bucket's references/ (or the container's
    /tmp) ran code in the Lambda when one was read. Now an entry is JSON read into the judge's
    types: anything else (an older gate's pickle, a forged field, a shape the judge would fail
    on) is missing, relearned, and rewritten whole."""
    marker = tmp_path / "code-ran"
    cache = ReferenceCache(tmp_path / "cache")
    key = cache.key("web-1.0", MONDAY, "{}", ("c", "b"))
    stored_entry(cache, key).write_bytes(HOSTILE[kind](key, marker))
    assert cache.load(key) is None
    assert not marker.exists()
    cache.save(key, learned())
    assert same(learned(), cache.load(key)) is None


def test_the_key_holds_the_code_that_learned_the_reference(monkeypatch):
    """A reference learned by an older gate was read by every newer one (the key was the release,
    the deploy, the policy and the scopes): an upgrade that learns otherwise judged against the
    old learning until the entry expired (30 days)."""
    before = reference_key("web-1.0", MONDAY, "{}", ("c", "b"))
    assert gate.cache.learned_by() == code_digest(Path(gate.__file__).parent)
    monkeypatch.setattr(gate.cache, "learned_by", lambda: "an upgraded gate")
    assert reference_key("web-1.0", MONDAY, "{}", ("c", "b")) != before


def test_the_code_digest_changes_with_any_module_as_installed(tmp_path):
    """Sources in a checkout; bytecode only in the Lambda's zip (lambda/build.sh removes the .py)."""
    package = tmp_path / "gate"
    shutil.copytree(Path(gate.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    sources = code_digest(package)
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "judge.cpython-312.pyc").write_bytes(b"derived from judge.py")
    assert code_digest(package) == sources
    seasonal = package / "stats" / "seasonal.py"
    seasonal.write_text(seasonal.read_text().replace("BUCKETS_PER_DAY = 96", "BUCKETS_PER_DAY = 48"))
    assert code_digest(package) != sources

    assert compileall.compile_dir(package, quiet=1, legacy=True)
    for path in package.rglob("*.py"):
        path.unlink()
    shutil.rmtree(package / "__pycache__")
    bytecode = code_digest(package)
    assert bytecode not in (sources, code_digest(tmp_path / "empty"))
    (package / "judge" / "classify.pyc").write_bytes((package / "judge" / "classify.pyc").read_bytes() + b"\0")
    assert code_digest(package) != bytecode


def test_a_test_s_references_are_its_own_never_the_working_tree_s(tmp_path):
    """tests/conftest.py: before, a test's judge learned into the working tree's .gate/cache, and a
    later test (or run) of the same key read that reference instead of fetching its history."""
    assert ReferenceCache().folder == tmp_path / "cache"


def test_without_gate_cache_dir_the_cli_s_cache_is_dot_gate_cache_of_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("GATE_CACHE_DIR", "")
    monkeypatch.chdir(tmp_path)
    cache = ReferenceCache()
    assert cache.folder == Path(".gate/cache")
    cache.save("k" * 64, learned())
    assert (tmp_path / ".gate" / "cache").is_dir() and cache.load("k" * 64) is not None
