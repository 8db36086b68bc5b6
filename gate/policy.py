"""The policy file: which metrics to judge, how, where they come from, and for how long.

A policy is YAML validated by pydantic; `Policy.model_json_schema()` is published by
`gate policy schema` so editors can validate policy files as they are written.
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from gate.errors import PolicyError, validation_problems
from gate.kinds import KINDS

log = logging.getLogger(__name__)

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(value: Any) -> int:
    """`90`, `"90s"`, `"5m"`, `"1h"`, `"7d"`, `"2w"` -> seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '5m', '1h', '7d'")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"a duration must be a finite number of seconds, got {value!r}")
        if value != int(value):
            raise ValueError(f"a duration must be whole seconds, got {value!r}")
        return int(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise ValueError(f"{value!r} is not a duration (use seconds or '30s', '5m', '1h', '7d', '2w')")


DURATION_PATTERN = r"^\s*[0-9]+\s*(s|m|h|d|w)?\s*$"
MINUTE, HOUR, DAY = 60, 3600, 86400


def _human(seconds: int) -> str:
    for unit, size in (("d", DAY), ("h", HOUR), ("m", MINUTE)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def duration(low: int, high: int) -> Any:
    """A duration field (seconds, or '30s', '5m', '1h', '7d', '2w') between `low` and `high`.

    Its JSON Schema says the same with standard keywords: an integer in range, or a string
    of the duration pattern."""

    def bounded(seconds: int) -> int:
        if not low <= seconds <= high:
            raise ValueError(f"must be between {_human(low)} and {_human(high)} ({seconds} s is out of range)")
        return seconds

    schema = {"anyOf": [{"type": "integer", "minimum": low, "maximum": high},
                        {"type": "string", "pattern": DURATION_PATTERN}]}
    return Annotated[int, BeforeValidator(parse_duration), AfterValidator(bounded), WithJsonSchema(schema)]


Interval = duration(10, DAY)
MAX_LIFETIME = 7 * DAY  # infra/template.yaml sizes the Step Functions loop's timeout on it
Lifetime = duration(10, MAX_LIFETIME)
History = duration(1, 366 * DAY)
MinDuration = duration(1, 7 * DAY)
Warmup = duration(0, 7 * DAY)
MIN_TOLERANCE = 0.001  # a judged metric's: below it, as at 0, no evidence tells a canary within
MAX_TOLERANCE = 100.0
MAX_MIN_EVENTS = 10**12
TIME_UNITS = {"ms", "s", "us", "ns", "seconds", "milliseconds", "microseconds"}
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$"


def render_scope(scope: str, release: str) -> str:
    """Scopes (and group names) may name the release, e.g. `version:{release}`."""
    return scope.replace("{release}", release)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _a_number_is_not_a_bool(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic takes a bool for a number (true is 1), and YAML reads `yes`, `on` and `true` as
        # bools: `tolerance: true` was a tolerance of 100%, a pass for nearly any canary.
        if isinstance(value, bool) and _takes_a_number(cls.model_fields[info.field_name].annotation):
            raise ValueError("expected a number, not a bool")
        return value


def _takes_a_number(annotation: Any) -> bool:
    """A field typed float or int (or either or None), not one that takes a bool."""
    if annotation in (float, int):
        return True
    arguments = get_args(annotation)
    return bool(arguments) and bool not in arguments and any(_takes_a_number(a) for a in arguments)


# Guardrails: far beyond any real limit (latencies in ns, request counts), far below an overflow.
MAX_LIMIT = 1e15
DEFAULT_BURN_RATE = 14.4  # the SRE workbook's fast burn: 2% of a 30-day budget in one hour
MAX_BURN_RATE = 1000.0


class Slo(Strict):
    """An error budget for a count of bad events out of its denominator (errors / requests)."""

    objective: float = Field(
        gt=0,
        lt=1,
        allow_inf_nan=False,
        description="Share of the denominator's events that must be good, e.g. 0.999: the error "
        "budget is 1 - objective (0.1% of the requests).",
    )
    burn_rate: float = Field(
        default=DEFAULT_BURN_RATE,
        ge=1,
        le=MAX_BURN_RATE,
        allow_inf_nan=False,
        description="Fail a canary that burns its error budget this many times faster than the "
        "objective allows, over a long window (the canary's lifetime so far) and a short one (the "
        "last twelfth of the lifetime, at least 5 intervals). Default 14.4: the multi-window "
        "fast-burn rule of the SRE workbook (5 min and 1 h of a 30-day budget).",
    )

    @property
    def threshold(self) -> float:
        """The error ratio that burns the budget at `burn_rate`."""
        return self.burn_rate * (1 - self.objective)

    @model_validator(mode="after")
    def _reachable(self) -> Slo:
        if self.threshold >= 1:
            raise ValueError(f"burn_rate x (1 - objective) = {self.threshold:.4g} is the error ratio that would "
                             "burn the budget that fast: it must be below 1 (a higher objective or a lower burn_rate)")
        return self


class Metric(Strict):
    """One KPI of the service."""

    name: str = Field(pattern=NAME_PATTERN, description="Name of the metric, unique in the policy.")
    kind: str = Field(
        description="`gauge`: a level (CPU %, memory %, latency ms). `count`: events per step.",
        json_schema_extra=lambda schema: schema.update(enum=list(KINDS)),  # the registry's, as a Literal's
    )
    bad_direction: Literal["increase", "decrease", "either", "none"] = Field(
        default="increase",
        description="Which way is a regression. `none`: context only, never judged.",
    )
    tolerance: float | None = Field(
        default=0.1,
        ge=0,
        le=MAX_TOLERANCE,
        allow_inf_nan=False,
        description="Relative degradation still acceptable (0.1 = up to 10% worse than the "
        "baseline; at most 100 = 101x; above 0 for a judged metric: no evidence shows a canary "
        "within 0). null, in a policy without a baseline group: judge only a departure from the "
        "seasonal history.",
    )
    denominator: str | None = Field(
        default=None,
        description="For a count: the count metric it is a share of (errors / requests).",
    )
    critical: bool = Field(
        default=False, description="Listed first among the reasons when it fails (any failing judged "
        "metric fails the canary at once, critical or not)."
    )
    muted: bool = Field(
        default=False, description="Reported but never affects the verdict (so it takes no guardrail: "
        "`max`, `min` or `slo` on a muted metric is refused)."
    )
    unit: str | None = Field(default=None, max_length=20, description="Unit, for people (percent, ms, ...).")
    tail: bool | None = Field(
        default=None,
        description="Also judge the tail: canary points far above their baseline (slow requests, "
        "bursts), counted against how often the history shows such jumps. Default: on for "
        "latencies (a gauge with a time unit), off otherwise (error bursts already move the "
        "error rate; CPU held for minutes makes jumps common).",
    )
    min_events: int = Field(
        default=0,
        ge=0,
        le=MAX_MIN_EVENTS,
        description="Counts: judge a ratio only once the canary has this many denominator events.",
    )
    queries: dict[str, Any] = Field(
        default_factory=dict,
        description="Provider-specific query, keyed by source type (datadog, cloudwatch, ...).",
    )
    max: float | None = Field(
        default=None,
        ge=-MAX_LIMIT,
        le=MAX_LIMIT,
        allow_inf_nan=False,
        description="Absolute guardrail (SLO), in the metric's unit: the canary fails once shown "
        "above it (e.g. latency 800 ms), even where the baseline is as bad, unless both groups are "
        "(a fleet-wide incident: inconclusive). Gauges: the mean level; counts with a denominator: "
        "the ratio (0.01 = 1% of requests); counts without: events per interval.",
    )
    min: float | None = Field(
        default=None,
        ge=-MAX_LIMIT,
        le=MAX_LIMIT,
        allow_inf_nan=False,
        description="Absolute guardrail (SLO), in the metric's unit: the canary fails once shown "
        "below it (e.g. a throughput floor); as `max`, the other way.",
    )
    slo: Slo | None = Field(
        default=None,
        description="Error budget of a count of bad events with a denominator: fail a canary that "
        "burns it faster than `burn_rate` over a short and a long window.",
    )

    @field_validator("kind", mode="before")
    @classmethod
    def _a_registered_kind(cls, value: Any) -> Any:
        if not (isinstance(value, str) and value in KINDS):
            raise ValueError("Input should be " + " or ".join(repr(k) for k in KINDS))
        return value

    @model_validator(mode="after")
    def _guardrails(self) -> Metric:
        where = f"metric {self.name!r}"
        limits = [n for n in ("max", "min") if getattr(self, n) is not None]
        if (limits or self.slo) and self.bad_direction == "none":
            named = ", ".join(limits + ["slo"] * bool(self.slo))
            raise ValueError(f"{where}: a guardrail ({named}) judges the metric, but bad_direction none is "
                             "context only, never judged: set a bad_direction")
        if (limits or self.slo) and self.muted:
            # A muted metric never votes: its limit would be drawn in the report and never fail anything.
            named = ", ".join(limits + ["slo"] * bool(self.slo))
            raise ValueError(f"{where}: a guardrail ({named}) is a hard limit, but muted: true only reports the "
                             "metric and never fails the canary: remove muted to let the limit fail it, or remove "
                             f"{named} to only report it")
        if self.tolerance is not None and self.tolerance < MIN_TOLERANCE and self.judged:
            # A pass means the evidence favours "within tolerance" (issue 23): no evidence shows a
            # canary within 0, and one as good as the baseline lands above it half of the time.
            accepts = ("accepts no regression at all" if self.tolerance == 0
                       else f"is below {MIN_TOLERANCE:g} ({MIN_TOLERANCE:.1%}), next to no regression")
            raise ValueError(f"{where}: tolerance {self.tolerance:g} {accepts}, which no evidence can show "
                             "(a canary as good as the baseline measures above it half of the time, and would "
                             "end undecided): give the smallest regression that matters, e.g. 0.05")
        if self.tolerance is not None and self.tolerance >= 1 and self.bad_direction in ("decrease", "either") \
                and self.judged and self.summed:
            # A count cannot fall by 100% or more: its model's mean at the tolerance would be 0 or
            # below (a negative variance, a traceback). A gauge's "any fall is fine" (tolerance 4,
            # Kayenta's effect sizes; a floor judged by its guardrail alone) stays allowed.
            raise ValueError(f"{where}: tolerance {self.tolerance:g} on a decrease is a fall of "
                             f"{self.tolerance:.0%} or more, which no count can make: give less than 1 (e.g. 0.2)")
        if self.max is not None and self.min is not None and self.min >= self.max:
            raise ValueError(f"{where}: min ({self.min:g}) must be below max ({self.max:g})")
        if self.summed and any(getattr(self, n) < 0 for n in limits):
            raise ValueError(f"{where}: a count's limit is a rate or a ratio, never below 0 "
                             f"(got {', '.join(f'{n} {getattr(self, n):g}' for n in limits)})")
        if self.slo is not None and (not self.summed or self.denominator is None):
            raise ValueError(f"{where}: slo is an error budget of bad events out of a denominator: "
                             "only for a count with a denominator (errors out of requests)")
        if self.slo is not None and self.bad_direction != "increase":
            raise ValueError(f"{where}: slo counts bad events, so its bad_direction must be increase "
                             f"(got {self.bad_direction})")
        return self

    @property
    def judged(self) -> bool:
        return self.bad_direction != "none" and not self.muted

    @property
    def summed(self) -> bool:
        """Its points are events summed over each interval (its kind's, `gate.kinds`): a count."""
        return KINDS[self.kind].summed

    @property
    def judges_tail(self) -> bool:
        if self.tail is not None:
            return self.tail
        return not self.summed and (self.unit or "").lower() in TIME_UNITS


class Scope(Strict):
    """A group of hosts, as the data source names it (a Datadog tag filter, an ASG name...)."""

    scope: str = Field(min_length=1, max_length=200, description="Tag filter or group name.")


class Source(Strict):
    """Where the metrics come from. Options are specific to each type."""

    type: Literal["datadog", "cloudwatch", "replay", "simulate"]
    options: dict[str, Any] = Field(default_factory=dict)


ELB_ARN = r"^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:[0-9]{12}:"
StepLifetime = duration(10, DAY)


class Rollout(Strict):
    """Traffic steps on an Application Load Balancer (`gate rollout`): the canary's share of one
    weighted forward action is raised step by step, each step judged on its own window."""

    listener_arn: str | None = Field(
        default=None, pattern=ELB_ARN + r"listener/app/", max_length=400,
        description="The listener whose default action forwards to the target groups (or rule_arn).")
    rule_arn: str | None = Field(
        default=None, pattern=ELB_ARN + r"listener-rule/app/", max_length=400,
        description="The listener rule whose forward action holds the target groups (or listener_arn).")
    canary_target_group: str = Field(
        pattern=ELB_ARN + r"targetgroup/", max_length=400, description="ARN of the canary's target group.")
    production_target_group: str = Field(
        pattern=ELB_ARN + r"targetgroup/", max_length=400,
        description="ARN of production's target group: it gets what the others do not.")
    baseline_target_group: str | None = Field(
        default=None, pattern=ELB_ARN + r"targetgroup/", max_length=400,
        description="ARN of the baseline's target group, if it is in the same forward action: it gets "
        "the canary's share at every step (groups of one size see one load; steps then at most 49), and 0 "
        "on a rollback.")
    steps: list[Annotated[int, Field(ge=1, le=100)]] = Field(
        min_length=1, max_length=20,
        description="The canary's share of the traffic at each step, in percent, increasing (e.g. [5, 25, 50]).")
    step_lifetime: StepLifetime = Field(
        description="How long each step is judged at most (its own window; the reference stays the deploy's).")

    @model_validator(mode="after")
    def _consistent(self) -> Rollout:
        if (self.listener_arn is None) == (self.rule_arn is None):
            raise ValueError("give exactly one of listener_arn (its default action) and rule_arn (a listener rule)")
        if self.steps != sorted(set(self.steps)):
            raise ValueError(f"steps must increase strictly, got {self.steps}")
        groups = [g for g in (self.canary_target_group, self.production_target_group, self.baseline_target_group) if g]
        if len(set(groups)) != len(groups):
            raise ValueError("the canary, production and baseline target groups must be different target groups")
        if self.baseline_target_group and self.steps[-1] >= 50:
            raise ValueError(f"with a baseline_target_group the baseline gets the canary's share too, and "
                             f"production keeps the rest: a step may be at most 49 (got {self.steps[-1]})")
        return self

    @property
    def forward_arn(self) -> str:
        return self.listener_arn or self.rule_arn  # type: ignore[return-value]

    @property
    def region(self) -> str:
        """The load balancer's region, as its ARN names it (arn:aws:elasticloadbalancing:REGION:...)."""
        return self.forward_arn.split(":")[3]

AsgName = str  # checked once `{release}` is filled (gate.actions.resolve_groups)
CheckpointDelay = duration(0, 2 * DAY)  # AWS: at most 172800 s


def _checkpoints(points: tuple[int, ...]) -> tuple[int, ...]:
    if not points or points[-1] != 100 or list(points) != sorted(set(points)) or points[0] <= 0:
        raise ValueError(f"increasing percentages ending at 100 (got {','.join(map(str, points))})")
    return points


class Actions(Strict):
    """What `gate promote` and `gate rollback` act on, and how promote rolls the canary out.
    Group names may name the release (`web-{release}`); command-line options win."""

    production_asg: AsgName | None = Field(default=None, description="Production Auto Scaling group (promote).")
    canary_asg: AsgName | None = Field(
        default=None, description="Canary Auto Scaling group (promote, rollback). Default, for a CloudWatch "
        "policy: the canary's scope.")
    baseline_asg: AsgName | None = Field(
        default=None, description="Baseline Auto Scaling group (promote, rollback). Default, for a CloudWatch "
        "policy: the baseline's scope.")
    region: str | None = Field(
        default=None, min_length=1, max_length=50,
        description="AWS region of the groups. Default: a CloudWatch source's region, else the boto3 chain.")
    strategy: Literal["refresh", "swap"] = Field(
        default="refresh", description="refresh: an instance refresh with checkpoints; swap: new instances, "
        "then the old ones go.")
    checkpoints: Annotated[tuple[int, ...], AfterValidator(_checkpoints)] = Field(
        default=(20, 50, 100), description="Instance refresh checkpoints, increasing percentages ending at 100.")
    checkpoint_delay: CheckpointDelay = Field(default=600, description="Pause at each checkpoint (e.g. 10m).")


class Notify(Strict):
    """Who hears of a decisive verdict besides the store. Slack's webhook and the report's bucket
    are settings of the deployment, not of a policy: SLACK_WEBHOOK_URL, GATE_REPORT_BUCKET."""

    datadog_event: bool = Field(
        default=False, description="Post each decisive verdict as a Datadog event (a Datadog source only).")
    webhook: bool = Field(
        default=False, description="POST each decisive verdict as signed JSON to GATE_WEBHOOK_URL (HMAC-SHA256 "
        "with GATE_WEBHOOK_SECRET), for an incident tool; never changes the verdict.")


class Links(Strict):
    """Where a failing metric's evidence is (gate.links): the canary's log group for CloudWatch
    Logs Insights, or templates replacing the default links of the source."""

    log_group: str | None = Field(
        default=None, min_length=1, max_length=512, pattern=r"^[\w/.#{}-]+$",
        description="CloudWatch: the canary's log group for a Logs Insights link ({scope} is replaced).")
    urls: dict[str, Annotated[str, Field(max_length=2000, pattern=r"^https://")]] | None = Field(
        default=None,
        description="Name (a-z, 0-9, _ or -, at most 10 links) -> https URL template replacing the source's "
        "default links; placeholders "
        "{scope} {baseline} {metric} {start} {end} {start_ms} {end_ms} {start_iso} {end_iso} {region} {site}, "
        "each percent-encoded. {} turns the links off.")

    @field_validator("urls")
    @classmethod
    def _names_and_placeholders(cls, urls: dict[str, str] | None) -> dict[str, str] | None:
        from gate.links import PLACEHOLDERS, template_fields

        if urls is not None and len(urls) > 10:
            raise ValueError(f"at most 10 links (got {len(urls)})")
        for name, template in (urls or {}).items():
            if not re.fullmatch(r"[a-z][a-z0-9_-]{0,39}", name):
                raise ValueError(f"{name[:50]!r}: a link's name is a-z, 0-9, _ or - (at most 40), starting with a letter")
            try:
                unknown = sorted(set(template_fields(template)) - set(PLACEHOLDERS))
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None
            if unknown:
                raise ValueError(f"{name}: unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)} "
                                 f"(known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)})")
        return urls


# Keys once read raw from `source.options`, by source type, and the field that replaces each.
# Read for one more version, with a warning naming the new field.
DEPRECATED_OPTIONS = {
    "datadog": {"production_asg": ("actions", "production_asg"), "canary_asg": ("actions", "canary_asg"),
                "baseline_asg": ("actions", "baseline_asg"), "events": ("notify", "datadog_event")},
    "cloudwatch": {"production_asg": ("actions", "production_asg"), "canary_asg": ("actions", "canary_asg"),
                   "baseline_asg": ("actions", "baseline_asg")},
}
_SECTIONS = {"actions": Actions, "notify": Notify}
_warned: set[str] = set()


def _moved_options(data: Any) -> Any:
    """A policy whose `source.options` still holds keys that moved to `actions:` / `notify:`:
    moved there, with a warning (once per key and process) naming the new field."""
    source = data.get("source") if isinstance(data, dict) else None
    if not isinstance(source, dict) or not isinstance(source.get("options"), dict):
        return data  # validation says what is wrong
    options = source["options"]
    moves = DEPRECATED_OPTIONS.get(source.get("type")) if isinstance(source.get("type"), str) else None
    if not moves or not set(options) & set(moves):
        return data
    data, options = dict(data), dict(options)
    for old, (section, field) in moves.items():
        if old not in options:
            continue
        value = options.pop(old)
        target = data.get(section)
        target = dict(target) if isinstance(target, dict) else ({} if target is None else target)
        if not isinstance(target, dict):
            continue  # the section itself is wrong: validation says so
        default = _SECTIONS[section].model_fields[field].default
        if target.get(field, default) not in (default, value):  # a default is not a choice (a dumped policy has them)
            raise ValueError(f"source.options.{old} and {section}.{field} are both given: keep {section}.{field} only")
        target[field] = value
        data[section] = target
        if old not in _warned:
            _warned.add(old)
            log.warning("policy: source.options.%s is deprecated, use %s.%s (read for one more version)",
                        old, section, field)
    data["source"] = {**source, "options": options}
    return data


def _never_pass_undecided(value: object) -> object:
    if value == "pass":
        raise ValueError("'pass' would promote a canary the gate could not judge (a metric without "
                         "enough data); use fail or inconclusive, and mute (muted: true) a metric "
                         "that may lack data")
    return value


class Policy(Strict):
    """A canary gate: metrics, groups, timing and the data source."""

    name: str = Field(pattern=NAME_PATTERN, description="Service or gate name.")
    source: Source
    canary: Scope
    baseline: Scope | None = Field(
        default=None,
        description="The concurrent baseline group. null: judge the canary against its own "
        "pre-deploy history (history-only).",
    )
    interval: Interval = Field(default=60, description="Time between evaluations (and the step), 10s to 1d.")
    lifetime: Lifetime = Field(default=3600, description="Canary lifetime: the last moment to decide, up to 7d.")
    history: History = Field(
        default=7 * 86400, description="How much baseline history trains the seasonal model."
    )
    min_duration: MinDuration | None = Field(
        default=None,
        description="How long a canary must run before it can pass (default: half the lifetime). "
        "Intermittent faults and slow leaks need time to show; failing is never delayed.",
    )
    warmup: Warmup = Field(
        default=0,
        description="The first minutes of a canary, shown but not compared (new instances warm "
        "their caches and JIT; Argo's initialDelay, Spinnaker's analysis delay). A canary that "
        "stops reporting is still caught at once. At most a quarter of the lifetime, and shorter "
        "than min_duration.",
    )
    on_undecided: Annotated[Literal["fail", "inconclusive"], BeforeValidator(_never_pass_undecided)] = Field(
        default="fail",
        description="What a canary still undecided at the end of its lifetime becomes: fail (roll "
        "back) or inconclusive (exit 3). At the end every metric with enough data is decided, so "
        "what is left undecided could not be judged, and is never passed.",
    )
    alpha: float = Field(
        default=0.01,
        gt=0,
        le=0.5,
        allow_inf_nan=False,
        description="False-alarm budget of the sequential tests, shared across metrics and looks "
        "(the end-of-lifetime rule spends as much again).",
    )
    pass_risk: float = Field(
        default=0.2,
        gt=0,
        le=0.5,
        allow_inf_nan=False,
        description="Chance of passing a canary with a metric sitting exactly at its tolerance "
        "at the two pass checkpoints (shared by them). A real regression, well beyond the tolerance, is "
        "passed far less often; a smaller value makes passing slower. At the end of the lifetime a metric "
        "not shown worse passes only with its estimate within the tolerance: there a canary exactly at "
        "its tolerance passes about half the time, whatever this value.",
    )
    metrics: list[Metric] = Field(min_length=1)
    rollout: Rollout | None = Field(
        default=None,
        description="Traffic steps on an ALB for `gate rollout` (each step judged with this policy, "
        "step_lifetime as its lifetime); `gate check` ignores it.",
    )
    actions: Actions = Field(default_factory=Actions, description="What promote and rollback act on.")
    notify: Notify = Field(default_factory=Notify, description="Who hears of a decisive verdict.")
    links: Links | None = Field(
        default=None, description="Links from a failing metric to its evidence (traces, logs, the metric): "
        "the source's defaults unless overridden here.")

    @model_validator(mode="before")
    @classmethod
    def _deprecated_options(cls, data: Any) -> Any:
        return _moved_options(data)

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        names = [m.name for m in self.metrics]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"metric names must be unique, repeated: {', '.join(duplicates)}")
        by_name = {m.name: m for m in self.metrics}
        for m in self.metrics:
            if m.denominator is None:
                continue
            if not m.summed:
                raise ValueError(f"metric {m.name!r}: only a count can have a denominator")
            other = by_name.get(m.denominator)
            if other is None:
                raise ValueError(f"metric {m.name!r}: denominator {m.denominator!r} is not a metric")
            if not other.summed:
                raise ValueError(f"metric {m.name!r}: denominator {m.denominator!r} must be a count")
        if self.lifetime < self.interval:
            raise ValueError("lifetime must be at least one interval")
        if self.min_duration is not None and self.min_duration > self.lifetime:
            raise ValueError("min_duration must not exceed the lifetime")
        if self.warmup and (self.warmup > self.lifetime // 4
                            or self.warmup >= (self.min_duration if self.min_duration is not None else self.lifetime // 2)):
            raise ValueError("warmup must be at most a quarter of the lifetime and shorter than min_duration "
                             "(default: half the lifetime): a canary is compared for most of its life before it passes")
        if not any(m.judged for m in self.metrics):
            raise ValueError("no metric is judged (all are muted or have bad_direction: none)")
        untolerant = [m.name for m in self.metrics if m.judged and m.tolerance is None]
        if untolerant and self.baseline is not None:
            # null judges a departure from the seasonal history, which a canary beside a baseline
            # is not judged on: compared with the baseline it would have no tolerance to pass within.
            raise ValueError(f"metric {untolerant[0]!r}: tolerance null judges only a departure from the seasonal "
                             "history, for a policy without a baseline group; this policy compares the canary "
                             "with its baseline: give the regression it accepts, e.g. 0.1")
        if self.notify.datadog_event and self.source.type != "datadog":
            raise ValueError("notify.datadog_event: Datadog events are posted for a Datadog source only")
        return self

    @model_validator(mode="after")
    def _rollout_fits(self) -> Policy:
        """Each step is judged as a canary whose lifetime is step_lifetime: the timing rules hold there."""
        if self.rollout is None:
            return self
        step = self.rollout.step_lifetime
        steps = len(self.rollout.steps)
        if steps * step > self.lifetime:
            # The lifetime bounds the release: a deploy is judged (and registered) for that long.
            raise ValueError(f"the rollout's {steps} steps of rollout.step_lifetime ({step} s) "
                             f"must fit in the lifetime ({self.lifetime} s)")
        if step < self.interval:
            raise ValueError(f"rollout.step_lifetime ({step} s) must be at least one interval ({self.interval} s)")
        if self.min_duration is not None and self.min_duration > step:
            raise ValueError(f"min_duration ({self.min_duration} s) must not exceed rollout.step_lifetime ({step} s): "
                             "every step must be able to pass")
        earliest = self.min_duration if self.min_duration is not None else step // 2
        if steps * (earliest + 2 * self.interval) > self.lifetime:
            # A step passes at min_duration at the earliest, and the next one is set at the look
            # after (up to two intervals later on the interval grid): steps that can only pass at
            # their end drift past the lifetime, and the last one's look is refused (nothing is
            # left to judge) with the canary left at its share.
            raise ValueError(f"the rollout's {steps} steps cannot pass before min_duration ({earliest} s) and each "
                             f"next step is set up to two intervals ({self.interval} s) later: {steps} x "
                             f"{earliest + 2 * self.interval} s must fit in the lifetime ({self.lifetime} s): make "
                             f"min_duration shorter than rollout.step_lifetime, or the lifetime longer")
        if self.warmup and (self.warmup > step // 4
                            or self.warmup >= (self.min_duration if self.min_duration is not None else step // 2)):
            raise ValueError(f"warmup ({self.warmup} s) must be at most a quarter of rollout.step_lifetime ({step} s) "
                             "and shorter than min_duration: each step has its warm-up")
        return self

    def step_policy(self) -> Policy:
        """The policy one traffic step is judged with: this one, with step_lifetime as its lifetime."""
        assert self.rollout is not None
        return self.model_copy(update={"lifetime": self.rollout.step_lifetime, "rollout": None})

    def scopes(self, release: str | None = None, canary: str | None = None,
               baseline: str | None = None) -> tuple[str, str | None]:
        """The canary's and the baseline's scopes: the ones given (`--canary`, the event's), else
        the policy's; with `{release}` replaced when the release is given."""
        canary_scope = canary or self.canary.scope
        baseline_scope = baseline or (self.baseline.scope if self.baseline else None)
        if release is None:
            return canary_scope, baseline_scope
        return render_scope(canary_scope, release), (render_scope(baseline_scope, release) if baseline_scope else None)

    def metric(self, name: str) -> Metric:
        return next(m for m in self.metrics if m.name == name)

    def rollout_or_refuse(self) -> Rollout:
        """The rollout section, for whatever steps traffic (`gate rollout`, the Lambda's rollout
        looks, gate.rollout.Rollout); a policy without one is refused here, once."""
        if self.rollout is None:
            raise PolicyError(f"rollout: {NO_ROLLOUT}")
        return self.rollout

    @property
    def source_region(self) -> str | None:
        """The region the source names (`source.options.region`, a CloudWatch source's), or None."""
        return self.source.options.get("region")

    @property
    def aws_region(self) -> str | None:
        """The region of the gate's AWS calls on the groups (Auto Scaling, EC2), one rule: the
        action's region (`actions.region`) if set, else the rollout's load balancer's (its ARN's:
        the target groups, and so the groups, live beside it; before, `gate rollback` moved the
        traffic in the listener's region and acted on the groups of the settings' region), else
        the source's (`source_region`), else None: the settings' (gate.aws.make_client:
        botocore's chain, AWS_DEFAULT_REGION or the profile, then AWS_REGION). Two calls follow
        where their object lives instead: a rollout's load balancer is called in its ARN's region
        (`rollout.region`), and the CloudWatch source and its links in the source's."""
        return self.actions.region or (self.rollout.region if self.rollout else None) or self.source_region

    @property
    def history_only(self) -> bool:
        return self.baseline is None


NO_ROLLOUT = ("the policy has no rollout section (listener_arn or rule_arn, canary_target_group, "
              "production_target_group, steps, step_lifetime)")

# Bounds of a policy: far above any real one (a few hundred values, a few levels deep, a few KB),
# far below what would exhaust memory or the stack. YAML aliases are counted expanded: a "billion
# laughs" of nested aliases is a few lines of YAML but billions of values once serialised.
MAX_POLICY_BYTES = 1_000_000
MAX_POLICY_VALUES = 100_000
MAX_POLICY_DEPTH = 32


def _check_shape(data: Any, origin: str) -> None:
    """Refuses a policy too large once its aliases are expanded, too deep, or holding itself.
    Iterative and memoised per object, so a bomb is measured without being expanded."""
    sizes: dict[int, tuple[int, int]] = {}  # id -> (values once expanded, depth)
    stack: list[tuple[Any, bool]] = [(data, False)]
    open_ids: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        if not isinstance(node, (dict, list)) or (id(node) in sizes and not children_done):
            continue
        children = list(node.values()) if isinstance(node, dict) else node
        if not children_done:
            if id(node) in open_ids:
                raise PolicyError(f"{origin}: the policy contains itself (a YAML alias inside its own anchor)")
            open_ids.add(id(node))
            stack.append((node, True))
            stack.extend((c, False) for c in children if isinstance(c, (dict, list)))
            continue
        open_ids.discard(id(node))
        measured = [sizes.get(id(c), (1, 0)) for c in children]
        values = 1 + sum(v for v, _ in measured)
        depth = 1 + max((d for _, d in measured), default=0)
        if values > MAX_POLICY_VALUES:
            raise PolicyError(f"{origin}: the policy holds more than {MAX_POLICY_VALUES} values once its YAML "
                              "aliases are expanded (an alias bomb?)")
        if depth > MAX_POLICY_DEPTH:
            raise PolicyError(f"{origin}: the policy is nested more than {MAX_POLICY_DEPTH} levels deep "
                              "once its YAML aliases are expanded")
        sizes[id(node)] = (values, depth)


def parse_policy(data: Any, origin: str = "policy") -> Policy:
    if not isinstance(data, dict):
        raise PolicyError(f"{origin}: a policy is a mapping of fields, got {type(data).__name__}")
    _check_shape(data, origin)
    try:
        return Policy.model_validate(data)
    except ValidationError as e:
        raise PolicyError(f"{origin}: {validation_problems(e, root='policy')}") from None


def with_overrides(policy: Policy, origin: str, **fields: Any) -> Policy:
    """`policy` with some fields replaced (`gate check --interval`, the bench's alpha), validated as
    the same fields of a policy file are, the rules across fields included (PolicyError)."""
    try:
        return Policy.model_validate({**dict(policy), **fields})
    except ValidationError as e:
        raise PolicyError(f"{origin}: {validation_problems(e, root='policy')}") from None


def policy_from_text(text: str | bytes, origin: str) -> Policy:
    """A policy from its YAML (or JSON) text, or the bytes of it: a file, an S3 object, an SSM
    parameter. Bytes may be cut at MAX_POLICY_BYTES + 1 by the reader: more is refused anyway."""
    size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_POLICY_BYTES:
        raise PolicyError(f"{origin}: larger than {MAX_POLICY_BYTES // 1000} KB, the most a policy may be "
                          "(real ones are a few KB)")
    try:
        text = text.decode("utf-8") if isinstance(text, bytes) else text
        _check_nesting(text, origin)
        data = yaml.safe_load(text)
    except UnicodeDecodeError as e:
        raise PolicyError(f"{origin}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise PolicyError(f"{origin}: {problem}{where}") from None
    return parse_policy(data, origin=origin)


def _check_nesting(text: str, origin: str) -> None:
    """Refuses YAML nested deeper than a policy can be, from its parse events (the parser is
    iterative; building the document recurses, and would end in a RecursionError)."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_POLICY_DEPTH:
                mark = event.start_mark
                raise PolicyError(f"{origin}: nested more than {MAX_POLICY_DEPTH} levels deep "
                                  f"at line {mark.line + 1}, column {mark.column + 1}")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def load_policy(path: str | Path) -> Policy:
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_POLICY_BYTES + 1)  # never more: a larger file is refused anyway
    except FileNotFoundError:
        raise PolicyError(f"policy file not found: {path}") from None
    except OSError as e:
        raise PolicyError(f"cannot read policy file {path}: {e}") from None
    return _anchored(policy_from_text(raw, origin=str(path)), path.parent)


# Source options that name files or folders: relative to the policy file that names them, not to
# the folder the gate happens to run in (`gate check --policy ci/policy.yaml` from anywhere).
PATH_OPTIONS = {"replay": ("case",)}


def _anchored(policy: Policy, folder: Path) -> Policy:
    options = policy.source.options
    names = [n for n in PATH_OPTIONS.get(policy.source.type, ()) if isinstance(options.get(n), str) and options[n]]
    if not names:
        return policy
    resolved = {**options, **{n: str(folder / options[n]) for n in names}}  # an absolute path stays as it is
    return policy.model_copy(update={"source": policy.source.model_copy(update={"options": resolved})})


def json_schema() -> str:
    schema = Policy.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "canary-gate policy"
    return json.dumps(schema, indent=2)
