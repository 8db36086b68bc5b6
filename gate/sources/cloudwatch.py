"""Amazon CloudWatch: both groups' metrics with `GetMetricData` (boto3).

Each metric of the policy says in `queries.cloudwatch` which CloudWatch metric it is read from:

    queries:
      cloudwatch:
        namespace: AWS/ApplicationELB
        metric: TargetResponseTime
        stat: p99                       # Average, Sum, Maximum, Minimum, SampleCount, p99, tm90...
        dimensions: {TargetGroup: "{target_group}", LoadBalancer: app/web/50dc6c495c0c9188}

Dimension values are templates: `{scope}` is the group's scope (the Auto Scaling group name, the
default being `AutoScalingGroupName: "{scope}"`), any other `{key}` is that group's value in
`source.options.groups.<canary|baseline>.<key>` (e.g. the target group of each group: the ALB
only tells groups apart by target group, so canary and baseline need one each).

The point at T is the CloudWatch period [T, T + period): only complete periods are returned.
Counts use the `Sum` per period, on the scale of the policy's interval: history old enough to be
read at a coarser period (5-minute points after 15 days) is given per interval (sum * step /
period). A period without a datapoint is missing (NaN), except for a count with a denominator
that has reported somewhere (`Frame.fill_zero_counts`): when the same group reported the denominator
for that period, the count is 0 (the ALB publishes no `HTTPCode_Target_5XX_Count` datapoint for a
minute without 5xx). A datapoint that is not a number (NaN, infinite) is missing, never zero; a
result still `PartialData` after its last page is asked again, then could not judge. Ratios are
left to the judge; no metric math.

The canary and the baseline must read different CloudWatch metrics: a metric whose dimensions
resolve to the same values for both groups (one target group for both) compares a group with
itself and is refused, as is a scope given for a group (`--canary`, the event's `canary`) that a
metric's dimensions do not use (they would still read the policy's group).
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gate.aws import NO_REGION, backoff, denied, error_code, error_message, make_client, throttled, transient
from gate.errors import PolicyError, SourceError, validation_problems
from gate.policy import Metric, Policy
from gate.series import Frame, Observations
from gate.sources import CannotSplit, Query, count_denominators

log = logging.getLogger(__name__)

MAX_QUERIES_PER_CALL = 500  # GetMetricData's limit on MetricDataQueries
GROUP_DIMENSION, HOST_DIMENSION = "AutoScalingGroupName", "InstanceId"  # a group's hosts: its metrics per instance
DAY = 86400

# CloudWatch keeps 1-minute points for 15 days, 5-minute points for 63 days, then hourly ones
# (455 days): a query reaching further back must ask for a period that is a multiple of these.
RETENTION = ((15 * DAY, 60), (63 * DAY, 300), (455 * DAY, 3600))

_STAT = re.compile(
    r"^(Average|Sum|Minimum|Maximum|SampleCount|IQM"
    r"|(p|tm|wm|tc|ts|pr)(\d{1,2}(\.\d{1,10})?|100)"
    r"|(TM|WM|TC|TS|PR)\([^()]{1,40}\))$"
)
_TEMPLATE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricQuery(_Strict):
    """`metrics[].queries.cloudwatch`: one CloudWatch metric and the statistic read from it."""

    namespace: str = Field(min_length=1, max_length=255)
    metric: str = Field(min_length=1, max_length=255, description="CloudWatch MetricName.")
    stat: str = Field(description="Average, Sum, Minimum, Maximum, SampleCount, p99, tm90, ...")
    dimensions: dict[str, str] = Field(
        default_factory=lambda: {"AutoScalingGroupName": "{scope}"},
        max_length=30,
        description="Dimension name -> value; `{scope}` and `{key}` of source.options.groups "
        "are filled per group.",
    )
    unit: str | None = Field(default=None, description="Only datapoints published with this unit.")

    @field_validator("unit")
    @classmethod
    def _known_unit(cls, v: str | None) -> str | None:
        if v is not None and v not in CLOUDWATCH_UNITS:
            # CloudWatch compares units exactly: `count` matches no datapoint, and an empty one was
            # taken for none.
            raise ValueError(f"{v!r} is not a CloudWatch unit (Count, None, Seconds, Bytes, Percent, "
                             "Count/Second...; the case counts)")
        return v

    @field_validator("stat")
    @classmethod
    def _known_stat(cls, v: str) -> str:
        if not _STAT.match(v):
            raise ValueError(f"{v!r} is not a CloudWatch statistic (Average, Sum, Maximum, p99, tm90...)")
        return v

    @field_validator("dimensions")
    @classmethod
    def _names(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            _check_dimension("dimension name", name, 255)
        return v


class Options(_Strict):
    """`source.options` of a CloudWatch policy."""

    region: str | None = Field(default=None, description="AWS region; default: the boto3 chain.")
    groups: dict[Literal["canary", "baseline"], dict[str, str]] = Field(
        default_factory=dict,
        description="Per group, values dimension templates refer to, e.g. {target_group: ...}.",
    )
    retry_seconds: float = Field(
        default=30, gt=0, le=600,
        description="How long failing calls (throttled, a 5xx, unreachable) are retried in all before the "
        "gate gives up (exit 4).",
    )
    # The groups of `gate promote` / `gate rollback` are the policy's `actions:`.


def _check_dimension(what: str, value: str, limit: int = 1024) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must not be empty")
    if len(value) > limit:
        raise ValueError(f"{what} is longer than {limit} characters")
    if _CONTROL.search(value):
        raise ValueError(f"{what} {value!r} contains control characters")
    return value


def metric_query(metric: Metric) -> MetricQuery:
    raw = metric.queries.get("cloudwatch")
    where = f"metrics.{metric.name}.queries.cloudwatch"
    if raw is None:
        raise PolicyError(f"{where}: missing (namespace, metric, stat and dimensions of the CloudWatch metric)")
    try:
        query = MetricQuery.model_validate(raw)
    except ValidationError as e:
        raise PolicyError(validation_problems(e, where)) from None
    if metric.summed and query.stat != "Sum":
        # Only a Sum adds up the events of a period. SampleCount counts the datapoints published
        # in it (one per ALB node, per agent flush, per statistic set), whatever events each
        # carries; Average, Minimum, Maximum and percentiles read one datapoint's value or their mean.
        why = (" (SampleCount counts the datapoints published in a period, not the events they carry)"
               if query.stat == "SampleCount" else "")
        raise PolicyError(f"{where}.stat: a count is read as a Sum per period (got {query.stat!r}){why}: "
                          f"read the service's own count metric with stat: Sum ({COUNT_METRICS})")
    if metric.summed:
        _check_counts_events(query, where)
    return query


# The judge models a count as the events of an interval, and a Sum adds up whatever a metric's
# datapoints carry: hosts, open connections, capacity units, seconds or a share are no events, and
# their Sum passes a regression (RequestCountPerTarget, requests over healthy targets, as the
# denominator of the 5xx inflated the baseline's error ratio by its target count: a canary at 2x
# the error rate passed). A refusal by name could only list the gauges known so far (the review
# found AnomalousHostCount, ActiveFlowCount, PeakLCUs, IteratorAge, CPUUtilization... still read
# as counts): in an AWS namespace a count must be one of the service's documented event counts
# (each documented as a number of requests, errors, flows, messages or resets in the period, its
# Sum the events). Custom namespaces (the application's own, EMF) are told by their unit.
COUNT_METRICS = "e.g. ALB RequestCount, HTTPCode_Target_5XX_Count; Lambda Invocations, Errors"
EVENT_COUNTS: dict[str, frozenset[str]] = {
    "AWS/ApplicationELB": frozenset({
        "RequestCount", "GrpcRequestCount",
        "HTTPCode_Target_2XX_Count", "HTTPCode_Target_3XX_Count", "HTTPCode_Target_4XX_Count",
        "HTTPCode_Target_5XX_Count", "HTTPCode_ELB_3XX_Count", "HTTPCode_ELB_4XX_Count",
        "HTTPCode_ELB_5XX_Count", "HTTPCode_ELB_500_Count", "HTTPCode_ELB_502_Count", "HTTPCode_ELB_503_Count",
        "HTTPCode_ELB_504_Count", "TargetConnectionErrorCount", "RejectedConnectionCount", "NewConnectionCount",
        "ClientTLSNegotiationErrorCount", "TargetTLSNegotiationErrorCount", "HTTP_Redirect_Count",
        "HTTP_Fixed_Response_Count", "LambdaInternalError", "LambdaUserError"}),
    "AWS/ELB": frozenset({
        "RequestCount", "HTTPCode_Backend_2XX", "HTTPCode_Backend_3XX", "HTTPCode_Backend_4XX",
        "HTTPCode_Backend_5XX", "HTTPCode_ELB_4XX", "HTTPCode_ELB_5XX", "BackendConnectionErrors",
        "SpilloverCount"}),
    "AWS/NetworkELB": frozenset({
        "NewFlowCount", "NewFlowCount_TCP", "NewFlowCount_TLS", "NewFlowCount_UDP", "TCP_Client_Reset_Count",
        "TCP_Target_Reset_Count", "TCP_ELB_Reset_Count"}),
    "AWS/Lambda": frozenset({"Invocations", "Errors", "Throttles", "DeadLetterErrors",
                             "DestinationDeliveryFailures"}),
    "AWS/ApiGateway": frozenset({"Count", "4XXError", "5XXError", "4xx", "5xx"}),  # REST; HTTP APIs
    "AWS/SQS": frozenset({"NumberOfMessagesSent", "NumberOfMessagesReceived", "NumberOfMessagesDeleted"}),
}
# What some AWS gauges are, for the refusal to say (any AWS metric outside EVENT_COUNTS is refused).
NOT_EVENTS = {
    "RequestCountPerTarget": ("requests divided by the target group's healthy targets (a group with more "
                              "targets reads fewer)", "RequestCount"),
    "HealthyHostCount": ("hosts counted at each moment", None),
    "UnHealthyHostCount": ("hosts counted at each moment", None),
    "ActiveConnectionCount": ("connections open at each moment", "RequestCount"),
    "ConsumedLCUs": ("load balancer capacity units", "RequestCount"),
    "ProcessedBytes": ("bytes", "RequestCount"),
    "SurgeQueueLength": ("a queue's length at each moment", None),
    "TargetResponseTime": ("seconds of response time", "RequestCount"),
    "Latency": ("seconds of latency", "RequestCount"),
    "Duration": ("milliseconds of run time", "Invocations"),
    "ConcurrentExecutions": ("executions running at each moment", "Invocations"),
}
# CloudWatch's units (botocore's StandardUnit): a unit outside them filters out every datapoint.
CLOUDWATCH_UNITS = frozenset({
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes",
    "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second",
    "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second",
    "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None"})
# The CloudWatch units a count of events may carry; any other is time, size, a share or a rate
# (`Count/Second`: a Sum of rates is no number of events).
EVENT_UNITS = frozenset({"Count", "None"})


def _check_counts_events(query: MetricQuery, where: str) -> None:
    """Refuse a count whose CloudWatch metric or unit is not events (a gauge keeps every metric)."""
    if query.namespace.startswith("AWS/") and query.metric not in EVENT_COUNTS.get(query.namespace, ()):
        known = EVENT_COUNTS.get(query.namespace)
        found = NOT_EVENTS.get(query.metric)
        what = (f"is {found[0]}, not events" if found is not None
                else f"is not one of {query.namespace}'s counts of events" if known
                else f"is not a count of events: the gate knows none in {query.namespace}")
        if found is not None and found[1] is not None:
            instead = f"read {found[1]} with stat: Sum"
        elif known:
            instead = f"count one of {query.namespace}'s events with stat: Sum ({', '.join(sorted(known))})"
        else:
            instead = f"count events another namespace publishes ({COUNT_METRICS})"
        raise PolicyError(f"{where}.metric: {query.metric!r} {what}, and a count is the events of an interval "
                          f"(the judge models it so): judge it as a gauge (kind: gauge), or {instead}")
    if query.unit is not None and query.unit not in EVENT_UNITS:
        rate = " (a Sum of rates)" if query.unit.endswith("/Second") else ""
        raise PolicyError(f"{where}.unit: {query.unit!r} is not a number of events{rate}: a count reads the "
                          f"service's own count metric (unit Count) with stat: Sum ({COUNT_METRICS}); a "
                          f"{query.unit} metric is judged as a gauge (kind: gauge)")


def choose_period(step: int, start: int, now: int) -> int:
    """The CloudWatch period for points `step` apart starting at `start`: a multiple of the
    step and of the resolution CloudWatch still keeps for data that old."""
    if step % 60:
        raise PolicyError(f"interval: CloudWatch periods are multiples of 60 s (got {step}s)")
    age = now - start
    resolution = next((r for limit, r in RETENTION if age <= limit), None)
    if resolution is None:
        raise PolicyError(
            f"history: CloudWatch keeps metrics for 455 days, the query starts {age // DAY} days ago"
        )
    return math.lcm(step, resolution)


@dataclass(frozen=True)
class _Series:
    id: str
    group: str  # "canary" / "baseline"
    metric: str


class CloudWatchSource:
    def __init__(self, policy: Policy, options: Options, client: Any = None,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep):
        self.options = options
        self.queries = {m.name: metric_query(m) for m in policy.metrics}
        canary, baseline = policy.scopes()
        self.policy_scopes = {"canary": canary, "baseline": baseline}
        self._client = client
        self.clock = clock
        self.sleep = sleep
        # Counts that have reported a datapoint in some fetch of this source (the history, the
        # window): only those may read as zero where their denominator has a point.
        self._reported: set[str] = set()

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = make_client("cloudwatch", self.options.region, attempts=1)  # _call retries
        return self._client

    # -- the protocol ---------------------------------------------------------------------

    def fetch(self, query: Query) -> Observations:
        period = choose_period(query.step, query.start, int(self.clock()))
        first = -(-query.start // period) * period  # first period starting at or after start
        # Only complete periods: [T, T + period) is over once the clock reads T + period.
        stop = query.end // period * period
        names = [m.name for m in query.metrics]
        groups = {"canary": query.canary}
        if query.baseline is not None:
            groups["baseline"] = query.baseline
            if query.baseline_only:
                del groups["canary"]
        series, requests = self._requests(query.metrics, groups, period)
        points: dict[str, dict[str, dict[int, float]]] = {g: {n: {} for n in names} for g in groups}
        # Periods CloudWatch answered with NaN or an infinity: missing, and kept so (never a zero).
        unknown: dict[str, dict[str, list[int]]] = {g: {n: [] for n in names} for g in groups}
        counts = {m.name for m in query.metrics if m.summed}
        # A count read at a coarser period than the step (old history) is put on the step's scale,
        # as the window's counts are: sum * step / period. Gauges are averages: as they are.
        scale = query.step / period
        if stop > first:
            for result in self._get_metric_data(requests, first, stop):
                s = series[result["Id"]]
                column = points[s.group][s.metric]
                factor = scale if s.metric in counts else 1.0
                for stamp, value in zip(result.get("Timestamps", []), result.get("Values", [])):
                    if math.isfinite(value):
                        column[int(stamp.timestamp())] = float(value) * factor
                    else:
                        unknown[s.group][s.metric].append(int(stamp.timestamp()))
        self._reported.update(n for g in groups for n in names if points[g][n])
        frames = {g: self._frame(query.metrics, period, first, stop, points[g], unknown[g]) for g in groups}
        canary = frames["canary"] if "canary" in frames else Frame.empty(query.step, names)
        return Observations(canary=canary, baseline=frames.get("baseline"))

    def fetch_hosts(self, query: Query) -> dict[str, Frame]:
        """The baseline group instance by instance: each metric with its dimensions and
        `InstanceId` (as the CloudWatch agent publishes with `append_dimensions`
        AutoScalingGroupName and InstanceId), the instances found with ListMetrics. CannotSplit
        when a metric is not read by AutoScalingGroupName (an ALB's TargetGroup has no instance)
        or has no per-instance series."""
        if query.baseline is None:
            raise CannotSplit("no baseline group to split")
        period = choose_period(query.step, query.start, int(self.clock()))
        first = -(-query.start // period) * period
        stop = query.end // period * period
        self._check_scope_applies(query.metrics, "baseline", query.baseline)
        instances: dict[str, set[str]] = {}
        for m in query.metrics:
            dimensions = self._dimensions(m.name, "baseline", query.baseline)
            if GROUP_DIMENSION not in {d["Name"] for d in dimensions}:
                raise CannotSplit(f"{m.name}: its CloudWatch dimensions ({', '.join(d['Name'] for d in dimensions)}) "
                                  f"have no {GROUP_DIMENSION}, so no per-instance series to split the group by")
            found = self._instances(self.queries[m.name], dimensions)
            if not found:
                asg = next(d["Value"] for d in dimensions if d["Name"] == GROUP_DIMENSION)
                raise CannotSplit(f"{m.name}: CloudWatch lists no {self.queries[m.name].namespace}/"
                                  f"{self.queries[m.name].metric} per {HOST_DIMENSION} of {asg} "
                                  f"({GROUP_DIMENSION} x {HOST_DIMENSION}, the CloudWatch agent's append_dimensions)")
            for instance in found:
                instances.setdefault(instance, set()).add(m.name)
        series: dict[str, _Series] = {}
        requests = []
        for instance in sorted(instances):
            for m in query.metrics:
                q = self.queries[m.name]
                dimensions = sorted(self._dimensions(m.name, "baseline", query.baseline)
                                    + [{"Name": HOST_DIMENSION, "Value": instance}], key=lambda d: d["Name"])
                stat = {"Metric": {"Namespace": q.namespace, "MetricName": q.metric, "Dimensions": dimensions},
                        "Period": period, "Stat": q.stat}
                if q.unit:
                    stat["Unit"] = q.unit
                qid = f"q{len(requests)}"
                series[qid] = _Series(qid, instance, m.name)  # the group here is the instance
                requests.append({"Id": qid, "MetricStat": stat, "ReturnData": True})
        names = [m.name for m in query.metrics]
        points = {i: {n: {} for n in names} for i in instances}
        unknown = {i: {n: [] for n in names} for i in instances}
        counts = {m.name for m in query.metrics if m.summed}
        scale = query.step / period
        if stop > first:
            for result in self._get_metric_data(requests, first, stop):
                s = series[result["Id"]]
                factor = scale if s.metric in counts else 1.0
                for stamp, value in zip(result.get("Timestamps", []), result.get("Values", [])):
                    if math.isfinite(value):
                        points[s.group][s.metric][int(stamp.timestamp())] = float(value) * factor
                    else:
                        unknown[s.group][s.metric].append(int(stamp.timestamp()))
        self._reported.update(n for i in instances for n in names if points[i][n])
        return {i: self._frame(query.metrics, period, first, stop, points[i], unknown[i]) for i in sorted(instances)}

    def _instances(self, q: MetricQuery, dimensions: list[dict[str, str]]) -> set[str]:
        """The instances CloudWatch holds the metric for with exactly these dimensions and an
        InstanceId (ListMetrics: metrics with data in the last two weeks)."""
        from botocore.exceptions import BotoCoreError, ClientError

        wanted = {(d["Name"], d["Value"]) for d in dimensions}
        found = set()
        try:
            for page in self.client.get_paginator("list_metrics").paginate(
                    Namespace=q.namespace, MetricName=q.metric, Dimensions=dimensions):
                for metric in page.get("Metrics", []):
                    pairs = {(d["Name"], d["Value"]) for d in metric.get("Dimensions", [])}
                    instance = [v for n, v in pairs if n == HOST_DIMENSION]
                    if len(instance) == 1 and pairs - {(HOST_DIMENSION, instance[0])} == wanted:
                        found.add(instance[0])
        except ClientError as e:
            if denied(e):
                raise SourceError(f"CloudWatch refused ListMetrics ({error_code(e)}): splitting the baseline "
                                  "by instance needs cloudwatch:ListMetrics") from None
            raise SourceError(f"CloudWatch ListMetrics failed ({error_code(e)}): {error_message(e)}") from None
        except BotoCoreError as e:
            raise SourceError(f"CloudWatch ListMetrics failed: {e}") from None
        return found

    # -- building the queries -------------------------------------------------------------

    def _requests(self, metrics: tuple[Metric, ...], groups: dict[str, str], period: int):
        for group, scope in groups.items():
            self._check_scope_applies(metrics, group, scope)
        resolved = {(group, m.name): self._dimensions(m.name, group, scope)
                    for group, scope in groups.items() for m in metrics}
        if len(groups) == 2:
            for m in metrics:
                _check_groups_apart(m.name, resolved["canary", m.name], resolved["baseline", m.name])
        series: dict[str, _Series] = {}
        requests = []
        for group in groups:
            for metric in metrics:
                q = self.queries[metric.name]
                dimensions = resolved[group, metric.name]
                stat = {"Metric": {"Namespace": q.namespace, "MetricName": q.metric,
                                   "Dimensions": dimensions},
                        "Period": period, "Stat": q.stat}
                if q.unit:
                    stat["Unit"] = q.unit
                qid = f"q{len(requests)}"
                series[qid] = _Series(qid, group, metric.name)
                requests.append({"Id": qid, "MetricStat": stat, "ReturnData": True})
        return series, requests

    def dimensions(self, metric: str, group: str, scope: str) -> list[dict[str, str]]:
        """The metric's dimensions for a group (an evidence link draws the same series)."""
        return self._dimensions(metric, group, scope)

    def _dimensions(self, metric: str, group: str, scope: str) -> list[dict[str, str]]:
        return [{"Name": name, "Value": self._fill(template, group, scope, metric, name)}
                for name, template in sorted(self.queries[metric].dimensions.items())]  # one canonical order

    def _check_scope_applies(self, metrics: tuple[Metric, ...], group: str, scope: str) -> None:
        """A scope other than the policy's (`--canary`, the event's `canary`) only moves the
        metrics whose dimensions use `{scope}`: the others would silently read the policy's group."""
        template = self.policy_scopes[group]
        if template is not None and _renders(template, scope):
            return
        fixed = [m.name for m in metrics if not any("{scope}" in v for v in self.queries[m.name].dimensions.values())]
        if fixed:
            raise PolicyError(
                f"{group} scope {scope!r} is not the policy's ({template!r}), but the CloudWatch dimensions of "
                f"{', '.join(fixed)} do not use {{scope}}: they would still read the policy's {group} group. "
                f"Change source.options.groups.{group} in the policy instead")

    def _fill(self, template: str, group: str, scope: str, metric: str, dimension: str) -> str:
        values = {"scope": scope, **self.options.groups.get(group, {})}

        def one(match: re.Match) -> str:
            key = match.group(1)
            if key not in values:
                raise PolicyError(
                    f"metrics.{metric}.queries.cloudwatch.dimensions.{dimension}: {{{key}}} is not set "
                    f"for the {group} group (source.options.groups.{group}.{key})"
                )
            return values[key]

        value = _TEMPLATE.sub(one, template)
        try:
            return _check_dimension(f"{group} value of dimension {dimension}", value)
        except ValueError as e:
            raise PolicyError(f"{e} (scope or source.options.groups.{group})") from None

    # -- calling CloudWatch ---------------------------------------------------------------

    def _get_metric_data(self, requests: list[dict], start: int, end: int) -> list[dict]:
        """All results (merged across pages), queries sent 500 at a time."""
        self.client  # made before the deadline starts: loading its service model is not a retry's time
        deadline = self.clock() + self.options.retry_seconds
        results: list[dict] = []
        for i in range(0, len(requests), MAX_QUERIES_PER_CALL):
            results += self._complete(requests[i:i + MAX_QUERIES_PER_CALL], start, end, deadline)
        return results

    def _complete(self, batch: list[dict], start: int, end: int, deadline: float) -> list[dict]:
        """One call's results, asked again while a result is still `PartialData` after the last
        page: CloudWatch did not finish it and has no next page to give (incomplete data that
        would read as quiet periods)."""
        attempt = 0
        while True:
            merged, partial = self._pages(batch, start, end, deadline)
            if not partial:
                return list(merged.values())
            attempt += 1
            self._pause_or_give_up(attempt, deadline, f"answering PartialData without a next page (queries "
                                   f"{', '.join(partial)})", "the data is incomplete, could not judge")

    def _pause_or_give_up(self, attempt: int, deadline: float, doing: str, outcome: str) -> None:
        """Back off before asking again; past the retry budget, stop: could not judge (one retry
        policy for throttling and for incomplete answers)."""
        pause = backoff(attempt)
        if self.clock() + pause > deadline:
            raise SourceError(f"CloudWatch kept {doing} for {self.options.retry_seconds:g}s ({attempt} attempts): "
                              f"{outcome}") from None
        self.sleep(pause)

    def _pages(self, batch: list[dict], start: int, end: int, deadline: float) -> tuple[dict[str, dict], list[str]]:
        """Every page of one call: the merged results, and the queries still PartialData at the end."""
        merged: dict[str, dict] = {}
        status: dict[str, str] = {}
        token = None
        while True:
            kwargs = {
                "MetricDataQueries": batch,
                "StartTime": datetime.fromtimestamp(start, UTC),
                "EndTime": datetime.fromtimestamp(end, UTC),
                "ScanBy": "TimestampAscending",
            }
            if token:
                kwargs["NextToken"] = token
            page = self._call(kwargs, deadline)
            for result in page.get("MetricDataResults", []):
                status[result["Id"]] = result.get("StatusCode", "Complete")
                if status[result["Id"]] in ("InternalError", "Forbidden"):
                    why = "; ".join(m.get("Value", "") for m in result.get("Messages", []))
                    raise SourceError(f"CloudWatch could not answer query {result.get('Label') or result['Id']}: "
                                      f"{status[result['Id']]}{': ' + why if why else ''}")
                into = merged.setdefault(result["Id"], {"Id": result["Id"], "Timestamps": [], "Values": []})
                into["Timestamps"].extend(result.get("Timestamps", []))
                into["Values"].extend(result.get("Values", []))
            token = page.get("NextToken")
            if not token:
                return merged, [qid for qid, st in status.items() if st == "PartialData"]

    def _call(self, kwargs: dict, deadline: float) -> dict:
        from botocore.exceptions import (BotoCoreError, ClientError, ConnectTimeoutError,
                                         EndpointConnectionError, NoCredentialsError, NoRegionError,
                                         ReadTimeoutError)

        attempt = 0
        while True:
            try:
                return self.client.get_metric_data(**kwargs)
            except ClientError as e:
                code = error_code(e)
                if denied(e):
                    raise SourceError(
                        f"CloudWatch refused GetMetricData ({code}): the credentials need "
                        "cloudwatch:GetMetricData"
                    ) from None
                if not transient(e):
                    raise SourceError(f"CloudWatch GetMetricData failed ({code}): {error_message(e)}") from None
                doing = "throttling" if throttled(e) else "failing"
                attempt += 1
                self._pause_or_give_up(attempt, deadline, f"{doing} GetMetricData ({code or 'HTTP error'})",
                                       "could not fetch the metrics")
            except NoCredentialsError:
                raise SourceError("no AWS credentials found (environment, profile or role)") from None
            except NoRegionError:
                raise SourceError(NO_REGION) from None
            except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError) as e:
                attempt += 1
                self._pause_or_give_up(attempt, deadline, f"being unreachable ({e})", "could not fetch the metrics")
            except BotoCoreError as e:
                raise SourceError(f"CloudWatch GetMetricData failed: {e}") from None

    # -- the frame ------------------------------------------------------------------------

    def _frame(self, metrics: tuple[Metric, ...], period: int, first: int, stop: int,
               points: dict[str, dict[int, float]], unknown: dict[str, list[int]]) -> Frame:
        if stop <= first:
            return Frame.empty(period, [m.name for m in metrics])
        frame = Frame.on_grid(period, first, stop - period, points,
                              summed={m.name for m in metrics if m.summed}).fill_zero_counts(
            count_denominators(metrics), self._reported)
        for name, stamps in unknown.items():  # answered, but not a number: missing, not "no errors"
            index = (np.asarray(stamps, dtype=np.int64) - first) // period
            frame.values[name][index[(index >= 0) & (index < len(frame))]] = np.nan
        return frame


def _renders(template: str, scope: str) -> bool:
    """Whether `scope` is the policy's scope `template` for some release (`{release}` filled)."""
    pattern = re.escape(template).replace(re.escape("{release}"), ".+")
    return re.fullmatch(pattern, scope) is not None


def _check_groups_apart(metric: str, canary: list[dict], baseline: list[dict]) -> None:
    if canary == baseline:
        shown = ", ".join(f"{d['Name']}={d['Value']}" for d in canary)
        raise PolicyError(
            f"metrics.{metric}.queries.cloudwatch.dimensions: the canary and the baseline resolve to the same "
            f"dimensions ({shown}): the gate would compare a group with itself. Give each group its own "
            "(e.g. a target group each, source.options.groups.<canary|baseline>.target_group)")


# The account behind each origin of credentials, for this process: STS is asked once per
# (region, endpoint, access key id), not on every look. Never the secret: the key id names the
# credentials without being one (temporary credentials rotate: a new key id costs one more call).
_ACCOUNTS: dict[tuple[str, str, str], str] = {}
# STS is asked only to name the cache's entries: a look can do without it (it relearns its
# reference), so a silent STS costs a look a few seconds, not botocore's 5 s + 20 s, and no retry.
STS_TIMEOUTS = (1.0, 2.0)  # connect, read (seconds): each socket read, not the call
# The call's whole budget: an answer trickled a few bytes under each read timeout held a look 23 s.
STS_DEADLINE = 3.0  # seconds


def _account_within(sts: Any, seconds: float) -> str:
    """GetCallerIdentity's account, or TimeoutError past `seconds` (the call is left to finish in
    a daemon thread; what it learns then is dropped, not remembered)."""
    answer: dict[str, Any] = {}

    def ask() -> None:
        try:
            answer["account"] = sts.get_caller_identity()["Account"]
        except Exception as e:  # noqa: BLE001 - handed to the caller
            answer["error"] = e

    asking = threading.Thread(target=ask, name="gate-sts-account", daemon=True)
    asking.start()
    asking.join(seconds)
    if asking.is_alive():
        raise TimeoutError(f"STS did not answer within {seconds:g}s")
    if "error" in answer:
        raise answer["error"]
    return answer["account"]


def origin(options: dict) -> str | None:
    """Where a CloudWatch policy's data comes from, as the reference cache keys it: the account
    (STS GetCallerIdentity, which needs no permission), the region and the endpoint the source's
    client calls (its region: `options.region`, else the boto3 chain). None when they cannot be
    told: the reference is then not cached (only slower), never read as another origin's."""
    region = options.get("region") if isinstance(options, dict) else None
    try:
        client = make_client("cloudwatch", region if isinstance(region, str) else None, attempts=1)
        region, endpoint = client.meta.region_name, client.meta.endpoint_url
        import boto3

        # The credentials the client signs with: boto3's default session (make_client's) keeps
        # those it first found.
        credentials = boto3.DEFAULT_SESSION.get_credentials() if boto3.DEFAULT_SESSION else None
        access_key = credentials.get_frozen_credentials().access_key if credentials is not None else None
        if not access_key:
            raise LookupError("no credentials")
        known = (region, endpoint, access_key)
        account = _ACCOUNTS.get(known)
        if account is None:
            sts = make_client("sts", region, attempts=1, timeouts=STS_TIMEOUTS)
            account = _ACCOUNTS[known] = _account_within(sts, STS_DEADLINE)
    except Exception as e:  # noqa: BLE001 - no origin, no cache: a look only relearns its reference
        log.warning("the reference is not cached: CloudWatch's account cannot be told (%s)", type(e).__name__)
        return None
    return f"cloudwatch account {account} region {region} endpoint {endpoint}"


def parse_options(policy: Policy) -> Options:
    try:
        return Options.model_validate(policy.source.options)
    except ValidationError as e:
        raise PolicyError(validation_problems(e, "source.options")) from None


def from_policy(policy: Policy) -> CloudWatchSource:
    return CloudWatchSource(policy, parse_options(policy))
