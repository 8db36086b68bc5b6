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
import threading
import time
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

import gate
import gate.cache
from gate.cache import MAGIC, MAX_ENTRY_BYTES, ReferenceCache, code_digest, pack, reference_key
from gate.judge import MetricReference, Reference
from gate.stats.seasonal import DAY, fit_seasonal
from tests.moto_server import moto_server  # noqa: F401  (fixture)

MONDAY = 1_700_438_400  # 2023-11-20 00:00 UTC
# A policy whose data its policy names (the simulated demo): the key needs nothing from the environment.
SIMULATED_POLICY_JSON = '{"source": {"type": "simulate"}}'


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
    key = reference_key("web-1.0", MONDAY, SIMULATED_POLICY_JSON, ("c", "b"))
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
    key = cache.key("web-1.0", MONDAY, SIMULATED_POLICY_JSON, ("c", "b"))
    stored_entry(cache, key).write_bytes(HOSTILE[kind](key, marker))
    assert cache.load(key) is None
    assert not marker.exists()
    cache.save(key, learned())
    assert same(learned(), cache.load(key)) is None


def test_the_key_holds_the_code_that_learned_the_reference(monkeypatch):
    """A reference learned by an older gate was read by every newer one (the key was the release,
    the deploy, the policy and the scopes): an upgrade that learns otherwise judged against the
    old learning until the entry expired (30 days)."""
    before = reference_key("web-1.0", MONDAY, SIMULATED_POLICY_JSON, ("c", "b"))
    assert gate.cache.learned_by() == code_digest(Path(gate.__file__).parent)
    monkeypatch.setattr(gate.cache, "learned_by", lambda: "an upgraded gate")
    assert reference_key("web-1.0", MONDAY, SIMULATED_POLICY_JSON, ("c", "b")) != before


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


# -- the key names where the data comes from (review, sources) ---------------------------------

DATADOG_POLICY = json.dumps({"name": "web", "source": {"type": "datadog", "options": {}}})
CLOUDWATCH_POLICY = json.dumps({"name": "web", "source": {"type": "cloudwatch", "options": {}}})


def key_of(policy_json: str) -> str | None:
    return reference_key("web-1.0", MONDAY, policy_json, ("c", "b"))


def test_the_key_names_the_datadog_site_or_url_and_never_its_keys(monkeypatch):
    """A reference learned from one Datadog site (or base URL) was read for a deploy whose data
    comes from another: the key held the release, the deploy, the policy and the scopes only."""
    for name in ("DD_SITE", "GATE_DATADOG_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DD_API_KEY", "a" * 32)
    monkeypatch.setenv("DD_APP_KEY", "b" * 40)
    unset = key_of(DATADOG_POLICY)
    by_site = {}
    for site in ("datadoghq.com", "datadoghq.eu", "us5.datadoghq.com"):
        monkeypatch.setenv("DD_SITE", site)
        by_site[site] = key_of(DATADOG_POLICY)
    assert by_site["datadoghq.com"] == unset  # Datadog's default site, named or not
    assert len(set(by_site.values())) == 3
    by_url = []
    for url in ("http://127.0.0.1:8126", "http://127.0.0.1:8127/"):
        monkeypatch.setenv("GATE_DATADOG_URL", url)  # the URL wins over the site, as in the client
        by_url.append(key_of(DATADOG_POLICY))
    assert len({*by_url, *by_site.values()}) == 5
    # The keys are no part of it: the same origin read with other keys reads the same entry.
    monkeypatch.setenv("DD_API_KEY", "c" * 32)
    monkeypatch.setenv("DD_APP_KEY", "d" * 40)
    assert key_of(DATADOG_POLICY) == by_url[-1]

def test_only_the_simulated_demo_is_keyed_without_an_origin(tmp_path):
    """Review (sources): a source type missing from ORIGINS was keyed with an empty origin, as if
    its policy named all its data: a source added later (or a policy with no source) cached a
    reference that another account, site or endpoint would read. Only `simulate`, whose policy
    names its scenario, is (a replay is keyed by what its case folder holds); any other type caches
    nothing."""
    from gate.sources import data_origin

    assert data_origin("simulate", {}) == ""
    assert key_of(json.dumps({"source": {"type": "simulate"}})) is not None
    assert data_origin("replay", {}) is None and data_origin("replay", {"case": str(tmp_path / "none")}) is None
    cache = ReferenceCache(tmp_path)
    for policy_json in ('{"source": {"type": "prometheus", "options": {"url": "http://127.0.0.1:9090"}}}',
                        '{"source": {"type": 7}}', '{"source": {}}', "{}", "[]", "not json"):
        assert key_of(policy_json) is None, policy_json
        key = cache.key("web-1.0", MONDAY, policy_json, ("c", "b"))
        cache.save(key, learned())
        assert cache.load(key) is None
    assert list(tmp_path.iterdir()) == []


def test_an_entry_keyed_before_the_origin_was_in_the_key_simply_misses(tmp_path, monkeypatch):
    monkeypatch.setenv("DD_SITE", "datadoghq.eu")
    monkeypatch.delenv("GATE_DATADOG_URL", raising=False)
    cache = ReferenceCache(tmp_path)
    text = "\n".join([gate.cache.learned_by(), "web-1.0", str(MONDAY), DATADOG_POLICY, repr(("c", "b"))])
    old = hashlib.sha256(text.encode()).hexdigest()[:32]  # the key as it was made before
    (tmp_path / f"{old}.reference").write_bytes(pack(old, learned()))
    new = cache.key("web-1.0", MONDAY, DATADOG_POLICY, ("c", "b"))
    assert new != old and cache.load(new) is None
    (tmp_path / f"{new}.reference").write_bytes(pack(old, learned()))  # an old entry under the new name
    assert cache.load(new) is None
    cache.save(new, learned())
    assert same(learned(), cache.load(new)) is None


@pytest.fixture
def aws_env(moto_server, monkeypatch):  # noqa: F811
    """The moto server's environment, boto3's default session made anew before and after (it
    keeps the credentials it first found)."""
    import boto3

    import gate.sources.cloudwatch

    boto3.setup_default_session()
    monkeypatch.setattr(gate.sources.cloudwatch, "_ACCOUNTS", {}, raising=False)  # the accounts this process remembers
    yield moto_server
    monkeypatch.undo()
    boto3.setup_default_session()


def test_the_key_names_the_cloudwatch_account_region_and_endpoint(aws_env, monkeypatch):
    """The same policy read in another region (the environment's, the policy naming none), through
    another endpoint, or with another account's credentials is other data: another key."""
    import boto3
    from moto.server import ThreadedMotoServer

    here = key_of(CLOUDWATCH_POLICY)
    assert here is not None and key_of(CLOUDWATCH_POLICY) == here  # the same origin reads its entry
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    other_region = key_of(CLOUDWATCH_POLICY)
    named_region = key_of(json.dumps({"name": "web", "source": {"type": "cloudwatch",
                                                                 "options": {"region": "us-east-1"}}}))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    assert key_of(CLOUDWATCH_POLICY) == here
    other = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    other.start()
    try:
        host, port = other.get_host_and_port()
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        other_endpoint = key_of(CLOUDWATCH_POLICY)
    finally:
        other.stop()
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_env.url)
    role = aws_env.client("sts").assume_role(RoleArn="arn:aws:iam::111111111111:role/gate",
                                             RoleSessionName="gate-test")["Credentials"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", role["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", role["SecretAccessKey"])
    monkeypatch.setenv("AWS_SESSION_TOKEN", role["SessionToken"])
    boto3.setup_default_session()
    other_account = key_of(CLOUDWATCH_POLICY)
    keys = [here, other_region, named_region, other_endpoint, other_account]
    assert None not in keys and len(set(keys)) == 5, keys


def test_a_cloudwatch_account_that_cannot_be_told_caches_nothing(aws_env, monkeypatch, tmp_path):
    """STS unreachable: no key; the reference is relearned (only slower), never another's read."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed}")
    cache = ReferenceCache(tmp_path)
    key = cache.key("web-1.0", MONDAY, CLOUDWATCH_POLICY, ("c", "b"))
    assert key is None and cache.load(key) is None
    cache.save(key, learned())
    assert list(tmp_path.iterdir()) == []


def sts_calls(counted: list) -> None:
    """Count the GetCallerIdentity calls of the clients boto3's default session makes from now on."""
    import boto3

    boto3.DEFAULT_SESSION.events.register("before-call.sts.GetCallerIdentity",
                                          lambda **_: counted.append(1))


def test_the_cloudwatch_account_is_asked_once_per_region_endpoint_and_access_key(aws_env, monkeypatch):
    """Review (sources): STS GetCallerIdentity was called on every look and never remembered (a
    slow STS cost each look its time). Now once per process for each region, endpoint and access
    key id (never the secret); rotated credentials (a new key id) cost one more call."""
    import boto3

    import gate.sources.cloudwatch as cloudwatch

    counted: list = []
    sts_calls(counted)
    here = key_of(CLOUDWATCH_POLICY)
    assert here is not None and [key_of(CLOUDWATCH_POLICY) for _ in range(3)] == [here] * 3
    assert len(counted) == 1
    elsewhere = key_of(json.dumps({"name": "web", "source": {"type": "cloudwatch",
                                                              "options": {"region": "eu-west-1"}}}))
    assert elsewhere not in (None, here) and len(counted) == 2
    role = aws_env.client("sts").assume_role(RoleArn="arn:aws:iam::111111111111:role/gate",
                                             RoleSessionName="gate-test")["Credentials"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", role["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", role["SecretAccessKey"])
    monkeypatch.setenv("AWS_SESSION_TOKEN", role["SessionToken"])
    boto3.setup_default_session()  # new credentials, as a new process finds them
    sts_calls(counted)
    assumed = key_of(CLOUDWATCH_POLICY)
    assert assumed not in (None, here) and key_of(CLOUDWATCH_POLICY) == assumed and len(counted) == 3
    remembered = repr(cloudwatch._ACCOUNTS)
    assert role["AccessKeyId"] in remembered and role["SecretAccessKey"] not in remembered
    assert role["SessionToken"] not in remembered


# STS's answer to GetCallerIdentity for account 210987654321.
STS_ANSWER = (b'<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
              b"<GetCallerIdentityResult><Arn>arn:aws:iam::210987654321:user/gate</Arn>"
              b"<UserId>AIDAGATE</UserId><Account>210987654321</Account></GetCallerIdentityResult>"
              b"<ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></GetCallerIdentityResponse>")


class _SlowSts(BaseHTTPRequestHandler):
    """STS that answers GetCallerIdentity (account 210987654321) after `delay` seconds."""

    delay = 0.0
    calls: list = []

    def do_POST(self):  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.calls.append(1)
        time.sleep(self.delay)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(STS_ANSWER)))
            self.end_headers()
            self.send_body(STS_ANSWER)
        except OSError:  # the caller gave up waiting
            pass

    def send_body(self, body: bytes) -> None:
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("delay", [0.0, 6.0])
def test_a_slow_sts_costs_a_look_a_short_budget_and_caches_nothing(aws_env, monkeypatch, delay):
    """Review (sources): the account's STS call had the gate's 5 s connect / 20 s read timeouts
    (a silent STS held each look ~25 s, and caching nothing). STS names the cache's entries only:
    it gets 1 s to connect and 2 s to answer, once (no retry); an answer later than that is an
    account that cannot be told: no key, nothing cached. Answered at once, the account is kept."""
    _SlowSts.delay, _SlowSts.calls = delay, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowSts)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_port}")
        key = key_of(CLOUDWATCH_POLICY)
    finally:
        server.shutdown()
        server.server_close()
    assert len(_SlowSts.calls) == 1  # asked once: no retry
    if delay:
        assert key is None
    else:
        import gate.sources.cloudwatch as cloudwatch

        assert key is not None and "210987654321" in repr(cloudwatch._ACCOUNTS)


class _TricklingSts(_SlowSts):
    """STS that answers GetCallerIdentity in full, a few bytes at a time, each well within the
    read timeout: the whole answer takes far longer than the STS budget."""

    delay = 0.0  # its own: never a slow answer left by _SlowSts's parameters

    def send_body(self, body: bytes) -> None:
        self.wfile.flush()
        for i in range(0, len(body), 16):
            time.sleep(0.3)
            self.wfile.write(body[i:i + 16])
            self.wfile.flush()


def test_an_sts_answer_trickled_past_the_budget_tells_no_account(aws_env, monkeypatch, caplog):
    """Review (sources, second): the 1 s connect / 2 s read timeouts bound each socket read, not
    the call: a valid answer trickled a few bytes under each read timeout held a look 23 s. The
    call now has one deadline in all: past it, no account (no key, nothing cached), a warning."""
    import gate.sources.cloudwatch as cloudwatch

    _TricklingSts.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TricklingSts)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_port}")
        with caplog.at_level("WARNING", logger="gate.sources.cloudwatch"):
            key = key_of(CLOUDWATCH_POLICY)
    finally:
        server.shutdown()
        server.server_close()
    assert _TricklingSts.calls == [1]
    assert key is None and cloudwatch._ACCOUNTS == {}
    assert "the reference is not cached: CloudWatch's account cannot be told" in caplog.text


def test_a_case_re_recorded_in_place_is_another_origin(tmp_path, corpus):
    """Review (sources, second): a replay was keyed by its `case` path alone, so a case recorded
    again in the same folder read the reference learned from its old recording. The key holds what
    the folder's files are (size and modification time of case.json and series.csv.gz)."""
    import shutil

    case = tmp_path / "case"
    shutil.copytree(corpus / "k1m-error-rate-010", case)
    policy_json = json.dumps({"name": "web", "source": {"type": "replay", "options": {"case": str(case)}}})
    cache = ReferenceCache(tmp_path / "cache")
    before = cache.key("web-1.0", MONDAY, policy_json, ("c", "b"))
    assert before is not None and cache.key("web-1.0", MONDAY, policy_json, ("c", "b")) == before
    cache.save(before, learned())
    for name, other in (("series.csv.gz", "k1m-latency-shift-006"), ("case.json", "k1m-latency-shift-006")):
        recorded = (corpus / other / name).read_bytes()
        assert recorded != (case / name).read_bytes()
        (case / name).write_bytes(recorded)  # recorded again, in place
        after = cache.key("web-1.0", MONDAY, policy_json, ("c", "b"))
        assert after not in (None, before) and cache.load(after) is None
        before = after
    (case / "series.csv.gz").unlink()
    assert cache.key("web-1.0", MONDAY, policy_json, ("c", "b")) is None
