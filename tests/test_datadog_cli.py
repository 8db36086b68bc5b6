"""`gate check` (and `--watch`) end to end: the real console script, the official Datadog client,
real HTTP to the fake Datadog API serving a corpus case as if it were happening now."""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from gate.sources.replay import load_case
from tests.conftest import run_gate
from tests.fake_datadog import API_KEY, APP_KEY, FakeDatadog

ROOT = Path(__file__).resolve().parents[1]
RELEASE = "web-1.4.2"
HISTORY_CHUNKS = 7  # 7 days of minutes, 1440 per request


@contextmanager
def live(corpus: Path, name: str, ahead: int = 120):
    """Serve the case shifted so that its moment `end_at - ahead` is now."""
    case = load_case(corpus / name)
    offset = int(time.time()) // 60 * 60 - (case.end_at - ahead)
    with FakeDatadog(case, offset=offset) as fake:
        fake.deployed_at = case.deployed_at + offset
        yield fake


def write_policy(tmp_path: Path, **options) -> Path:
    policy = yaml.safe_load((ROOT / "examples" / "datadog.yaml").read_text())
    policy["source"]["options"] = {"timeout": 1, "retry_budget": 2, **options}
    path = tmp_path / "datadog.yaml"
    path.write_text(yaml.safe_dump(policy))
    return path


def gate_check(fake, tmp_path, *extra, env=None, policy: Path | None = None, **options):
    """`gate check` over the fake Datadog, with the example policy (`options`: its source's) or `policy`."""
    return run_gate(
        "check", RELEASE, "--policy", policy or write_policy(tmp_path, **options),
        "--deployed-at", str(fake.deployed_at), "--store", tmp_path / "gate.sqlite", "--json", *extra,
        env={"GATE_DATADOG_URL": fake.url, "DD_API_KEY": API_KEY, "DD_APP_KEY": APP_KEY,
             "SLACK_WEBHOOK_URL": "", **(env or {})},
        cwd=tmp_path, timeout=120,
    )


def evaluations(tmp_path: Path) -> list[dict]:
    with sqlite3.connect(tmp_path / "gate.sqlite") as db:
        return [dict(zip(("verdict", "recorded_at"), row)) for row in
                db.execute("SELECT verdict, recorded_at FROM evaluations WHERE release = ?", (RELEASE,))]


def assert_no_secret(result, tmp_path: Path, *secrets: str) -> None:
    stored = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    for secret in secrets or (API_KEY, APP_KEY):
        assert secret not in result.stdout and secret not in result.stderr
        assert secret.encode() not in stored


def window_requests(fake, tmp_path: Path) -> list[dict]:
    """Requests for the canary window made by the evaluations (the others read the history
    before the deploy, or the window again for the report of a decisive verdict)."""
    last = max(e["recorded_at"] for e in evaluations(tmp_path))
    return [r for r in fake.timeseries_requests()
            if r["to"] > fake.deployed_at * 1000 and r["status"] == 200 and r["at"] <= last]


# A clean canary is shown within tolerance by the end of its lifetime: the A/A cases are judged
# there (ahead=0), the dead canary well before.


def test_an_aa_canary_passes_with_one_request_for_its_window(corpus, tmp_path):
    with live(corpus, "k1m-aa-039", ahead=0) as fake:
        result = gate_check(fake, tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["verdict"] == "pass"
    requests = fake.timeseries_requests()
    assert len(window_requests(fake, tmp_path)) == 1 and len(evaluations(tmp_path)) == 1
    assert len([r for r in requests if r["to"] <= fake.deployed_at * 1000]) == HISTORY_CHUNKS
    assert all(r["status"] == 200 and r["interval"] == 60_000 for r in requests)
    # The window asks both groups; the history the baseline's alone, the one the judge learns from.
    assert [len(r["queries"]) for r in requests] == [5] * HISTORY_CHUNKS + [10]
    # The window stops at the last complete minute.
    assert window_requests(fake, tmp_path)[0]["to"] <= int(time.time()) // 60 * 60 * 1000
    assert_no_secret(result, tmp_path)


def test_a_dead_canary_fails_and_the_verdict_is_posted_as_an_event(corpus, tmp_path):
    with live(corpus, "k1m-canary-down-012") as fake:
        result = gate_check(fake, tmp_path, events=True)
    assert result.returncode == 1, result.stderr
    verdict = json.loads(result.stdout)
    assert verdict["verdict"] == "fail" and verdict["release"] == RELEASE
    [event] = fake.events
    assert event["alert_type"] == "error" and f"release:{RELEASE}" in event["tags"]


def test_watch_rides_out_a_429_and_a_5xx_then_fails_a_regression(corpus, tmp_path):
    with live(corpus, "k1m-canary-down-012") as fake:
        fake.faults, fake.reset_after = ["429", "503"], 1
        started = time.monotonic()
        result = gate_check(fake, tmp_path, "--watch", retry_budget=5)
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)["verdict"] == "fail"
    statuses = [r["status"] for r in fake.timeseries_requests()]
    assert statuses[:3] == [429, 503, 200]
    assert len(window_requests(fake, tmp_path)) == len(evaluations(tmp_path))  # one request per evaluation
    assert time.monotonic() - started >= 1  # the reset was waited for
    assert_no_secret(result, tmp_path)


def test_watch_passes_an_aa_canary(corpus, tmp_path):
    with live(corpus, "k1m-aa-039", ahead=0) as fake:
        result = gate_check(fake, tmp_path, "--watch")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["verdict"] == "pass"
    assert len(window_requests(fake, tmp_path)) == len(evaluations(tmp_path)) >= 1


@pytest.mark.parametrize(
    "fault, message",
    [("500", "server error 500"), ("slow", "no answer within 1s (timeout)"), ("malformed", "malformed answer")],
)
def test_a_persistent_fault_is_could_not_judge(corpus, tmp_path, fault, message):
    with live(corpus, "k1m-aa-039") as fake:
        fake.fault, fake.slow_seconds = fault, 3
        # 3 s: a retry fits after a 1 s timeout and its 0.5 s wait, however late a busy machine wakes
        result = gate_check(fake, tmp_path, retry_budget=3)
    assert result.returncode == 4
    assert result.stdout == ""  # no verdict at all, let alone a pass
    *retries, last = result.stderr.strip().splitlines()
    assert last.startswith("error: Datadog: ") and message in last and "could not judge" in last
    assert retries and all("retrying in" in line for line in retries)  # warnings on the way
    assert "Traceback" not in result.stderr
    # Retried, and no more than the 3 s budget allows (backoff 0.5 s, 1 s, then 2 s does not fit):
    # the bound holds however slow the machine, as a slower machine only sends fewer.
    assert 2 <= len(fake.timeseries_requests()) <= 3
    assert_no_secret(result, tmp_path)


@pytest.mark.parametrize("declared, message", [
    (10**9, "more than source.options.max_answer_bytes"),  # the 1 GB: refused at its headers
    (100_000, "s (the answer came too slowly)"),  # within the timeout, or what is left of the budget
])
def test_a_trickled_answer_is_cut_at_its_deadline_or_its_size_then_could_not_judge(corpus, tmp_path, declared,
                                                                                     message):
    """Issue 15 #6: each byte of the body comes well within the 1 s timeout, so a per-read timeout
    never fires and the gate waited for ever; the whole answer has the timeout, and a size."""
    with live(corpus, "k1m-aa-039") as fake:
        fake.fault, fake.trickle_length = "trickle", declared
        # a gate still waiting after run_gate's 120 s fails the test; 3 s: room for a retry after a
        # 1 s deadline and its wait, however late a busy machine wakes
        result = gate_check(fake, tmp_path, retry_budget=3)
    assert result.returncode == 4 and result.stdout == ""
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: Datadog: ") and message in last and "could not judge" in last
    assert len(fake.timeseries_requests()) >= 2  # retried within the 3 s budget
    assert "Traceback" not in result.stderr


def test_trickled_headers_are_cut_at_the_timeout_then_could_not_judge(corpus, tmp_path):
    """A server sending its headers a byte every 0.1 s: each read comes within the 1 s timeout,
    and the answer's deadline only started after the headers, so the gate waited for ever."""
    with live(corpus, "k1m-aa-039") as fake:
        fake.fault = "trickle_headers"
        # a gate still waiting after run_gate's 120 s fails the test; 3 s budget: room for a retry
        result = gate_check(fake, tmp_path, retry_budget=3)
    assert result.returncode == 4 and result.stdout == ""
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: Datadog: ") and "timeout" in last and "could not judge" in last
    assert len(fake.timeseries_requests()) >= 2  # retried within the 3 s budget
    assert "Traceback" not in result.stderr


def test_wrong_keys_are_could_not_judge(corpus, tmp_path):
    with live(corpus, "k1m-aa-039") as fake:
        result = gate_check(fake, tmp_path, env={"DD_API_KEY": "wrong-api-key-77777"})
    assert result.returncode == 4
    assert "Datadog refused the credentials (403 Forbidden): check DD_API_KEY" in result.stderr
    assert len(fake.requests) == 1  # refused keys are not retried
    assert_no_secret(result, tmp_path, "wrong-api-key-77777", APP_KEY)


def test_a_key_with_a_line_end_is_refused_without_showing_it(corpus, tmp_path):
    """`DD_API_KEY=$'topsecretkey123\\n'` (a key pasted with its line end): the HTTP client
    would refuse the header with the value in its message. One line naming the variable."""
    with live(corpus, "k1m-aa-039") as fake:
        result = gate_check(fake, tmp_path, env={"DD_API_KEY": "topsecretkey123\n"})
    assert result.returncode == 4 and result.stdout == ""
    assert "DD_API_KEY holds characters a Datadog key cannot have" in result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert fake.requests == []
    assert_no_secret(result, tmp_path, "topsecretkey123", APP_KEY)


@pytest.mark.parametrize("canary", ["service:web", "SERVICE:WEB"])
def test_a_canary_scope_the_query_already_fixes_is_refused_before_any_fetch(corpus, tmp_path, canary):
    """Issue 22.7: `--canary service:web` against `{service:web,$scope}` selects the whole service,
    baseline included: a 1.6x latency, 5x error canary passed. The overlap check sees the tags a
    query fixes as well as the scopes."""
    with live(corpus, "k1m-latency-shift-006") as fake:
        result = gate_check(fake, tmp_path, "--canary", canary)
    assert result.returncode == 4, result.stdout + result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: canary scope {canary!r} and baseline scope 'autoscaling_group:web-baseline' "
                           "overlap: the canary's scope contains the baseline's"), line
    assert "once the query of metric 'latency' adds its own filter (service:web)" in line, line
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert fake.timeseries_requests() == []  # refused before any fetch
    assert evaluations(tmp_path) == []  # nothing registered or recorded for it


@pytest.mark.parametrize("query", ["avg:system.cpu.user{service:web AND $scope}",
                                   "avg:system.cpu.user{$scope and service:web}",
                                   "avg:system.cpu.user{service IN (web), $scope}",
                                   "avg:system.cpu.user{service:web OR $scope}",
                                   "avg:system.cpu.user{service:web,NOT $scope}",
                                   "avg:system.cpu.user{service:web,!$scope}"])
def test_a_boolean_filter_around_the_scope_is_refused_before_any_fetch(corpus, tmp_path, query):
    """Issue 22.7 bypassed: the overlap check reads a filter as comma-separated tags, so
    `{service:web AND $scope}` with `--canary service:web` was accepted (the canary selects the whole
    service), and `{service:web OR $scope}` made both groups the whole service for any scopes: the
    canary compared with itself, a pass. The filter holding $scope must be a list of tags (the
    policy's own scopes here: the form is refused whatever the scopes)."""
    path = write_policy(tmp_path)
    policy = yaml.safe_load(path.read_text())
    (cpu,) = [m for m in policy["metrics"] if m["name"] == "cpu"]
    cpu["queries"]["datadog"] = query
    path.write_text(yaml.safe_dump(policy))
    with live(corpus, "k1m-latency-shift-006") as fake:
        result = gate_check(fake, tmp_path, policy=path)
    assert result.returncode == 4, result.stdout + result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and f"metrics.cpu.queries.datadog: {query!r}" in line, line
    assert "write the filter as comma-separated tags" in line, line
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert fake.requests == []  # refused before any request
    assert evaluations(tmp_path) == []  # nothing recorded as a verdict


def _errors_query(query):
    def edit(policy):
        (errors,) = [m for m in policy["metrics"] if m["name"] == "errors"]
        errors["queries"]["datadog"] = query
    return edit


def _cpu_formula(formula):
    def edit(policy):
        (cpu,) = [m for m in policy["metrics"] if m["name"] == "cpu"]
        cpu["queries"]["datadog"] = {"query": "avg:system.cpu.user{$scope}", "formula": formula}
    return edit


@pytest.mark.parametrize("edit, options, message", [
    (_errors_query("min:trace.http.request.errors{service:web,$scope}"), {},
     "metrics.errors.queries.datadog: 'min:trace.http.request.errors{service:web,$scope}': a count is the group's "
     "events summed over its hosts, but space aggregation 'min' reads the host with the fewest"),
    (_errors_query("avg:trace.http.request.errors{service:web,$scope}"), {},
     "write 'sum:trace.http.request.errors{service:web,$scope}'"),
    (_errors_query({"query": "sum:trace.http.request.errors{service:web,$scope}", "rollup": "count"}), {},
     "metrics.errors.queries.datadog.rollup: 'count' on a count does not add up the events of an interval"),
    (_errors_query("sum:trace.http.request.errors{service:web,$scope}.as_rate()"), {},
     "metrics.errors.queries.datadog: 'sum:trace.http.request.errors{service:web,$scope}.as_rate()': .as_rate() on "
     "a count reads events per second"),
    (_errors_query({"query": "sum:trace.http.request.errors{service:web,$scope}", "formula": "q * 0.5"}), {},
     "metrics.errors.queries.datadog.formula: 'q * 0.5' on a count changes its events"),
    (_errors_query({"query": "sum:trace.http.request.errors{service:web,$scope}", "formula": "q / 60"}), {},
     "metrics.errors.queries.datadog.formula: 'q / 60' on a count changes its events"),
    (None, {"timeout": float("inf")}, "source.options.timeout: Input should be a finite number (got inf)"),
    (None, {"retry_budget": float("inf")}, "source.options.retry_budget: Input should be a finite number (got inf)"),
    (None, {"retry_budget": 10 ** 9}, "source.options.retry_budget: Input should be less than or equal to 600"),
    (_cpu_formula("q * 1" + "0" * 400), {}, "metrics.cpu.queries.datadog.formula: 'q * 1000"),
], ids=["min count", "avg count", "rollup count", "as_rate count", "count scaled", "count per second", "timeout inf", "retry budget inf", "retry budget huge",
        "formula past a float"])
def test_a_policy_the_datadog_source_cannot_read_right_is_refused_before_any_request(corpus, tmp_path, edit,
                                                                                      options, message):
    """Review (sources): a count read by `min:` / `avg:` / `.rollup(count)` was judged on numbers that
    are not its events (a bad canary host hidden); `retry_budget: .inf` retried a 5xx for ever (the
    fake answers 500 here); `timeout: .inf` failed every look with an OverflowError naming no field,
    and a formula constant past a float's range was `source.options: OverflowError`. Each is
    refused when the source opens, one line naming the field, before any request."""
    path = write_policy(tmp_path, **options)
    if edit is not None:
        policy = yaml.safe_load(path.read_text())
        edit(policy)
        path.write_text(yaml.safe_dump(policy))
    with live(corpus, "k1m-error-rate-010") as fake:
        fake.fault = "500"
        result = gate_check(fake, tmp_path, policy=path)
    assert result.returncode == 4, result.stdout + result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line, line
    assert "OverflowError" not in line and "Traceback" not in result.stderr and result.stdout == ""
    assert fake.requests == []  # refused before any request
    assert [e["verdict"] for e in evaluations(tmp_path)] in ([], ["error"])  # could not judge, never a verdict


def test_a_reference_learned_from_one_datadog_origin_is_not_read_for_another(corpus, tmp_path):
    """Review (sources): two Datadog origins (GATE_DATADOG_URL; DD_SITE likewise) serving the same
    release, deploy, policy and scopes, one cache folder. Before: the second check read the
    reference learned from the first origin's history and asked its own for none."""
    case = load_case(corpus / "k1m-aa-039")
    offset = int(time.time()) // 60 * 60 - case.end_at
    env = {"GATE_CACHE_DIR": str(tmp_path / "cache")}
    with FakeDatadog(case, offset=offset) as first, FakeDatadog(case, offset=offset) as second:
        for fake, folder in ((first, "a"), (second, "b"), (first, "c")):
            fake.deployed_at = case.deployed_at + offset
            (tmp_path / folder).mkdir()
            result = gate_check(fake, tmp_path / folder, env=env)
            assert result.returncode == 0, result.stdout + result.stderr

    def history(fake):
        return [r for r in fake.timeseries_requests() if r["to"] <= fake.deployed_at * 1000]
    assert len(history(second)) == HISTORY_CHUNKS  # its own history, learned anew
    assert len(history(first)) == HISTORY_CHUNKS  # the same origin again: read from the cache
    assert len(list((tmp_path / "cache").glob("*.reference"))) == 2
