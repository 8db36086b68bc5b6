"""The Datadog source against the fake Datadog API over real HTTP, in process (fast).

End-to-end runs through `gate check` are in test_datadog_cli.py.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from pathlib import Path

import numpy as np
import pytest
import urllib3

from gate.analysis import Analysis
from gate.errors import PolicyError, SourceError
from gate.policy import Metric, load_policy, parse_policy
from gate.sources import Query, open_source
from gate.sources.datadog import DatadogSource, check_scope, compile_query
from gate.sources.replay import load_case
from tests.fake_datadog import API_KEY, APP_KEY, FakeDatadog

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "datadog.yaml"
CANARY, BASELINE = "autoscaling_group:web-canary", "autoscaling_group:web-baseline"


def datadog_policy(**options):
    policy = load_policy(EXAMPLE)
    data = policy.model_dump()
    # The fake serves every point at once (no ingestion delay): nothing to settle.
    data["source"]["options"] = {"timeout": 1, "retry_budget": 2, "settle": 0, **options}
    return parse_policy(data)


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("DD_API_KEY", API_KEY)
    monkeypatch.setenv("DD_APP_KEY", APP_KEY)
    monkeypatch.delenv("DD_SITE", raising=False)
    return monkeypatch


@pytest.fixture
def serve(env, corpus):
    """serve(case_name, now=recorded moment) -> (fake, source); the fake's clock is `now`."""
    fakes = []

    def start(name: str, now: int | None = None, **options):
        case = cached_case(corpus / name)
        clock = {"now": case.end_at if now is None else now}
        fake = FakeDatadog(case, clock=lambda: clock["now"]).__enter__()
        fake.moment = clock
        fakes.append(fake)
        env.setenv("GATE_DATADOG_URL", fake.url)
        return fake, open_source(datadog_policy(**options))

    yield start
    for fake in fakes:
        fake.__exit__(None)


@functools.lru_cache
def cached_case(path: Path):
    return load_case(path)


def query(source_policy_metrics, start, end, baseline=BASELINE, canary=CANARY):
    return Query(tuple(source_policy_metrics), canary, baseline, start, end, 60)


METRICS = datadog_policy().metrics


def sparse(case):
    """The recording as a sparse counter shows it: a minute without requests has no point, for
    the requests as for the errors (the source can only tell a quiet minute from an absent one
    by the denominator)."""
    frames = {}
    for group, frame in case.frames.items():
        idle = frame.values["requests"] == 0
        values = {k: np.where(idle, np.nan, v) if k in ("errors", "requests") else v for k, v in frame.values.items()}
        frames[group] = dataclasses.replace(frame, values=values)
    return dataclasses.replace(case, frames=frames)


class FakeClock:
    """time.monotonic, time.time and time.sleep for retry tests: waits are counted, not slept, so
    what a test checks of the retry budget never depends on how busy the machine is.

    `drive(source)` also puts the source's requests on this clock (they still go over real HTTP):
    an answer takes `answer_takes` (plus what the fake server's `sleep` adds when it is this
    clock's `advance`), a request that fails without an answer (a timeout) takes the whole
    timeout it was given. `requests` keeps each one's (timeout given, seconds taken, status)."""

    START = 1000.0

    def __init__(self):
        self.now, self.slept, self.requests = self.START, [], []
        self._wall_at_start = time.time()

    def __call__(self) -> float:
        return self.now

    @property
    def elapsed(self) -> float:
        return self.now - self.START

    def wall(self) -> float:
        return self._wall_at_start + self.elapsed

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        # a retry loop that never gives up fails here instead of hanging the suite
        assert self.elapsed < 3600, f"slept {self.elapsed:.0f}s: the retry budget is not enforced"

    def drive(self, source: DatadogSource, answer_takes: float = 0.01) -> FakeClock:
        source.clock, source.clock_wall, source.sleep = self, self.wall, self.sleep
        pool = source._api.api_client.rest_client.pool_manager
        send = pool.request

        def request(method, url, *, timeout=None, **kwargs):
            given = timeout.total if isinstance(timeout, urllib3.Timeout) and timeout.total else None
            given = given or source.options.timeout
            began = self.now
            try:
                response = send(method, url, timeout=timeout, **kwargs)
            except BaseException:
                self.now = max(self.now, began + given)
                self.requests.append((given, self.now - began, None))
                raise
            self.now += answer_takes
            self.requests.append((given, self.now - began, response.status))
            return response

        pool.request = request
        return self


# -- queries and scopes ------------------------------------------------------------------------


def metric(kind="gauge", **datadog):
    spec = datadog.pop("q", None)
    return Metric(name="m", kind=kind, queries={"datadog": spec if spec is not None else datadog})


def test_queries_are_pinned_to_the_interval_and_counts_counted():
    assert compile_query(metric(q="avg:system.cpu.user{$scope}"), 60).template == (
        "avg:system.cpu.user{$scope}.rollup(avg, 60)"
    )
    assert compile_query(metric("count", q="sum:hits{service:web,$scope}"), 300).template == (
        "sum:hits{service:web,$scope}.as_count().rollup(sum, 300)"
    )
    assert compile_query(metric(q="max:x{$scope}.rollup(max, 60)"), 60).template == "max:x{$scope}.rollup(max, 60)"
    assert compile_query(metric(q="avg:x{$scope}.rollup(max)"), 60).template == "avg:x{$scope}.rollup(max, 60)"
    # A count's `.as_rate()` is refused (test_a_count_read_as_a_rate_or_scaled_is_refused_naming_the_field).
    spec = compile_query(metric(query="x{$scope}", aggregation="p99", rollup="max", formula="q * 1000"), 60)
    assert spec.template == "p99:x{$scope}.rollup(max, 60)"
    assert spec.formula_for("c3") == "c3 * 1000"
    for scale_or_complement in ("q / 1024", "100 - q", "1 - q", "100 * (1 - q)", "(1 - q) * 100", "q * 1e3", "q / 1e9"):
        assert compile_query(metric(query="x{$scope}", aggregation="avg", formula=scale_or_complement), 60).formula


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"q": "avg:x{host:a}"}, "must have one tag filter holding $scope"),
        ({"q": "x{$scope}"}, "needs a space aggregation"),
        ({"q": "avg:x{$scope} by {host}"}, "groups by tags"),
        ({"q": "avg:x{$scope}.rollup(avg, 300)"}, "rolls up every 300s but the policy interval is 60s"),
        ({"q": "avg:x{$scope}.rollup(median)"}, ".rollup() takes a method"),
        ({"query": "avg:x{$scope}", "formula": "import os"}, "must be arithmetic over the query `q`"),
        ({"query": "avg:x{$scope}", "formula": "a + 1"}, "must be arithmetic over the query `q`"),
        ({"query": "avg:x{$scope}", "aggregation": "avg"}, "has a space aggregation and `aggregation`"),
        ({"query": "avg:x{$scope}", "window": 5}, "window"),
        # Issue 22's review: anything around the one metric changes what is compared.
        ({"q": "avg:x{$scope} + 1000"}, "must be one metric"),
        ({"q": "avg:x{$scope} * 0"}, "must be one metric"),
        ({"q": "100 - avg:x{$scope}"}, "must be one metric"),
        ({"q": "avg:x{$scope}.fill(zero)"}, "must be one metric"),
        ({"q": "timeshift(avg:x{$scope}, -3600)"}, "must be one metric"),
        ({"q": "abs(avg:x{$scope})"}, "must be one metric"),
        ({"q": "avg:x{$scope} - avg:y"}, "must be one metric"),
        ({"q": "P95:x{$scope}"}, "space aggregation 'P95' is not one of"),
        ({"q": "p95 :x{$scope}"}, "space aggregation 'p95 ' is not one of"),
        # Review: the same tricks through `formula`, which the one-metric message points to.
        ({"query": "avg:x{$scope}", "formula": "q * 1000 + 100000"}, "adds a constant to q"),
        ({"query": "avg:x{$scope}", "formula": "q + 1000"}, "adds a constant to q"),
        ({"query": "avg:x{$scope}", "formula": "q * 0"}, "does not depend on q"),
        ({"query": "avg:x{$scope}", "formula": "q - q"}, "does not depend on q"),
        ({"query": "avg:x{$scope}", "formula": "q * q"}, "is not linear in q"),
        ({"query": "avg:x{$scope}", "formula": "q - 0.000001 * q * (q - 1) * (q - 2)"}, "is not linear in q"),
        ({"query": "avg:x{$scope}", "formula": "1000 * q * (1 + 1000000 * (q - 1) * (q - 2)) / (1 + 1000000 * q * (q - 1) * (q - 2))"}, "is not linear in q"),
        ({"query": "avg:x{$scope}", "formula": "1 / q"}, "divides by q"),
        ({"query": "avg:x{$scope}", "formula": "q / (1 - 1)"}, "divides by zero"),
        ({"query": "avg:x{$scope}", "formula": "default_zero(q)"}, "calls a function"),
        ({"query": "avg:x{$scope}", "formula": "timeshift(q, -3600)"}, "calls a function"),
        ({"query": "avg:x{$scope}", "formula": "abs(q)"}, "calls a function"),
        # Review round 4: a complement of a large constant shrinks relative changes too.
        ({"query": "avg:x{$scope}", "formula": "10000 - q"}, "adds a constant to q"),
        ({"query": "avg:x{$scope}", "formula": "1 - q * 0.0000000000001"}, "adds a constant to q"),
        ({"query": "avg:x{$scope}", "formula": "-q"}, "flips the sign of q"),
        ({"query": "avg:x{$scope}", "formula": "0 - q"}, "flips the sign of q"),
        ({"query": "avg:x{$scope}", "formula": "q * 1e18"}, "scales q by 1e+18"),
        ({"query": "avg:x{$scope}", "formula": "1e12 - q"}, "adds a constant to q"),
        ({"query": "avg:x{$scope}", "formula": "q * 1e200 * 1e200"}, "overflows"),
        # Review (sources): a constant past a float's range was an OverflowError out of the check.
        ({"query": "avg:x{$scope}", "formula": "q * 1" + "0" * 400}, "overflows"),
        ({"query": "avg:x{$scope}", "formula": "1" + "0" * 400 + " - q"}, "overflows"),
    ],
)
def test_bad_queries_are_refused_naming_the_metric(spec, message):
    with pytest.raises(PolicyError) as e:
        compile_query(metric(**spec), 60)
    assert "metrics.m.queries.datadog" in str(e.value) and message in str(e.value)


@pytest.mark.parametrize("spec, field, message", [
    ({"q": "min:errors{$scope}"}, "", "space aggregation 'min' reads the host with the fewest"),
    ({"q": "max:errors{$scope}"}, "", "space aggregation 'max' reads the host with the most"),
    ({"q": "avg:errors{$scope}"}, "", "space aggregation 'avg' divides them by the hosts that reported"),
    ({"q": "p50:errors{$scope}"}, "", "space aggregation 'p50' reads one host's value"),
    ({"query": "errors{$scope}", "aggregation": "avg"}, ".aggregation", "write aggregation: sum"),
    ({"query": "sum:errors{$scope}", "rollup": "count"}, ".rollup", "'count' on a count does not add up the events"),
    ({"query": "sum:errors{$scope}", "rollup": "avg"}, ".rollup", "'avg' on a count does not add up the events"),
    ({"q": "sum:errors{$scope}.rollup(min)"}, "", ".rollup(min) on a count does not add up the events"),
    ({"q": "sum:errors{$scope}.rollup(count, 60)"}, "", ".rollup(count) on a count does not add up"),
])
def test_a_count_query_that_does_not_sum_events_is_refused_naming_the_field_and_what_to_write(spec, field, message):
    """Review (sources): a count is events per interval summed over the group's hosts. `min:` read
    the least erroring host (a bad canary host hidden), `avg:` on a sparse counter divided by the
    few hosts that reported, `.rollup(count)` counted stored points: all were accepted."""
    with pytest.raises(PolicyError) as e:
        compile_query(metric("count", **spec), 60)
    assert str(e.value).startswith(f"metrics.m.queries.datadog{field}: "), str(e.value)
    assert message in str(e.value)
    assert "write 'sum:errors{$scope}" in str(e.value) or "write aggregation: sum" in str(e.value) \
        or "leave the rollup out (the gate writes .rollup(sum, 60) for a count) or write sum" in str(e.value)


@pytest.mark.parametrize("spec, field, message", [
    ({"q": "sum:errors{$scope}.as_rate()"}, "", ".as_rate() on a count reads events per second"),
    ({"q": "sum:errors{$scope}.as_count().as_rate()"}, "", ".as_rate() on a count reads events per second"),
    ({"q": "sum:errors{$scope}.as_rate().rollup(sum)"}, "", ".as_rate() on a count reads events per second"),
    # The mapping form names its `query` field (review: it named `...datadog`).
    ({"query": "errors{$scope}.as_rate()", "aggregation": "sum"}, ".query", ".as_rate() on a count"),
    ({"query": "sum:errors{$scope}.as_rate()"}, ".query", ".as_rate() on a count reads events per second"),
    ({"query": "sum:errors{$scope}", "formula": "q * 0.5"}, ".formula", "'q * 0.5' on a count changes its events"),
    ({"query": "sum:errors{$scope}.as_count()", "formula": "q / 60"}, ".formula", "'q / 60' on a count changes"),
    ({"query": "sum:errors{$scope}", "formula": "q * 1000"}, ".formula", "on a count changes its events"),
    ({"query": "sum:errors{$scope}", "formula": "1 - q"}, ".formula", "on a count changes its events"),
    ({"query": "sum:errors{$scope}", "formula": "100 * (1 - q)"}, ".formula", "on a count changes its events"),
])
def test_a_count_read_as_a_rate_or_scaled_is_refused_naming_the_field(spec, field, message):
    """Review (sources): a count is the number of events of an interval, as the judge's Poisson
    model reads it. `.as_rate()` (events per second) and a formula scaling the count (`q * 0.5`
    halves a regression's evidence, `q / 60` is per second) were accepted."""
    with pytest.raises(PolicyError) as e:
        compile_query(metric("count", **spec), 60)
    assert str(e.value).startswith(f"metrics.m.queries.datadog{field}: "), str(e.value)
    assert message in str(e.value)
    assert "leave it out" in str(e.value)


@pytest.mark.parametrize("spec", [
    {"q": "sum:errors{$scope}.as_count() * 0.5"}, {"q": "sum:errors{$scope}.as_count() / 60"},
    {"q": "sum:errors{$scope}.as_count() + sum:hits{$scope}.as_count()"},
])
def test_arithmetic_around_a_count_query_stays_refused(spec):
    """(Refused before this review too: the query is one metric; a sum of two counts has two filters.)"""
    with pytest.raises(PolicyError, match="must be one metric|must have one tag filter holding"):
        compile_query(metric("count", **spec), 60)


def test_a_count_as_counted_is_accepted_with_or_without_an_identity_formula():
    for spec in ({"q": "sum:errors{$scope}.as_count()"}, {"q": "sum:errors{$scope}.as_count().rollup(sum)"},
                 {"query": "sum:errors{$scope}", "formula": "q"}, {"query": "sum:errors{$scope}", "formula": "(q)"},
                 {"query": "errors{$scope}.as_count()", "aggregation": "sum", "formula": "q * 1"}):
        assert compile_query(metric("count", **spec), 60).template == "sum:errors{$scope}.as_count().rollup(sum, 60)"
    # A gauge keeps its rate and its scale (the policy's choice: requests per second, milliseconds).
    assert compile_query(metric(q="avg:x{$scope}.as_rate()"), 60).template == "avg:x{$scope}.as_rate().rollup(avg, 60)"
    assert compile_query(metric(query="avg:x{$scope}", formula="q / 60"), 60).formula == "q / 60"


def test_a_count_summed_in_space_and_time_is_accepted():
    for spec in ({"q": "sum:errors{$scope}"}, {"q": "sum:errors{$scope}.rollup(sum)"},
                 {"query": "errors{$scope}", "aggregation": "sum", "rollup": "sum"}):
        assert compile_query(metric("count", **spec), 60).template == "sum:errors{$scope}.as_count().rollup(sum, 60)"
    for aggregation in ("min", "avg", "p50"):  # a gauge's aggregation is the policy's choice
        assert compile_query(metric(q=f"{aggregation}:x{{$scope}}.rollup(count)"), 60).template == (
            f"{aggregation}:x{{$scope}}.rollup(count, 60)")


@pytest.mark.parametrize("option, value, message", [
    ("timeout", float("inf"), "source.options.timeout: Input should be a finite number"),
    ("timeout", 301, "source.options.timeout: Input should be less than or equal to 300"),
    ("retry_budget", float("inf"), "source.options.retry_budget: Input should be a finite number"),
    ("retry_budget", 1e9, "source.options.retry_budget: Input should be less than or equal to 600"),
    ("timeout", float("nan"), "source.options.timeout: Input should be a finite number"),
])
def test_unbounded_times_are_refused_naming_the_option(env, option, value, message):
    """Review (sources): `retry_budget: .inf` retried a 5xx for ever; `timeout: .inf` failed every
    look with an OverflowError naming no field."""
    with pytest.raises(PolicyError) as e:
        open_source(datadog_policy(**{option: value}))
    assert str(e.value).startswith(message), str(e.value)


def test_the_longest_times_allowed_are_accepted(env):
    source = open_source(datadog_policy(timeout=300, retry_budget=600))
    assert (source.options.timeout, source.options.retry_budget) == (300, 600)


def test_a_metric_without_a_datadog_query_is_a_policy_error(env):
    data = datadog_policy().model_dump()
    data["metrics"][0]["queries"] = {}
    with pytest.raises(PolicyError, match=r"metrics\.cpu\.queries\.datadog: missing"):
        open_source(parse_policy(data))


def test_unknown_options_are_refused(env):
    with pytest.raises(PolicyError, match="source.options.retries"):
        open_source(datadog_policy(retries=3))


@pytest.mark.parametrize(
    "scope",
    ["version:1.4.2", "autoscaling_group:web-canary", "kube_deployment:web/v2", "région:paris", "env:prod_eu"],
)
def test_datadog_tags_are_accepted(scope):
    assert check_scope(scope, "canary") == scope


@pytest.mark.parametrize(
    "scope",
    [
        "version:1.2}",
        "version:1.2,host:x",
        "version:1.2 3",
        "version:a by {host}",
        "!version:1",
        "version:*",
        "version:'1'",
        'version:"1"',
        "version:1|2",
        "version:1 OR host:x",
        "1.2.3",
        "by",
        "",
        "a" * 201,
    ],
)
def test_scopes_that_would_change_the_query_are_refused(scope):
    with pytest.raises(PolicyError) as e:
        check_scope(scope, "canary")
    assert f"canary scope {scope!r}" in str(e.value)


@pytest.mark.parametrize("query, tags", [
    ("avg:system.cpu.user{$scope}", ()),
    ("p95:trace.http.request{service:web,$scope}", ("service:web",)),
    ({"query": "trace.http.request.hits{ env:prod , $scope, service:web }", "aggregation": "sum"},
     ("env:prod", "service:web")),
    ("avg:system.cpu.user{service:web}", ()),  # no $scope: refused when the source opens, fixes nothing here
])
def test_the_tags_a_query_fixes_beside_the_scope_are_read_for_the_overlap_check(query, tags):
    from gate.policy import Metric
    from gate.sources.datadog import fixed_tags

    assert fixed_tags(Metric(name="m", kind="gauge", queries={"datadog": query})) == tags


def test_a_release_name_outside_the_tag_grammar_is_refused_before_any_request(serve):
    fake, source = serve("k1m-aa-039")
    analysis = Analysis(source=source, policy=datadog_policy(), release="1.2 OR host:prod",
                        deployed_at=fake.case.deployed_at, canary="version:{release}")
    with pytest.raises(PolicyError, match=r"canary scope 'version:1.2 OR host:prod' is not a Datadog tag"):
        analysis.evaluate(fake.case.deployed_at + 600)
    assert fake.requests == []


# -- what is served ----------------------------------------------------------------------------


@pytest.mark.parametrize("nulls", [False, True], ids=["zeros", "nulls"])
@pytest.mark.parametrize("name", ["k1m-aa-039", "k1m-partial-gaps-030"])
def test_the_window_is_the_recorded_series_without_the_bucket_still_filling(serve, name, nulls):
    fake, source = serve(name)
    fake.null_zero_counts = nulls  # Datadog answers null for a sparse counter's empty minute
    case = fake.case
    now = case.end_at - 30  # the minute that started at end_at - 60 is still filling
    fake.moment["now"] = now
    seen = source.fetch(query(METRICS, case.deployed_at, now))
    assert len(fake.timeseries_requests()) == 1
    request = fake.timeseries_requests()[0]
    assert len(request["queries"]) == 10 and request["interval"] == 60_000
    assert request["from"] == case.deployed_at * 1000 and request["to"] == (case.end_at - 60) * 1000
    for group in ("canary", "baseline"):
        recorded = (sparse(case) if nulls else case).frames[group]
        frame = getattr(seen, group)
        assert list(frame.timestamps) == list(range(case.deployed_at, case.end_at - 60, 60))
        for name_ in recorded.values:
            # NaN where nothing was reported, 0.0 where zero events were counted.
            expected = [dict(zip(recorded.timestamps, recorded.values[name_])).get(t, np.nan) for t in frame.timestamps]
            np.testing.assert_allclose(frame.values[name_], expected, rtol=1e-9, equal_nan=True)
    if name == "k1m-partial-gaps-030":
        errors = seen.canary.values["errors"]
        assert np.isnan(errors).any() and (errors == 0).any()


def test_the_trailing_partial_count_is_never_read(serve):
    fake, source = serve("k1m-aa-039")
    case = fake.case
    t = case.end_at - 600
    fake.moment["now"] = t + 30  # half of minute t reported
    seen = source.fetch(query(METRICS, case.deployed_at, t + 30))
    assert seen.canary.timestamps[-1] == t - 60
    # The fake does serve the half-filled bucket to whoever asks for it:
    answer = fake.timeseries(
        {"data": {"type": "timeseries_request", "attributes": {
            "from": t * 1000, "to": (t + 60) * 1000, "interval": 60_000,
            "queries": [{"name": "a", "query": f"sum:trace.http.request.hits{{{CANARY}}}.as_count().rollup(sum, 60)"}],
        }}}
    )
    recorded = case.frames["canary"].between(t, t).values["requests"][0]
    assert answer["data"]["attributes"]["values"][0][0] == pytest.approx(recorded / 2)


def test_settle_waits_for_late_buckets(serve):
    fake, source = serve("k1m-aa-039", settle=120)
    now = fake.case.end_at
    fake.moment["now"] = now
    source.clock_wall = lambda: now
    seen = source.fetch(query(METRICS, fake.case.deployed_at, now))
    assert seen.canary.timestamps[-1] == now - 60 - 120
    # Judged later (the end of a lifetime that is over): settle counts back from the clock, so
    # every bucket of the window is read.
    source.clock_wall = lambda: now + 600
    seen = source.fetch(query(METRICS, fake.case.deployed_at, now))
    assert seen.canary.timestamps[-1] == now - 60


def test_history_is_chunked_under_the_point_limit(serve):
    fake, source = serve("k1m-aa-039")
    case = fake.case
    start = case.deployed_at - 7 * 86400
    seen = source.fetch(query(METRICS, start, case.deployed_at - 1))
    requests = fake.timeseries_requests()
    assert len(requests) == 7  # 10080 minutes in chunks of 1440
    assert all((r["to"] - r["from"]) // r["interval"] <= 1440 for r in requests)
    # `end` is a moment: at deployed_at - 1 the minute [deployed_at - 60, deployed_at) is not over.
    assert requests[0]["from"] == start * 1000 and requests[-1]["to"] == (case.deployed_at - 60) * 1000
    recorded = case.frames["baseline"].between(start, case.deployed_at - 61)
    frame = seen.baseline.between(recorded.timestamps[0], recorded.timestamps[-1])
    np.testing.assert_allclose(frame.values["cpu"], recorded.values["cpu"], equal_nan=True)
    assert np.isnan(seen.baseline.between(start, recorded.timestamps[0] - 1).values["cpu"]).all()


def test_a_coarsened_answer_is_refused_not_misread(serve):
    fake, source = serve("k1m-aa-039", max_points=1500)
    fake.max_points = 500  # Datadog coarsens rather than answer more points than its limit
    case = fake.case
    with pytest.raises(SourceError, match=r"answered every \d+s instead of 60s"):
        source.fetch(query(METRICS, case.deployed_at - 86400, case.deployed_at - 1))


def test_a_window_without_a_complete_bucket_costs_no_request(serve):
    fake, source = serve("k1m-aa-039")
    deployed = fake.case.deployed_at
    seen = source.fetch(query(METRICS, deployed, deployed + 58))  # [d, d + 60) not complete
    assert len(seen.canary) == 0 and len(seen.baseline) == 0 and fake.requests == []
    assert set(seen.canary.values) == {m.name for m in METRICS}


def test_persistent_429s_back_off_and_give_up_within_the_budget(serve):
    fake, source = serve("k1m-aa-039", retry_budget=3)
    fake.fault, fake.reset_after = "429", 0
    clock = FakeClock().drive(source)
    with pytest.raises(SourceError, match=r"rate limited \(429\).*retry budget 3s spent\); could not judge"):
        source.fetch(query(METRICS, fake.case.deployed_at, fake.case.end_at))
    # Backed off (0.5 s, then 1 s: the next 2 s would not fit), and gave up within the budget.
    assert clock.slept == [0.5, 1.0] and clock.elapsed <= 3
    assert len(fake.timeseries_requests()) == len(clock.requests) == 3  # backoff, not a tight loop


def test_history_only_queries_the_canary_alone(serve):
    fake, source = serve("k1m-aa-039")
    seen = source.fetch(query(METRICS, fake.case.deployed_at, fake.case.end_at, baseline=None))
    assert seen.baseline is None and len(fake.timeseries_requests()[0]["queries"]) == 5


def test_one_request_per_evaluation_and_the_history_once_per_release(serve):
    fake, source = serve("k1m-aa-039")
    case = fake.case
    analysis = Analysis(datadog_policy(), source, "web-1.0", case.deployed_at,
                        canary=CANARY, baseline=BASELINE)
    per_evaluation = []
    for now in range(case.deployed_at + 600, case.deployed_at + 600 + 4 * 60, 60):
        fake.moment["now"] = now
        before = len(fake.timeseries_requests())
        verdict = analysis.evaluate(now)
        per_evaluation.append(len(fake.timeseries_requests()) - before)
        assert verdict.verdict in ("pass", "fail", "inconclusive")
    assert per_evaluation == [7 + 1, 1, 1, 1]
    assert source.requests == 11


# -- faults ------------------------------------------------------------------------------------


def test_a_429_waits_for_the_reset_then_answers(serve, caplog):
    fake, source = serve("k1m-aa-039", retry_budget=5)
    fake.faults = ["429"]
    fake.reset_after = 1
    waits = []
    source.sleep = lambda s: (waits.append(s), time.sleep(s))
    caplog.set_level(logging.DEBUG, logger="gate.sources.datadog")
    seen = source.fetch(query(METRICS, fake.case.deployed_at, fake.case.end_at))
    assert waits == [1.0] and len(seen.canary) == 60
    assert [r["status"] for r in fake.timeseries_requests()] == [429, 200]
    assert "requests left" in caplog.text  # the rate-limit headroom, at debug level


def test_a_reset_beyond_the_budget_is_not_waited_for(serve):
    fake, source = serve("k1m-aa-039", retry_budget=2)
    fake.fault, fake.reset_after = "429", 30
    clock = FakeClock().drive(source)
    with pytest.raises(SourceError, match=r"rate limited \(429\), the limit resets in 30s"):
        source.fetch(query(METRICS, fake.case.deployed_at, fake.case.end_at))
    assert clock.slept == [] and len(fake.timeseries_requests()) == 1


@pytest.mark.parametrize("fault, message", [("503", "server error 503"), ("malformed", "malformed answer"),
                                            ("bad_shape", "malformed answer")])
def test_transient_faults_are_retried_then_answered(serve, fault, message):
    fake, source = serve("k1m-aa-039", retry_budget=5)
    fake.faults = [fault, fault]
    seen = source.fetch(query(METRICS, fake.case.deployed_at, fake.case.end_at))
    assert len(seen.canary) == 60 and len(fake.timeseries_requests()) == 3


def test_an_answer_of_the_wrong_shape_is_retried_then_refused(serve):
    fake, source = serve("k1m-aa-039", retry_budget=2)
    fake.fault = "bad_shape"
    clock = FakeClock()
    source.clock, source.sleep = clock, clock.sleep
    with pytest.raises(SourceError, match=r"malformed answer .*retry budget 2s spent\); could not judge"):
        source.fetch(query(METRICS, fake.case.deployed_at, fake.case.end_at))
    assert len(fake.timeseries_requests()) >= 3 and sum(clock.slept) <= 2


def test_wrong_keys_are_refused_at_once_and_never_shown(serve, env, caplog):
    caplog.set_level(logging.DEBUG)
    env.setenv("DD_APP_KEY", "wrong-app-key-5555")
    fake, source = serve("k1m-aa-039")
    with pytest.raises(SourceError, match="refused the credentials .403") as e:
        source.fetch(query(METRICS, fake.case.deployed_at, fake.case.end_at))
    assert len(fake.requests) == 1
    for secret in (API_KEY, "wrong-app-key-5555"):
        assert secret not in str(e.value) and secret not in caplog.text


def test_keys_never_appear_in_logs_or_errors(serve, caplog):
    caplog.set_level(logging.DEBUG)  # every logger: ours, the client's, urllib3's
    fake, source = serve("k1m-aa-039", retry_budget=2)
    fake.faults = ["429", "500"]
    fake.reset_after = 0
    source.fetch(query(METRICS, fake.case.deployed_at, fake.case.end_at))
    fake.fault = "500"
    with pytest.raises(SourceError) as e:
        source.fetch(query(METRICS, fake.case.deployed_at, fake.case.end_at))
    assert caplog.text  # something was logged, and none of it is a key
    for secret in (API_KEY, APP_KEY):
        assert secret not in caplog.text and secret not in str(e.value) and secret not in repr(e.value)


def test_missing_keys_and_unknown_sites_are_refused(env, monkeypatch):
    monkeypatch.delenv("DD_APP_KEY")
    with pytest.raises(SourceError, match="DD_APP_KEY not set"):
        open_source(datadog_policy())
    monkeypatch.setenv("DD_APP_KEY", APP_KEY)
    monkeypatch.delenv("GATE_DATADOG_URL", raising=False)
    monkeypatch.setenv("DD_SITE", "datadoghq.example")
    with pytest.raises(SourceError, match="DD_SITE: unknown Datadog site 'datadoghq.example'"):
        open_source(datadog_policy())


def test_the_site_and_the_url_override_choose_the_host(env, monkeypatch):
    monkeypatch.delenv("GATE_DATADOG_URL", raising=False)
    monkeypatch.setenv("DD_SITE", "datadoghq.eu")
    source = open_source(datadog_policy())
    assert isinstance(source, DatadogSource)
    assert source._api.api_client.configuration.host == "https://api.datadoghq.eu"
    monkeypatch.setenv("GATE_DATADOG_URL", "http://127.0.0.1:9/")
    assert open_source(datadog_policy())._api.api_client.configuration.host == "http://127.0.0.1:9"


@pytest.mark.parametrize("nulls", [False, True], ids=["zeros", "nulls"])
@pytest.mark.parametrize("name", ["k1m-aa-039", "k1m-canary-down-012", "k1m-partial-gaps-030",
                                  "k1m-error-rate-010"])
def test_the_judge_sees_through_datadog_what_it_sees_in_the_recording(serve, name, nulls):
    """Same moments, same verdicts as replaying the recording up to the last complete minute,
    whether Datadog answers 0 or null (a sparse counter) for a minute without errors."""
    fake, source = serve(name)
    fake.null_zero_counts = nulls
    case = fake.case
    from gate.sources.replay import ReplaySource

    class AsLive(ReplaySource):
        """The recording read as the live sources read: `end` is a moment, and the minute it
        falls in is not over (the history, up to deployed_at - 1, ends a minute before the deploy)."""

        def fetch(self, q):
            return super().fetch(dataclasses.replace(q, end=q.end // 60 * 60 - 1))

    replay = AsLive(sparse(case) if nulls else case)
    policy = datadog_policy()
    over_http = Analysis(policy, source, "r", case.deployed_at, canary=CANARY, baseline=BASELINE)
    recorded = Analysis(policy, replay, "r", case.deployed_at, canary="canary", baseline="baseline")
    for minutes in (10, 30, 60):
        now = case.deployed_at + 60 * minutes
        fake.moment["now"] = now
        replay.visible_until = now - 60  # the minute starting at `now` has not been read
        assert_same_numbers(without_links(over_http.evaluate(now).to_dict()),
                            without_links(recorded.evaluate(now).to_dict()))


def without_links(verdict: dict) -> dict:
    """The verdict but its evidence links, which name each Analysis's own scopes (the recording's
    groups are called canary and baseline, the live ones by their tags)."""
    return {**verdict, "metrics": [{k: v for k, v in m.items() if k != "links"} for m in verdict["metrics"]]}


def assert_same_numbers(a, b, path="verdict"):
    """Equal, but for floats that went through JSON over HTTP: the same to 1e-9 (the verdict
    keeps full precision, so a last-digit difference of a float's text shows)."""
    if isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_same_numbers(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_numbers(x, y, f"{path}[{i}]")
    else:
        assert a == b, (path, a, b)


# -- counts: nulls, zeros and no data ------------------------------------------------------------


def test_null_zero_error_minutes_read_as_zero_where_requests_were_counted(serve):
    fake, source = serve("k1m-error-rate-010")
    fake.null_zero_counts = True
    case = fake.case
    start = int(case.frames["baseline"].timestamps[0])
    seen = source.fetch(query(METRICS, start, case.deployed_at - 1))
    recorded = sparse(case).frames["baseline"].between(start, case.deployed_at - 61)
    frame = seen.baseline.between(start, case.deployed_at - 61)
    zeros = recorded.values["errors"] == 0
    assert zeros.sum() > 500  # the case has many minutes without errors: all nulls on the wire
    assert (frame.values["errors"][zeros] == 0).all()
    np.testing.assert_allclose(frame.values["errors"], recorded.values["errors"], equal_nan=True)


def test_a_misspelt_count_query_is_no_data_not_zero_errors(serve):
    """A query Datadog has no series for (a misspelt metric) answers nothing at all: with the
    requests counted, filling zeros would read "no errors" and could pass a regression."""
    fake, _ = serve("k1m-error-rate-010")
    fake.null_zero_counts = True
    data = datadog_policy().model_dump()
    errors = next(m for m in data["metrics"] if m["name"] == "errors")
    errors["queries"]["datadog"] = "sum:trace.http.request.errrors{service:web,$scope}"
    policy = parse_policy(data)
    source = open_source(policy)
    case = fake.case
    history = source.fetch(query(policy.metrics, case.deployed_at - 3600, case.deployed_at - 1))
    window = source.fetch(query(policy.metrics, case.deployed_at, case.end_at))
    for frame in (history.canary, history.baseline, window.canary, window.baseline):
        assert np.isnan(frame.values["errors"]).all()
    for frame in (history.baseline, window.canary, window.baseline):
        assert np.isfinite(frame.values["requests"]).any()


def test_one_budget_for_a_whole_chunked_fetch(serve):
    """A 5xx before each chunk of the history: each alone is within the budget, together they are
    not. The budget is the fetch's (docs: one fetch), not each request's. A retry is made only
    when its wait leaves time for it (the fifth 500 finds 0.2 s left: less than its wait)."""
    fake, source = serve("k1m-aa-039", retry_budget=2.2)
    fake.faults = ["500", None] * 7
    clock = FakeClock()
    source.clock, source.sleep = clock, clock.sleep
    case = fake.case
    with pytest.raises(SourceError, match=r"server error 500 .*retry budget 2.2s spent"):
        source.fetch(query(METRICS, case.deployed_at - 7 * 86400, case.deployed_at - 1))
    assert sum(clock.slept) <= 2.2 and clock.slept == [0.5, 0.5, 0.5, 0.5]
    assert len([r for r in fake.timeseries_requests() if r["status"] == 200]) == 4  # of 7 chunks
    # With the budget for it, the same faults cost their waits and the history is read.
    fake.requests.clear()
    fake.faults = ["500", None] * 7
    source = open_source(datadog_policy(retry_budget=5))
    source.clock, source.sleep = clock, clock.sleep
    source.fetch(query(METRICS, case.deployed_at - 7 * 86400, case.deployed_at - 1))
    assert len([r for r in fake.timeseries_requests() if r["status"] == 200]) == 7



def test_slow_successful_chunks_do_not_spend_the_retry_budget(serve):
    """Only the time lost to faults is charged: a history whose first chunks answer slowly, but
    answer, still has its whole budget when a 500 comes late."""
    fake, source = serve("k1m-aa-039", retry_budget=10, timeout=20)
    clock = FakeClock().drive(source)
    fake.sleep, fake.slow_seconds = clock.advance, 4  # each slow answer takes 4 s of the clock
    fake.faults = ["slow"] * 4 + ["500"]  # 16 s of successful requests, more than the budget
    case = fake.case
    seen = source.fetch(query(METRICS, case.deployed_at - 7 * 86400, case.deployed_at - 1))
    assert len(seen.canary) == 7 * 1440 - 1  # [start, end) on the minute grid
    statuses = [r["status"] for r in fake.timeseries_requests()]
    assert statuses == [200] * 4 + [500] + [200] * 3  # the 500 was retried, every chunk read
    assert [round(took, 2) for _, took, _ in clock.requests[:4]] == [4.01] * 4
    assert clock.slept == [0.5]  # the one wait before the retry
    # Before the fault every request has the whole timeout, the slow answers notwithstanding; from
    # the fault on, what is left of the budget (less the 500's 0.01 s and the wait).
    assert [given for given, _, _ in clock.requests] == [20] * 5 + [pytest.approx(10 - 0.51)] * 3


def test_a_fetch_never_takes_longer_than_its_budget_plus_its_successful_requests(serve):
    """Timeouts are faults: each is charged, and the retry after the wait may only take what is
    left of the budget (its timeout is cut), never a whole `timeout` more."""
    fake, source = serve("k1m-aa-039", retry_budget=2.2, timeout=1)
    clock = FakeClock().drive(source)
    fake.sleep, fake.slow_seconds = clock.advance, 0.3
    fake.faults = ["slow", "slow"]  # two successful chunks of 0.3 s: not charged
    case = fake.case
    history = query(METRICS, case.deployed_at - 7 * 86400, case.deployed_at - 1)
    # From the third chunk on, every answer stalls beyond the timeout, for real: the client's
    # socket gives up (the clock counts each timed-out request as the timeout it was given).
    original = fake.next_fault
    calls = {"n": 0}

    def next_fault():
        calls["n"] += 1
        if calls["n"] <= 2:
            return original()
        fake.sleep, fake.slow_seconds = time.sleep, 3.0
        return "slow"

    fake.next_fault = next_fault
    with pytest.raises(SourceError, match=r"no answer within 1s \(timeout\), the retry cut to the 0\.7s left "
                                          r"of the retry budget \(2 attempt\(s\), retry budget 2\.2s spent\)"):
        source.fetch(history)
    assert len(fake.timeseries_requests()) == len(clock.requests) == 4
    # The retry was given what was left (2.2 - 1 s timed out - 0.5 s wait), not a whole timeout.
    assert [given for given, _, _ in clock.requests] == [1, 1, 1, pytest.approx(0.7)]
    assert clock.slept == [0.5]
    successful = sum(took for _, took, status in clock.requests if status == 200)
    assert successful == pytest.approx(2 * 0.31)
    assert clock.elapsed <= successful + 2.2 + 1e-9  # the budget plus the successful requests


# -- keys ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["DD_API_KEY", "DD_APP_KEY"])
@pytest.mark.parametrize("value", ["topsecretkey123\n", " topsecretkey123", "topsecret key123", "topsecretkeyé123"])
def test_a_key_a_header_cannot_carry_is_refused_without_showing_it(env, variable, value):
    env.setenv(variable, value)
    with pytest.raises(SourceError) as e:
        open_source(datadog_policy())
    assert variable in str(e.value) and "topsecret" not in str(e.value) and "key123" not in str(e.value)


def test_an_unexpected_client_failure_is_a_source_error_with_the_keys_redacted(serve, env, caplog):
    caplog.set_level(logging.DEBUG)
    fake, source = serve("k1m-aa-039")

    def refuse(body):  # what urllib3 / http.client say of a header value they refuse
        raise ValueError(f"Invalid header value {(API_KEY + chr(10)).encode()!r} and {APP_KEY}")

    source._api.query_timeseries_data = refuse
    with pytest.raises(SourceError, match=r"Datadog: the request failed \(ValueError: Invalid header value") as e:
        source.fetch(query(METRICS, fake.case.deployed_at, fake.case.end_at))
    for secret in (API_KEY, APP_KEY):
        assert secret not in str(e.value) and secret not in caplog.text


# -- options -------------------------------------------------------------------------------------


def test_settle_defaults_to_a_minute_and_the_apm_example_waits_two():
    from gate.sources.datadog import Options

    assert Options().settle == 60
    assert load_policy(EXAMPLE).source.options["settle"] == 120  # APM's ingestion delay


def test_a_bucket_is_read_once_it_is_over_not_a_second_before(serve):
    fake, source = serve("k1m-aa-039")
    t = fake.case.deployed_at + 600  # on a minute
    for now, last in ((t - 1, t - 120), (t, t - 60)):  # at t - 1, [t - 60, t) is not over
        fake.moment["now"] = now
        seen = source.fetch(query(METRICS, fake.case.deployed_at, now))
        assert seen.canary.timestamps[-1] == last


def test_the_latency_example_is_judged_by_its_tail():
    latency = next(m for m in load_policy(EXAMPLE).metrics if m.name == "latency")
    assert latency.unit == "ms" and latency.judges_tail


def test_group_names_for_promote_are_accepted_options(env):
    policy = datadog_policy(production_asg="web-prod", canary_asg="web-canary", baseline_asg="web-baseline")
    open_source(policy)
    assert policy.actions.production_asg == "web-prod"  # moved to `actions:` (read for one more version)


UNKNOWN_HOST = "api.no-such-host.invalid"  # RFC 6761: .invalid names never resolve


def test_an_unknown_host_is_could_not_judge_at_once_not_a_blip_to_retry(env):
    """A misspelt DD_SITE or GATE_DATADOG_URL used to be retried for the whole budget (58 s)."""
    import socket

    try:
        socket.getaddrinfo(UNKNOWN_HOST, 443)
        pytest.skip(f"this machine's resolver answers for {UNKNOWN_HOST}")
    except socket.gaierror as e:
        if e.errno != socket.EAI_NONAME:
            pytest.skip(f"this machine's resolver cannot say a name does not exist ({e})")
    env.setenv("GATE_DATADOG_URL", f"https://user:secret@{UNKNOWN_HOST}")
    source = open_source(datadog_policy(retry_budget=30))
    waits = []
    source.sleep = waits.append
    with pytest.raises(SourceError) as raised:
        source.fetch(query(METRICS, 1_700_000_000, 1_700_000_600))
    message = str(raised.value)
    assert f"the host {UNKNOWN_HOST} does not exist" in message and "DD_SITE" in message
    assert "secret" not in message
    assert waits == [] and source.requests == 1


def test_a_temporary_dns_failure_is_still_retried(env, monkeypatch):
    import socket

    real = socket.getaddrinfo

    def resolver_down(host, *args, **kwargs):
        if host == UNKNOWN_HOST:
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver_down)
    env.setenv("GATE_DATADOG_URL", f"https://{UNKNOWN_HOST}")
    source = open_source(datadog_policy(retry_budget=2))
    waits = []
    source.sleep = waits.append
    with pytest.raises(SourceError, match="retry budget 2s spent"):
        source.fetch(query(METRICS, 1_700_000_000, 1_700_000_600))
    assert waits and source.requests > 1
