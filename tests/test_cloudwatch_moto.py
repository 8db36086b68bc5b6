"""The CloudWatch source against a real moto server: corpus cases are published as CloudWatch
metrics of two Auto Scaling groups (and their ALB target groups), then judged by `gate check`."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from gate.errors import PolicyError, SourceError
from gate.policy import parse_policy
from gate.sources import Query, open_source
from gate.sources.replay import load_case
from tests.conftest import run_gate
from tests.moto_server import moto_server  # noqa: F401  (fixture)

LOAD_BALANCER = "app/web/50dc6c495c0c9188"
TARGET_GROUPS = {"canary": "targetgroup/web-canary/73e2d6bc24d8a067",
                 "baseline": "targetgroup/web-baseline/2a6e1c0d5b3e9f41"}
ASG = {"canary": "web-canary", "baseline": "web-baseline"}

# metric -> (namespace, CloudWatch name, stat, dimensions): what the example policy reads.
READ = {
    "cpu": ("AWS/EC2", "CPUUtilization", "Average", {"AutoScalingGroupName": "{scope}"}),
    "memory": ("CWAgent", "mem_used_percent", "Average", {"AutoScalingGroupName": "{scope}"}),
    "latency": ("AWS/ApplicationELB", "TargetResponseTime", "Average",
                {"TargetGroup": "{target_group}", "LoadBalancer": LOAD_BALANCER}),
    "errors": ("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "Sum",
               {"TargetGroup": "{target_group}", "LoadBalancer": LOAD_BALANCER}),
    "requests": ("AWS/ApplicationELB", "RequestCount", "Sum",
                 {"TargetGroup": "{target_group}", "LoadBalancer": LOAD_BALANCER}),
}


def policy_data(history: str = "1h", **options) -> dict:
    metrics = []
    for name, kind, direction, tolerance in (
        ("cpu", "gauge", "increase", 0.1), ("memory", "gauge", "increase", 0.1),
        ("latency", "gauge", "increase", 0.1), ("errors", "count", "increase", 0.5),
        ("requests", "count", "none", None),
    ):
        namespace, metric, stat, dims = READ[name]
        m = {"name": name, "kind": kind, "bad_direction": direction, "tolerance": tolerance,
             "queries": {"cloudwatch": {"namespace": namespace, "metric": metric, "stat": stat,
                                        "dimensions": dims}}}
        if name == "errors":
            m["denominator"] = "requests"
        metrics.append(m)
    return {
        "name": "web",
        "source": {"type": "cloudwatch", "options": {
            "region": "us-east-1",
            "groups": {g: {"target_group": tg} for g, tg in TARGET_GROUPS.items()},
            **options}},
        "canary": {"scope": ASG["canary"]}, "baseline": {"scope": ASG["baseline"]},
        "interval": "1m", "lifetime": "1h", "history": history,
        "metrics": metrics,
    }


def write_policy(tmp_path: Path, **kw) -> Path:
    path = tmp_path / "cloudwatch.yaml"
    path.write_text(yaml.safe_dump(policy_data(**kw)))
    return path


def publish_case(server, case_dir: Path, history: int = 3600) -> tuple[int, int]:
    """Put a case's rows (the history before the deploy and the whole window) as CloudWatch
    metrics, shifted so that the last complete minute is the case's end. Zero 5xx counts are
    not published, as the ALB does. Returns the shifted (deployed_at, shift)."""
    case = load_case(case_dir)
    now = int(time.time()) // 60 * 60
    shift = now - 60 - case.end_at
    batches: dict[str, list[dict]] = {}
    for group, frame in case.frames.items():
        part = frame.between(case.deployed_at - history, case.end_at)
        for name, (namespace, metric, _, dims) in READ.items():
            # Sorted by name as the source sends them: moto (unlike CloudWatch) matches
            # dimension lists in order.
            dimensions = [{"Name": k, "Value": v.format(scope=ASG[group], target_group=TARGET_GROUPS[group])}
                          for k, v in sorted(dims.items())]
            for t, value in zip(part.timestamps, part.values[name]):
                if math.isnan(value) or (name == "errors" and value == 0):
                    continue
                batches.setdefault(namespace, []).append({
                    "MetricName": metric, "Dimensions": dimensions, "Value": float(value),
                    "Timestamp": datetime.fromtimestamp(int(t) + shift, UTC)})
    cloudwatch = server.client("cloudwatch")
    for namespace, data in batches.items():
        for i in range(0, len(data), 1000):
            cloudwatch.put_metric_data(Namespace=namespace, MetricData=data[i:i + 1000])
    return case.deployed_at + shift, shift


@pytest.fixture
def aws(moto_server):  # noqa: F811
    moto_server.reset()
    return moto_server


def check(aws, tmp_path: Path, policy: Path, deployed_at: int, *extra: str):
    # The published cases end a minute before the clock: on a busy machine the check may start
    # a minute or two later, past the grace a live first check of an ended window gets
    # (gate/lifecycle.py). What these tests judge is the CloudWatch path, so on purpose.
    return run_gate("check", "web-42", "--policy", policy, "--deployed-at", str(deployed_at), "--examine-past",
                    "--store", tmp_path / "gate.sqlite", "--json", *extra, env=aws.env, cwd=tmp_path,
                    timeout=120)


def test_fetch_lays_both_groups_on_the_grid(aws, corpus):
    deployed_at, shift = publish_case(aws, corpus / "k1m-aa-079")  # has minutes without 5xx
    policy = parse_policy(policy_data())
    source = open_source(policy)
    case = load_case(corpus / "k1m-aa-079")
    now = deployed_at + 30 * 60 + 17  # mid-minute: the current minute is incomplete
    seen = source.fetch(Query(tuple(policy.metrics), ASG["canary"], ASG["baseline"], deployed_at, now, 60))
    assert seen.canary.step == 60
    assert seen.canary.timestamps[0] == deployed_at
    assert seen.canary.timestamps[-1] == deployed_at + 29 * 60  # the minute [T, T+60) ended before now
    recorded = case.frames["canary"].between(case.deployed_at, case.deployed_at + 29 * 60)
    for name in ("cpu", "memory", "latency", "requests", "errors"):
        assert seen.canary.values[name] == pytest.approx(recorded.values[name], nan_ok=True), name
    base = case.frames["baseline"].between(case.deployed_at, case.deployed_at + 29 * 60)
    assert seen.baseline.values["cpu"] == pytest.approx(base.values["cpu"], nan_ok=True)
    # Zero 5xx minutes were not published; with requests reported they read as 0, not missing.
    zeros = recorded.values["errors"] == 0
    assert zeros.any()
    assert (seen.canary.values["errors"][zeros] == 0).all()


def test_missing_count_without_traffic_stays_missing(aws):
    policy = parse_policy(policy_data())
    source = open_source(policy)
    now = int(time.time()) // 60 * 60
    cloudwatch = aws.client("cloudwatch")
    dims = [{"Name": "LoadBalancer", "Value": LOAD_BALANCER}, {"Name": "TargetGroup", "Value": TARGET_GROUPS["canary"]}]
    cloudwatch.put_metric_data(Namespace="AWS/ApplicationELB", MetricData=[
        {"MetricName": "RequestCount", "Dimensions": dims, "Value": 100.0,
         "Timestamp": datetime.fromtimestamp(now - 300, UTC)}])
    window = Query(tuple(policy.metrics), ASG["canary"], None, now - 600, now, 60)
    # No 5xx datapoint at all (a quiet group, or a misspelt query): no data, never "no errors".
    seen = source.fetch(window)
    assert all(math.isnan(v) for v in seen.canary.values["errors"])
    cloudwatch.put_metric_data(Namespace="AWS/ApplicationELB", MetricData=[
        {"MetricName": name, "Dimensions": dims, "Value": value,
         "Timestamp": datetime.fromtimestamp(now - 420, UTC)}
        for name, value in (("RequestCount", 100.0), ("HTTPCode_Target_5XX_Count", 2.0))])
    seen = open_source(policy).fetch(window)
    errors = dict(zip(seen.canary.timestamps.tolist(), seen.canary.values["errors"].tolist()))
    assert errors[now - 420] == 2
    assert errors[now - 300] == 0  # the metric reports; traffic, no 5xx datapoint: zero errors
    assert math.isnan(errors[now - 240])  # no traffic reported: unknown, not zero
    assert seen.baseline is None


def test_check_passes_an_aa_canary(aws, tmp_path, corpus):
    deployed_at, _ = publish_case(aws, corpus / "k1m-aa-014")
    # errors are fetched and reported but muted: whether the judge can already show a ratio
    # within tolerance after one hour is the judge's business (issue 3), not the source's.
    data = policy_data()
    data["metrics"][3]["muted"] = True
    policy = tmp_path / "aa.yaml"
    policy.write_text(yaml.safe_dump(data))
    result = check(aws, tmp_path, policy, deployed_at)
    assert result.returncode == 0, result.stdout + result.stderr
    verdict = json.loads(result.stdout)
    assert verdict["verdict"] == "pass"
    assert {m["name"] for m in verdict["metrics"]} >= {"cpu", "memory", "latency", "errors"}


@pytest.mark.parametrize("case", ["k1m-canary-down-012", "k1m-cpu-shift-008"])
def test_check_fails_a_clear_regression(aws, tmp_path, corpus, case):
    deployed_at, _ = publish_case(aws, corpus / case)
    result = check(aws, tmp_path, write_policy(tmp_path), deployed_at)
    assert result.returncode == 1, result.stdout + result.stderr
    assert json.loads(result.stdout)["verdict"] == "fail"


def test_check_without_any_data_never_passes(aws, tmp_path):
    deployed_at = int(time.time()) // 60 * 60 - 3600
    result = check(aws, tmp_path, write_policy(tmp_path), deployed_at)
    assert result.returncode in (1, 4), result.stdout + result.stderr


def test_bad_query_is_a_one_line_error(aws, tmp_path):
    data = policy_data()
    data["metrics"][0]["queries"]["cloudwatch"]["stat"] = "Median"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    result = check(aws, tmp_path, path, int(time.time()) - 600)
    assert result.returncode == 4
    assert "metrics.cpu.queries.cloudwatch.stat" in result.stderr and "Median" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("stat", ["SampleCount", "Average"])
def test_a_count_not_read_as_a_sum_is_refused_before_judging(aws, tmp_path, corpus, stat):
    """Review (sources): a canary at 2x the error rate (k1m-error-rate-010), its 5xx counts read
    with `SampleCount`: CloudWatch counts the datapoints published each minute (one per group
    here, as an ALB node's), not the 5xx they carry, so both groups read one "error" a minute and
    the regression was judged on nothing. Refused, naming the field, before any verdict."""
    deployed_at, _ = publish_case(aws, corpus / "k1m-error-rate-010")
    data = policy_data()
    data["metrics"][3]["queries"]["cloudwatch"]["stat"] = stat
    path = tmp_path / "samplecount.yaml"
    path.write_text(yaml.safe_dump(data))
    result = check(aws, tmp_path, path, deployed_at)
    assert result.returncode == 4, result.stdout + result.stderr
    [line] = result.stderr.strip().splitlines()
    assert f"metrics.errors.queries.cloudwatch.stat: a count is read as a Sum per period (got {stat!r})" in line
    # Review (sources): it said "write stat: Sum", which on a latency metric sums seconds.
    assert "read the service's own count metric with stat: Sum" in line and "RequestCount" in line
    assert "write stat: Sum" not in line and "Traceback" not in result.stderr
    assert ("SampleCount counts the datapoints" in line) == (stat == "SampleCount")


TARGETS = {"canary": 1, "baseline": 9}  # healthy targets of each group's target group


def publish_per_target(server, case_dir: Path, shift: int, history: int = 3600) -> None:
    """RequestCountPerTarget as the ALB publishes it: each target group's requests over its
    healthy targets (TARGETS)."""
    case = load_case(case_dir)
    _, _, _, dims = READ["requests"]
    data = []
    for group, frame in case.frames.items():
        part = frame.between(case.deployed_at - history, case.end_at)
        dimensions = [{"Name": k, "Value": v.format(target_group=TARGET_GROUPS[group])}
                      for k, v in sorted(dims.items())]
        data += [{"MetricName": "RequestCountPerTarget", "Dimensions": dimensions,
                  "Value": float(value) / TARGETS[group], "Timestamp": datetime.fromtimestamp(int(t) + shift, UTC)}
                 for t, value in zip(part.timestamps, part.values["requests"]) if not math.isnan(value)]
    cloudwatch = server.client("cloudwatch")
    for i in range(0, len(data), 1000):
        cloudwatch.put_metric_data(Namespace="AWS/ApplicationELB", MetricData=data[i:i + 1000])


def test_a_per_target_request_count_as_the_denominator_is_refused(aws, tmp_path, corpus):
    """Review (sources): a canary at 2x the error rate (k1m-error-rate-010) with its 5xx over
    `RequestCountPerTarget` (requests over the group's healthy targets: 1 canary target, 9
    baseline ones) read the baseline's error ratio 9x too high, and the regression passed. Not
    events: refused, naming the field and the metric to read instead, before any verdict."""
    deployed_at, shift = publish_case(aws, corpus / "k1m-error-rate-010")
    publish_per_target(aws, corpus / "k1m-error-rate-010", shift)
    data = policy_data()
    data["metrics"][4]["queries"]["cloudwatch"]["metric"] = "RequestCountPerTarget"
    path = tmp_path / "per-target.yaml"
    path.write_text(yaml.safe_dump(data))
    result = check(aws, tmp_path, path, deployed_at)
    assert result.returncode == 4, result.stdout + result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "metrics.requests.queries.cloudwatch.metric: 'RequestCountPerTarget' is requests divided by" in line
    assert "read RequestCount with stat: Sum" in line and "Traceback" not in result.stderr


def _count_reading(metric: str = "HTTPCode_Target_5XX_Count", unit: str | None = None, kind: str = "count",
                   namespace: str = "AWS/ApplicationELB") -> dict:
    data = policy_data()
    query = data["metrics"][3]["queries"]["cloudwatch"]
    query["metric"] = metric
    query["namespace"] = namespace
    if unit is not None:
        query["unit"] = unit
    data["metrics"][3]["kind"] = kind
    if kind != "count":
        del data["metrics"][3]["denominator"]
    return data


@pytest.mark.parametrize("metric, instead", [
    ("RequestCountPerTarget", "RequestCount"), ("HealthyHostCount", "kind: gauge"),
    ("UnHealthyHostCount", "kind: gauge"), ("ActiveConnectionCount", "RequestCount"),
    ("ConsumedLCUs", "RequestCount"), ("ProcessedBytes", "RequestCount"), ("SurgeQueueLength", "kind: gauge"),
    ("TargetResponseTime", "RequestCount"), ("Latency", "RequestCount"), ("Duration", "Invocations"),
    ("ConcurrentExecutions", "Invocations"),
])
def test_a_count_of_what_is_not_events_is_refused_naming_the_metric(metric, instead):
    """Review (sources): a Sum of hosts, connections, bytes, capacity units or seconds was read as
    a count of events (the judge's Poisson model of errors or requests)."""
    with pytest.raises(PolicyError) as e:
        open_source(parse_policy(_count_reading(metric)))
    message = str(e.value)
    assert message.startswith(f"metrics.errors.queries.cloudwatch.metric: {metric!r} is "), message
    assert instead in message and "Traceback" not in message


@pytest.mark.parametrize("unit", ["Count/Second", "Bytes/Second", "Seconds", "Milliseconds", "Bytes", "Percent"])
def test_a_count_published_in_a_unit_other_than_count_is_refused_naming_the_unit(unit):
    """Review (sources): `unit: Count/Second` read a Sum of per-second rates as events."""
    with pytest.raises(PolicyError) as e:
        open_source(parse_policy(_count_reading(unit=unit)))
    message = str(e.value)
    assert message.startswith(f"metrics.errors.queries.cloudwatch.unit: {unit!r} is not a number of events"), message
    assert ("a Sum of rates" in message) == unit.endswith("/Second")


@pytest.mark.parametrize("metric, unit, kind", [
    ("HTTPCode_Target_5XX_Count", "Count", "count"), ("HTTPCode_Target_5XX_Count", "None", "count"),
    ("HealthyHostCount", None, "gauge"), ("TargetResponseTime", "Seconds", "gauge"),
    ("RequestCountPerTarget", "Count/Second", "gauge"), ("Duration", "Milliseconds", "gauge"),
])
def test_counts_of_events_and_every_gauge_are_still_read(metric, unit, kind):
    open_source(parse_policy(_count_reading(metric, unit, kind)))


@pytest.mark.parametrize("namespace, metric", [
    ("AWS/ApplicationELB", "AnomalousHostCount"), ("AWS/ApplicationELB", "MitigatedHostCount"),
    ("AWS/ApplicationELB", "PeakLCUs"), ("AWS/NetworkELB", "ActiveFlowCount"), ("AWS/NetworkELB", "PeakLCUs"),
    ("AWS/ELB", "EstimatedALBActiveConnectionCount"), ("AWS/Lambda", "ProvisionedConcurrentExecutions"),
    ("AWS/Lambda", "UnreservedConcurrentExecutions"), ("AWS/Lambda", "IteratorAge"),
    ("AWS/ApiGateway", "IntegrationLatency"), ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
    ("AWS/EC2", "CPUUtilization"), ("AWS/Amplify", "5xxErrorRate"),
])
def test_a_count_of_an_aws_metric_that_is_no_known_event_count_is_refused(namespace, metric):
    """Review (sources, second): the refusal listed 11 gauges by name, so every other AWS gauge
    (hosts, open flows, peak capacity units, concurrency, an iterator's age, a latency, a CPU share,
    an error rate) still read as a count of events. In an AWS namespace a count is now one of the
    service's documented event counts; any other is refused naming .metric, with what to do."""
    with pytest.raises(PolicyError) as e:
        open_source(parse_policy(_count_reading(metric, namespace=namespace)))
    message = str(e.value)
    assert message.startswith(f"metrics.errors.queries.cloudwatch.metric: {metric!r} "), message
    assert "judge it as a gauge (kind: gauge)" in message
    if namespace != "AWS/EC2" and namespace != "AWS/Amplify":
        assert f"count one of {namespace}'s events with stat: Sum" in message
    else:
        assert f"the gate knows none in {namespace}" in message


@pytest.mark.parametrize("namespace, metric", [
    ("AWS/ApplicationELB", "RequestCount"), ("AWS/ApplicationELB", "HTTPCode_ELB_502_Count"),
    ("AWS/ApplicationELB", "TargetConnectionErrorCount"), ("AWS/ApplicationELB", "HTTP_Redirect_Count"),
    ("AWS/ELB", "HTTPCode_Backend_5XX"), ("AWS/ELB", "BackendConnectionErrors"), ("AWS/NetworkELB", "NewFlowCount"),
    ("AWS/NetworkELB", "TCP_Target_Reset_Count"), ("AWS/Lambda", "Invocations"), ("AWS/Lambda", "Errors"),
    ("AWS/Lambda", "Throttles"), ("AWS/ApiGateway", "Count"), ("AWS/ApiGateway", "5XXError"),
    ("AWS/SQS", "NumberOfMessagesReceived"),
])
def test_the_aws_event_counts_are_read_as_counts(namespace, metric):
    open_source(parse_policy(_count_reading(metric, namespace=namespace)))


@pytest.mark.parametrize("metric, unit", [("Errors", None), ("Errors", "Count"), ("Errors", "None"),
                                          ("CPUUtilization", None), ("ActiveFlowCount", "Count")])
def test_a_custom_namespace_s_count_is_told_by_its_unit(metric, unit):
    """Custom namespaces (the application's, EMF) name their metrics as they like: a count there
    is any metric published in Count or no unit; another unit is refused naming .unit."""
    open_source(parse_policy(_count_reading(metric, unit, namespace="MyApp")))
    with pytest.raises(PolicyError) as e:
        open_source(parse_policy(_count_reading(metric, "Milliseconds", namespace="MyApp")))
    assert str(e.value).startswith("metrics.errors.queries.cloudwatch.unit: 'Milliseconds' is not a number of events")


@pytest.mark.parametrize("kind", ["count", "gauge"])
@pytest.mark.parametrize("unit", ["count", "", "seconds", "Count/Minute"])
def test_a_unit_that_is_not_a_cloudwatch_unit_is_refused_as_such(unit, kind):
    """Review (sources, second): `unit: count` was refused as "not a number of events" (it is a
    typo of Count: CloudWatch matches units exactly, and would return no datapoint), and an empty
    unit was taken for none. Any reading: refused naming .unit as no CloudWatch unit."""
    metric = "HTTPCode_Target_5XX_Count" if kind == "count" else "TargetResponseTime"
    with pytest.raises(PolicyError) as e:
        open_source(parse_policy(_count_reading(metric, unit, kind)))
    message = str(e.value)
    assert message.startswith(f"metrics.errors.queries.cloudwatch.unit: {unit!r} is not a CloudWatch unit"), message
    assert "not a number of events" not in message


def test_the_cloudwatch_units_are_botocore_s():
    import botocore.session

    from gate.sources.cloudwatch import CLOUDWATCH_UNITS

    model = botocore.session.get_session().get_service_model("cloudwatch")
    assert CLOUDWATCH_UNITS == set(model.shape_for("StandardUnit").enum)


class _Throttling(BaseHTTPRequestHandler):
    """Answers every CloudWatch call with a Throttling error (AWS JSON 1.0, the protocol boto3
    speaks to CloudWatch, with the query-compatible error code header CloudWatch sends)."""

    calls = 0
    BODY = json.dumps({"__type": "com.amazonaws.cloudwatch#Throttling", "message": "Rate exceeded"}).encode()

    def do_POST(self):  # noqa: N802
        type(self).calls += 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(400)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("x-amzn-query-error", "Throttling;Sender")
        self.send_header("Content-Length", str(len(self.BODY)))
        self.end_headers()
        self.wfile.write(self.BODY)

    def log_message(self, *args):
        pass


def test_throttling_is_retried_then_could_not_judge(tmp_path, moto_server):  # noqa: F811
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Throttling)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {**moto_server.env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{server.server_address[1]}"}
        result = run_gate("check", "web-42", "--policy", write_policy(tmp_path, retry_seconds=6),
                          "--deployed-at", str(int(time.time()) - 600),
                          "--store", tmp_path / "gate.sqlite", env=env, cwd=tmp_path, timeout=120)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 4, result.stdout + result.stderr
    assert "kept throttling GetMetricData (Throttling) for 6s" in result.stderr and "Traceback" not in result.stderr
    # One retry layer, the gate's, within its 6 s budget (backoff from 0.5 s, doubling, jittered
    # up to 2x: 4 or 5 calls): botocore's three attempts inside each of ours made three times as
    # many. (6 s, not 2: on a busy machine one slow first call left no room for a retry.)
    assert 2 <= _Throttling.calls <= 6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_endpoint_could_not_judge(monkeypatch, moto_server):  # noqa: F811
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")
    policy = parse_policy(policy_data())
    now = int(time.time())
    policy = parse_policy(policy_data(retry_seconds=1))
    with pytest.raises(SourceError, match=r"CloudWatch kept being unreachable .* for 1s .*could not fetch"):
        open_source(policy).fetch(Query(tuple(policy.metrics), ASG["canary"], None, now - 600, now, 60))


def test_one_target_group_for_both_groups_is_could_not_judge(aws, tmp_path, corpus):
    """Both groups behind one target group: latency and errors compared with themselves would
    pass a canary whose latency regressed. Refused before judging (exit 4), naming the metric
    and the dimensions."""
    deployed_at, _ = publish_case(aws, corpus / "k1m-latency-shift-006")
    data = policy_data()
    data["metrics"] = [m for m in data["metrics"] if m["name"] in ("latency", "errors", "requests")]
    data["source"]["options"]["groups"]["baseline"] = {"target_group": TARGET_GROUPS["canary"]}
    path = tmp_path / "shared.yaml"
    path.write_text(yaml.safe_dump(data))
    result = check(aws, tmp_path, path, deployed_at)
    assert result.returncode == 4, result.stdout + result.stderr
    assert "the canary and the baseline resolve to the same dimensions" in result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr


def test_a_canary_override_the_target_group_metrics_cannot_follow_is_could_not_judge(aws, tmp_path, corpus):
    deployed_at, _ = publish_case(aws, corpus / "k1m-aa-014")
    result = check(aws, tmp_path, write_policy(tmp_path), deployed_at, "--canary", "web-canary-2")
    assert result.returncode == 4, result.stdout + result.stderr
    assert "canary scope 'web-canary-2' is not the policy's ('web-canary')" in result.stderr
    assert "latency, errors, requests do not use {scope}" in result.stderr
