"""What moto cannot show: percentiles, pagination, the 500-query limit, throttling, refusals and
the retention periods, with botocore's Stubber checking every request the source sends."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import boto3
import numpy as np
import pytest
from botocore.stub import ANY, Stubber

from gate.errors import PolicyError, SourceError
from gate.policy import parse_policy
from gate.sources import Query
from gate.sources.cloudwatch import CloudWatchSource, choose_period, from_policy, parse_options

DAY = 86400
NOW = 1_800_000_000 // 60 * 60  # a fixed "now", on a minute


def policy(metrics=None, **options):
    metrics = metrics or [
        {"name": "latency", "kind": "gauge",
         "queries": {"cloudwatch": {"namespace": "AWS/ApplicationELB", "metric": "TargetResponseTime",
                                    "stat": "p99", "dimensions": {"TargetGroup": "{target_group}",
                                                                  "LoadBalancer": "app/web/1"}}}},
    ]
    return parse_policy({
        "name": "web",
        "source": {"type": "cloudwatch", "options": {
            "groups": {"canary": {"target_group": "targetgroup/c/1"}, "baseline": {"target_group": "targetgroup/b/2"}},
            **options}},
        "canary": {"scope": "web-canary"}, "baseline": {"scope": "web-baseline"},
        "metrics": metrics,
    })


class Clock:
    def __init__(self):
        self.now = float(NOW)
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def cloudwatch():
    client = boto3.client("cloudwatch", region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def source(client, p, clock=None):
    clock = clock or Clock()
    return CloudWatchSource(p, parse_options(p), client=client, clock=clock, sleep=clock.sleep)


def at(t: int) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def query(p, start, end, baseline=True, step=60):
    return Query(tuple(p.metrics), "web-canary", "web-baseline" if baseline else None, start, end, step)


def test_percentile_pages_are_merged(cloudwatch):
    client, stubber = cloudwatch
    p = policy()
    start, end = NOW - 600, NOW
    expected = {
        "MetricDataQueries": [
            {"Id": "q0", "ReturnData": True, "MetricStat": {
                "Metric": {"Namespace": "AWS/ApplicationELB", "MetricName": "TargetResponseTime",
                           "Dimensions": [{"Name": "LoadBalancer", "Value": "app/web/1"},
                                          {"Name": "TargetGroup", "Value": "targetgroup/c/1"}]},
                "Period": 60, "Stat": "p99"}},
            {"Id": "q1", "ReturnData": True, "MetricStat": {
                "Metric": {"Namespace": "AWS/ApplicationELB", "MetricName": "TargetResponseTime",
                           "Dimensions": [{"Name": "LoadBalancer", "Value": "app/web/1"},
                                          {"Name": "TargetGroup", "Value": "targetgroup/b/2"}]},
                "Period": 60, "Stat": "p99"}},
        ],
        "StartTime": at(start), "EndTime": at(NOW), "ScanBy": "TimestampAscending",
    }
    stubber.add_response("get_metric_data", {
        "MetricDataResults": [
            {"Id": "q0", "StatusCode": "PartialData", "Timestamps": [at(start), at(start + 60)], "Values": [0.5, 0.6]},
            {"Id": "q1", "StatusCode": "PartialData", "Timestamps": [at(start)], "Values": [0.4]},
        ],
        "NextToken": "page-2",
    }, expected)
    stubber.add_response("get_metric_data", {
        "MetricDataResults": [
            {"Id": "q0", "StatusCode": "Complete", "Timestamps": [at(NOW - 60)], "Values": [0.9]},
            {"Id": "q1", "StatusCode": "Complete", "Timestamps": [at(start + 60)], "Values": [0.45]},
        ],
    }, {**expected, "NextToken": "page-2"})
    seen = source(client, p).fetch(query(p, start, NOW + 59))  # NOW's minute is not over yet
    canary = dict(zip(seen.canary.timestamps.tolist(), seen.canary.values["latency"].tolist()))
    assert len(canary) == 10 and seen.canary.timestamps[-1] == NOW - 60
    assert canary[start] == 0.5 and canary[start + 60] == 0.6 and canary[NOW - 60] == 0.9
    assert math.isnan(canary[start + 120])
    baseline = seen.baseline.values["latency"]
    assert baseline[0] == 0.4 and baseline[1] == 0.45 and math.isnan(baseline[2])


def test_queries_go_500_per_call(cloudwatch):
    client, stubber = cloudwatch
    metrics = [{"name": f"m{i}", "kind": "gauge", "queries": {"cloudwatch": {
        "namespace": "AWS/EC2", "metric": "CPUUtilization", "stat": "Average"}}} for i in range(251)]
    p = policy(metrics)
    sizes = []
    for size in (500, 2):
        stubber.add_response("get_metric_data", {"MetricDataResults": [
            {"Id": f"q{i}", "StatusCode": "Complete", "Timestamps": [at(NOW - 60)], "Values": [1.0]}
            for i in range(len(sizes) * 500, len(sizes) * 500 + size)]}, {
            "MetricDataQueries": ANY, "StartTime": ANY, "EndTime": ANY, "ScanBy": ANY})
        sizes.append(size)
    calls = []
    client.meta.events.register("provide-client-params.cloudwatch.GetMetricData",
                                lambda params, **_: calls.append(len(params["MetricDataQueries"])))
    seen = source(client, p).fetch(query(p, NOW - 120, NOW))
    assert calls == [500, 2]
    assert seen.canary.values["m0"][-1] == 1.0 and seen.baseline.values["m250"][-1] == 1.0


def test_throttling_is_retried_with_backoff(cloudwatch):
    client, stubber = cloudwatch
    p = policy()
    stubber.add_client_error("get_metric_data", "Throttling", "Rate exceeded", 400)
    stubber.add_client_error("get_metric_data", "LimitExceeded", "Too many datapoints", 400)
    stubber.add_response("get_metric_data", {"MetricDataResults": []})
    clock = Clock()
    seen = source(client, p, clock).fetch(query(p, NOW - 300, NOW))
    assert len(clock.slept) == 2 and clock.slept[1] > clock.slept[0] * 0.5 > 0
    assert len(seen.canary) == 5 and all(math.isnan(v) for v in seen.canary.values["latency"])


def test_throttling_without_end_gives_up_within_the_budget():
    client = boto3.client("cloudwatch", region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    p = policy(retry_seconds=30)
    clock = Clock()
    with Stubber(client) as stubber:  # more errors queued than it will ask for
        for _ in range(20):
            stubber.add_client_error("get_metric_data", "Throttling", "Rate exceeded", 400)
        with pytest.raises(SourceError, match=r"kept throttling GetMetricData \(Throttling\) for 30s"):
            source(client, p, clock).fetch(query(p, NOW - 300, NOW))
    assert sum(clock.slept) <= 30 and len(clock.slept) >= 3


def test_a_server_error_is_retried_by_the_gate_alone(cloudwatch, monkeypatch):
    """The source's client makes one attempt per call (botocore's retries off): its own loop asks
    again after a 5xx, within the budget, so the two layers never multiply."""
    client, stubber = cloudwatch
    p = policy()
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    own = CloudWatchSource(p, parse_options(p)).client  # the client it makes when none is given
    assert own.meta.config.retries["total_max_attempts"] == 1
    stubber.add_client_error("get_metric_data", "InternalFailure", "try again", 500)
    stubber.add_response("get_metric_data", {"MetricDataResults": []})
    clock = Clock()
    seen = source(client, p, clock).fetch(query(p, NOW - 300, NOW))
    assert len(clock.slept) == 1 and len(seen.canary) == 5


def test_access_denied_is_a_clear_error(cloudwatch):
    client, stubber = cloudwatch
    p = policy()
    stubber.add_client_error("get_metric_data", "AccessDenied", "User is not authorized", 403)
    with pytest.raises(SourceError, match=r"refused GetMetricData \(AccessDenied\).*cloudwatch:GetMetricData"):
        source(client, p).fetch(query(p, NOW - 300, NOW))


def test_a_forbidden_query_is_not_missing_data(cloudwatch):
    client, stubber = cloudwatch
    p = policy()
    stubber.add_response("get_metric_data", {"MetricDataResults": [
        {"Id": "q0", "StatusCode": "Forbidden", "Timestamps": [], "Values": [],
         "Messages": [{"Code": "Forbidden", "Value": "no access to the namespace"}]}]})
    with pytest.raises(SourceError, match="Forbidden: no access to the namespace"):
        source(client, p).fetch(query(p, NOW - 300, NOW))


def test_old_history_is_read_at_the_resolution_cloudwatch_keeps(cloudwatch):
    client, stubber = cloudwatch
    p = policy()
    start = NOW - 20 * DAY
    stubber.add_response("get_metric_data", {"MetricDataResults": [
        {"Id": "q0", "StatusCode": "Complete", "Timestamps": [at(start), at(start + 300)], "Values": [1.0, 2.0]}]},
        {"MetricDataQueries": ANY, "StartTime": at(start), "EndTime": at(start + 3600), "ScanBy": ANY})
    calls = []
    client.meta.events.register("provide-client-params.cloudwatch.GetMetricData",
                                lambda params, **_: calls.append(params["MetricDataQueries"][0]["MetricStat"]["Period"]))
    seen = source(client, p).fetch(query(p, start, start + 3600, baseline=False))
    assert calls == [300]
    assert seen.canary.step == 300 and len(seen.canary) == 12
    assert seen.canary.values["latency"][:2].tolist() == [1.0, 2.0]


def test_period_rules():
    assert choose_period(60, NOW - 7 * DAY, NOW) == 60
    assert choose_period(120, NOW - 14 * DAY, NOW) == 120
    assert choose_period(60, NOW - 16 * DAY, NOW) == 300
    assert choose_period(120, NOW - 16 * DAY, NOW) == 600
    assert choose_period(60, NOW - 64 * DAY, NOW) == 3600
    with pytest.raises(PolicyError, match="multiples of 60"):
        choose_period(30, NOW - DAY, NOW)
    with pytest.raises(PolicyError, match="455 days"):
        choose_period(60, NOW - 500 * DAY, NOW)


def test_nothing_complete_yet_asks_nothing(cloudwatch):
    client, _ = cloudwatch  # no response queued: any call would fail the test
    p = policy()
    seen = source(client, p).fetch(query(p, NOW, NOW + 30))
    assert len(seen.canary) == 0 and len(seen.baseline) == 0 and "latency" in seen.canary.values


@pytest.mark.parametrize("scope, message", [
    ("web\ncanary", "control characters"),
    ("   ", "must not be empty"),
    ("w" * 1025, "longer than 1024"),
])
def test_bad_scope_values_are_refused(cloudwatch, scope, message):
    client, _ = cloudwatch
    p = policy([{"name": "cpu", "kind": "gauge", "queries": {"cloudwatch": {
        "namespace": "AWS/EC2", "metric": "CPUUtilization", "stat": "Average"}}}])
    with pytest.raises(PolicyError, match=message):
        source(client, p).fetch(Query(tuple(p.metrics), scope, None, NOW - 300, NOW, 60))


@pytest.mark.parametrize("change, message", [
    ({"stat": "Median"}, "metrics.cpu.queries.cloudwatch.stat: .*Median"),
    ({"namespace": ""}, "metrics.cpu.queries.cloudwatch.namespace"),
    ({"dimensions": {"Target\x00Group": "x"}}, "control characters"),
    ({"color": "red"}, "metrics.cpu.queries.cloudwatch.color: Extra inputs"),
    (None, "metrics.cpu.queries.cloudwatch: missing"),
])
def test_bad_queries_are_policy_errors(change, message):
    cloudwatch = {"namespace": "AWS/EC2", "metric": "CPUUtilization", "stat": "Average"}
    queries = {} if change is None else {"cloudwatch": {**cloudwatch, **change}}
    with pytest.raises(PolicyError, match=message):
        from_policy(policy([{"name": "cpu", "kind": "gauge", "queries": queries}]))


def test_a_count_is_a_sum():
    with pytest.raises(PolicyError, match="count is read as a Sum"):
        from_policy(policy([{"name": "errors", "kind": "count", "queries": {"cloudwatch": {
            "namespace": "AWS/ApplicationELB", "metric": "HTTPCode_Target_5XX_Count", "stat": "Average"}}}]))


@pytest.mark.parametrize("stat", ["SampleCount", "Average", "Maximum", "p99", "tm90", "IQM"])
def test_a_count_is_read_as_a_sum_only(stat):
    """Review (sources): `SampleCount` was accepted for a count; it counts datapoints, not events."""
    with pytest.raises(PolicyError) as e:
        from_policy(policy([{"name": "errors", "kind": "count", "queries": {"cloudwatch": {
            "namespace": "AWS/ApplicationELB", "metric": "HTTPCode_Target_5XX_Count", "stat": stat}}}]))
    assert str(e.value).startswith(
        f"metrics.errors.queries.cloudwatch.stat: a count is read as a Sum per period (got {stat!r})"), str(e.value)


@pytest.mark.parametrize("stat", ["Average", "Sum", "Minimum", "Maximum", "SampleCount", "IQM", "p99", "p99.9",
                                  "tm90", "TM(10%:90%)", "wm95", "tc90", "ts99", "pr99"])
def test_a_gauge_may_read_any_statistic(stat):
    source = from_policy(policy([{"name": "latency", "kind": "gauge", "queries": {"cloudwatch": {
        "namespace": "AWS/ApplicationELB", "metric": "TargetResponseTime", "stat": stat}}}]))
    assert source.queries["latency"].stat == stat


def test_unknown_options_and_unset_template_keys_are_refused(cloudwatch):
    with pytest.raises(PolicyError, match="source.options.retries: Extra inputs"):
        from_policy(policy(retries=3))
    client, _ = cloudwatch
    p = policy([{"name": "latency", "kind": "gauge", "queries": {"cloudwatch": {
        "namespace": "AWS/ApplicationELB", "metric": "TargetResponseTime", "stat": "p99",
        "dimensions": {"TargetGroup": "{tg}"}}}}])
    with pytest.raises(PolicyError, match=r"\{tg\} is not set for the canary group"):
        source(client, p).fetch(query(p, NOW - 300, NOW))


def test_the_example_policy_builds_its_queries(cloudwatch):
    from pathlib import Path

    from gate.policy import load_policy

    client, stubber = cloudwatch
    p = load_policy(Path(__file__).parents[1] / "examples" / "cloudwatch.yaml")
    sent = []
    client.meta.events.register("provide-client-params.cloudwatch.GetMetricData",
                                lambda params, **_: sent.extend(params["MetricDataQueries"]))
    stubber.add_response("get_metric_data", {"MetricDataResults": []})
    source(client, p).fetch(query(p, NOW - 300, NOW))
    by_id = {q["Id"]: q["MetricStat"] for q in sent}
    assert len(by_id) == 12
    latency = by_id["q2"]
    assert latency["Stat"] == "p99" and {"Name": "TargetGroup", "Value": "targetgroup/web-canary/73e2d6bc24d8a067"} \
        in latency["Metric"]["Dimensions"]
    assert by_id["q6"]["Metric"]["Dimensions"] == [{"Name": "AutoScalingGroupName", "Value": "web-baseline"}]
    # TargetResponseTime is in seconds: with its unit the latency's tail is judged too.
    latency_metric = next(m for m in p.metrics if m.name == "latency")
    assert latency_metric.unit == "s" and latency_metric.judges_tail


def test_the_example_policy_counts_the_5xx_a_crashing_canary_makes_the_alb_answer(cloudwatch):
    """Targets that refuse connections get 502/503 from the ALB itself, never counted as target
    5xx: without a per-group count of them a dying canary reads as error-free."""
    from pathlib import Path

    from gate.policy import load_policy

    p = load_policy(Path(__file__).parents[1] / "examples" / "cloudwatch.yaml")
    [connection] = [m for m in p.metrics if m.queries["cloudwatch"]["metric"] == "TargetConnectionErrorCount"]
    assert (connection.kind, connection.denominator, connection.bad_direction) == ("count", "requests", "increase")
    assert connection.queries["cloudwatch"]["dimensions"]["TargetGroup"] == "{target_group}"
    assert not connection.muted


ERRORS_AND_REQUESTS = [
    {"name": "errors", "kind": "count", "denominator": "requests", "queries": {"cloudwatch": {
        "namespace": "AWS/ApplicationELB", "metric": "HTTPCode_Target_5XX_Count", "stat": "Sum",
        "dimensions": {"TargetGroup": "{target_group}"}}}},
    {"name": "requests", "kind": "count", "bad_direction": "none", "queries": {"cloudwatch": {
        "namespace": "AWS/ApplicationELB", "metric": "RequestCount", "stat": "Sum",
        "dimensions": {"TargetGroup": "{target_group}"}}}},
]


def test_old_history_counts_are_on_the_interval_scale(cloudwatch):
    """A 5-minute Sum read for a 1-minute interval is given per minute, as the window's counts
    are: compared with 1-minute counts, a 5-minute sum would make the errors expected 5 times
    too many (a regression would pass). Gauges are averages: as they are."""
    client, stubber = cloudwatch
    p = policy([*ERRORS_AND_REQUESTS, {"name": "cpu", "kind": "gauge", "queries": {"cloudwatch": {
        "namespace": "AWS/EC2", "metric": "CPUUtilization", "stat": "Average"}}}])
    start = NOW - 20 * DAY
    stubber.add_response("get_metric_data", {"MetricDataResults": [
        {"Id": "q0", "StatusCode": "Complete", "Timestamps": [at(start)], "Values": [50.0]},
        {"Id": "q1", "StatusCode": "Complete", "Timestamps": [at(start), at(start + 300)], "Values": [5000.0, 2500.0]},
        {"Id": "q2", "StatusCode": "Complete", "Timestamps": [at(start)], "Values": [42.0]}]})
    seen = source(client, p).fetch(query(p, start, start + 900, baseline=False))
    assert seen.canary.step == 300
    assert seen.canary.values["errors"].tolist()[:2] == [10.0, 0.0]  # 50 / 5; 0 where requests were counted
    assert seen.canary.values["requests"].tolist()[:2] == [1000.0, 500.0]
    assert seen.canary.values["cpu"][0] == 42.0


def test_recent_counts_are_not_scaled(cloudwatch):
    client, stubber = cloudwatch
    p = policy(ERRORS_AND_REQUESTS)
    stubber.add_response("get_metric_data", {"MetricDataResults": [
        {"Id": "q0", "StatusCode": "Complete", "Timestamps": [at(NOW - 120)], "Values": [7.0]},
        {"Id": "q1", "StatusCode": "Complete", "Timestamps": [at(NOW - 120), at(NOW - 60)], "Values": [900.0, 800.0]}]})
    seen = source(client, p).fetch(query(p, NOW - 120, NOW, baseline=False))
    assert seen.canary.values["errors"].tolist() == [7.0, 0.0]
    assert seen.canary.values["requests"].tolist() == [900.0, 800.0]


def test_a_count_that_never_reported_is_no_data_not_zero(cloudwatch):
    """A misspelt error metric answers no datapoint at all: with requests reported, filling zeros
    would read as "no errors" and could pass a regression. No datapoint anywhere, in either group,
    in the history or the window: NaN. One datapoint somewhere: the query is right, zeros are."""
    client, stubber = cloudwatch
    p = policy(ERRORS_AND_REQUESTS)
    requests = {"StatusCode": "Complete", "Timestamps": [at(NOW - 180), at(NOW - 120), at(NOW - 60)],
                "Values": [900.0, 800.0, 700.0]}
    s = source(client, p)
    stubber.add_response("get_metric_data", {"MetricDataResults": [  # the history: no errors anywhere
        {"Id": "q0", "StatusCode": "Complete", "Timestamps": [], "Values": []}, {"Id": "q1", **requests},
        {"Id": "q2", "StatusCode": "Complete", "Timestamps": [], "Values": []}, {"Id": "q3", **requests}]})
    history = s.fetch(query(p, NOW - 180, NOW))
    for frame in (history.canary, history.baseline):
        assert np.isnan(frame.values["errors"]).all() and (frame.values["requests"] > 0).all()
    stubber.add_response("get_metric_data", {"MetricDataResults": [  # the window: the baseline has one
        {"Id": "q0", "StatusCode": "Complete", "Timestamps": [], "Values": []}, {"Id": "q1", **requests},
        {"Id": "q2", "StatusCode": "Complete", "Timestamps": [at(NOW - 120)], "Values": [3.0]},
        {"Id": "q3", **requests}]})
    window = s.fetch(query(p, NOW - 180, NOW))
    assert window.canary.values["errors"].tolist() == [0.0, 0.0, 0.0]
    assert window.baseline.values["errors"].tolist() == [0.0, 3.0, 0.0]


class CaseCloudWatch:
    """GetMetricData over a corpus case at any period (Sum or Average per period, no datapoint for
    a period without 5xx, as the ALB), for the judge end to end. History-only: the group's history
    is the case's baseline before the deploy, its window the canary's."""

    def __init__(self, case):
        from gate.series import Frame

        b, c = case.frames["baseline"], case.frames["canary"]
        before = b.timestamps < case.deployed_at
        self.frame = Frame(case.step, np.concatenate([b.timestamps[before], c.timestamps]),
                           {k: np.concatenate([b.values[k][before], c.values[k]]) for k in c.values})
        self.periods: list[int] = []

    def get_metric_data(self, MetricDataQueries, StartTime, EndTime, **_):  # noqa: N803
        start, end = int(StartTime.timestamp()), int(EndTime.timestamp())
        t, results = self.frame.timestamps, []
        for q in MetricDataQueries:
            stat = q["MetricStat"]
            name, period = stat["Metric"]["MetricName"], stat["Period"]
            self.periods.append(period)
            x = self.frame.values[name]
            stamps, values = [], []
            for bucket in range(start, end, period):
                chunk = x[(t >= bucket) & (t < bucket + period)]
                chunk = chunk[np.isfinite(chunk)]
                value = float(chunk.sum() if stat["Stat"] == "Sum" else chunk.mean()) if len(chunk) else None
                if value is not None and not (name == "errors" and value == 0):
                    stamps.append(at(bucket))
                    values.append(value)
            results.append({"Id": q["Id"], "StatusCode": "Complete", "Timestamps": stamps, "Values": values})
        return {"MetricDataResults": results}


def test_history_read_at_5_minutes_expects_per_minute_errors(corpus):
    """k1m-error-rate-010 judged history-only: with 14 days of history (1-minute points) the
    errors are expected at ~44.8 per minute (the history's ~75.6 a minute at the window's own
    requests: a ratio) and the regression fails; with 16 days CloudWatch gives 5-minute sums,
    which read as-is would expect five times as many and pass it."""
    from gate.analysis import Analysis
    from gate.sources.replay import load_case

    case = load_case(corpus / "k1m-error-rate-010")
    expected = {}
    for history in ("14d", "16d"):
        data = case.policy().model_dump()
        data.update(baseline=None, history=history, source={"type": "cloudwatch", "options": {}})
        for m in data["metrics"]:
            m["queries"] = {"cloudwatch": {"namespace": "Case", "metric": m["name"],
                                           "stat": "Sum" if m["kind"] == "count" else "Average"}}
        p = parse_policy(data)
        client = CaseCloudWatch(case)
        s = CloudWatchSource(p, parse_options(p), client=client, clock=lambda: case.end_at)
        verdict = Analysis(p, s, "r", case.deployed_at, canary="canary").evaluate(case.end_at).to_dict()
        assert client.periods[0] == (60 if history == "14d" else 300)  # the history's period
        errors = next(m for m in verdict["metrics"] if m["name"] == "errors")
        assert verdict["verdict"] == "fail" and errors["verdict"] == "fail", (history, errors)
        expected[history] = errors["expected"]
    assert expected["14d"] == pytest.approx(44.8, rel=0.02)
    assert expected["16d"] == pytest.approx(expected["14d"], rel=0.02)


# -- non-data and groups that cannot be told apart (issue 17) ------------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_count_answered_nan_or_infinite_stays_missing_never_zero(cloudwatch, bad):
    """The canary's 5xx came back as NaN or an infinity for minutes with requests: unknown, not
    "no errors" (read as zero, a +191% canary passed)."""
    client, stubber = cloudwatch
    p = policy(ERRORS_AND_REQUESTS)
    stamps = [at(NOW - 180), at(NOW - 120), at(NOW - 60)]
    requests = {"StatusCode": "Complete", "Timestamps": stamps, "Values": [900.0, 800.0, 700.0]}
    stubber.add_response("get_metric_data", {"MetricDataResults": [
        {"Id": "q0", "StatusCode": "Complete", "Timestamps": stamps, "Values": [9.0, bad, bad]},
        {"Id": "q1", **requests},
        {"Id": "q2", "StatusCode": "Complete", "Timestamps": [at(NOW - 180)], "Values": [bad]},
        {"Id": "q3", **requests}]})
    seen = source(client, p).fetch(query(p, NOW - 180, NOW))
    assert seen.canary.values["errors"][0] == 9.0
    assert np.isnan(seen.canary.values["errors"][1:]).all()
    assert np.isnan(seen.baseline.values["errors"][0]) and seen.baseline.values["errors"][1:].tolist() == [0.0, 0.0]


def partial(ids=("q0", "q1"), values=(0.5,)):
    stamps = [at(NOW - 60 * (i + 1)) for i in range(len(values))]
    return {"MetricDataResults": [{"Id": i, "StatusCode": "PartialData", "Timestamps": stamps, "Values": list(values)}
                                  for i in ids]}


def test_partial_data_without_a_next_page_is_asked_again(cloudwatch):
    client, stubber = cloudwatch
    p = policy()
    clock = Clock()
    stubber.add_response("get_metric_data", partial())
    stubber.add_response("get_metric_data", {"MetricDataResults": [
        {"Id": i, "StatusCode": "Complete", "Timestamps": [at(NOW - 120), at(NOW - 60)], "Values": [0.5, 0.7]}
        for i in ("q0", "q1")]})
    seen = source(client, p, clock).fetch(query(p, NOW - 120, NOW))
    assert seen.canary.values["latency"].tolist() == [0.5, 0.7]  # the complete answer, not merged with the partial
    assert len(clock.slept) == 1


def test_partial_data_without_a_next_page_until_the_budget_ends_is_could_not_judge(cloudwatch):
    client, stubber = cloudwatch
    p = policy(retry_seconds=5)
    clock = Clock()
    for _ in range(20):
        stubber.add_response("get_metric_data", partial())
    with pytest.raises(SourceError, match=r"kept answering PartialData without a next page \(queries q0, q1\) for 5s"):
        source(client, p, clock).fetch(query(p, NOW - 120, NOW))
    assert clock.now - NOW <= 5 and clock.slept
    stubber._queue.clear()  # the unused answers: the source gave up within its budget


def test_one_target_group_for_both_groups_is_refused(cloudwatch):
    """Latency and errors of one target group compared with themselves: any canary passes."""
    client, _ = cloudwatch
    p = policy(groups={"canary": {"target_group": "targetgroup/web/1"}, "baseline": {"target_group": "targetgroup/web/1"}})
    with pytest.raises(PolicyError, match=r"metrics\.latency\.queries\.cloudwatch\.dimensions: the canary and the "
                                          r"baseline resolve to the same dimensions \(LoadBalancer=app/web/1, "
                                          r"TargetGroup=targetgroup/web/1\)"):
        source(client, p).fetch(query(p, NOW - 120, NOW))
    # History-only (no baseline group): nothing to tell apart.
    p = policy(groups={"canary": {"target_group": "targetgroup/web/1"}})
    _.add_response("get_metric_data", {"MetricDataResults": []})
    source(client, p).fetch(query(p, NOW - 120, NOW, baseline=False))


CPU = {"name": "cpu", "kind": "gauge", "queries": {"cloudwatch": {
    "namespace": "AWS/EC2", "metric": "CPUUtilization", "stat": "Average"}}}


def test_a_scope_override_a_metric_cannot_follow_is_refused(cloudwatch):
    """`--canary other-asg` moves the {scope} dimensions only: the target-group metrics would
    still read the policy's canary group."""
    client, stubber = cloudwatch
    p = policy([CPU, *policy().model_dump(mode="json")["metrics"]])
    moved = Query(tuple(p.metrics), "web-canary-2", "web-baseline", NOW - 120, NOW, 60)
    with pytest.raises(PolicyError, match=r"canary scope 'web-canary-2' is not the policy's \('web-canary'\), but the "
                                          r"CloudWatch dimensions of latency do not use \{scope\}"):
        source(client, p).fetch(moved)
    # A policy of {scope} dimensions only follows any scope; the policy's own scope always applies.
    only_cpu = policy([CPU])
    for q in (Query(tuple(only_cpu.metrics), "web-canary-2", "web-baseline-2", NOW - 120, NOW, 60),
              query(p, NOW - 120, NOW)):
        stubber.add_response("get_metric_data", {"MetricDataResults": []})
        source(client, only_cpu if q.canary.endswith("-2") else p).fetch(q)


def test_a_release_in_the_policy_scope_is_the_policy_scope(cloudwatch):
    client, stubber = cloudwatch
    data = policy().model_dump(mode="json", exclude_none=True)
    data["canary"]["scope"] = "web-{release}"
    p = parse_policy(data)
    stubber.add_response("get_metric_data", {"MetricDataResults": []})
    source(client, p).fetch(Query(tuple(p.metrics), "web-1.2.3", "web-baseline", NOW - 120, NOW, 60))
    with pytest.raises(PolicyError, match="canary scope 'api-1.2.3' is not the policy's"):
        source(client, p).fetch(Query(tuple(p.metrics), "api-1.2.3", "web-baseline", NOW - 120, NOW, 60))
