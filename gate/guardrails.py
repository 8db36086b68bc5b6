"""Absolute guardrails (SLOs): a metric's limits in its own unit, and an error budget's burn rate.

The relative judgement asks "is the canary worse than its baseline?"; a guardrail asks "is the
canary beyond what the service promises?", whatever the baseline does: a release must not be
promoted into an SLO breach. What a limit is over is what the judge already estimates:

* a gauge: the mean level of the canary's points (ms, %, ...);
* a count with a denominator: the ratio of the sums (errors / requests: `max: 0.01` is 1%);
* a count without one: events per interval (the sum over the number of points).

The canary fails a limit when it is *shown* beyond it by the judge's anytime-valid test (one
point far over it is not a breach), and an error budget when it burns faster than `burn_rate`
over the window so far (shown, as a limit) and over its last twelfth (the estimate, the SRE
workbook's short window: the burn is still going on). When the reference is beyond the limit
too (the baseline over the same points; history-only, the seasonal expectation) the release is
not blamed: the metric is inconclusive, a fleet-wide incident (or a service that breaches its
SLO at these hours anyway), and nothing is promoted into it.

The judge measures (`gate.judge.limits`); this module says what the limits are and what a
measurement decides.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from gate.policy import Metric
from gate.rules import Rule
from gate.verdict import MetricResult

SHORT_WINDOW_SHARE = 12  # the workbook's 5 min of a 1 h long window: the last twelfth of the lifetime


@dataclass(frozen=True)
class Limit:
    kind: Literal["max", "min", "burn"]
    value: float  # in the unit the metric is judged in (burn: the error ratio that burns that fast)
    words: str  # for people: "limit 800 ms", "14.4x the error budget of objective 99.9%"

    @property
    def sign(self) -> float:
        """+1 where above the value is bad, -1 where below is."""
        return -1.0 if self.kind == "min" else 1.0

    def beyond(self, x: float | None) -> bool:
        return x is not None and self.sign * (x - self.value) > 0


def in_unit(m: Metric, x: float) -> str:
    """A value of the metric as a limit is written: a ratio as a percentage, a gauge in its unit."""
    if m.summed and m.denominator:
        return f"{100 * x:.3g}%"
    if m.summed:
        return f"{x:.4g} {m.name} per interval"
    return f"{x:.4g} {m.unit or ''}".rstrip()


def limits(m: Metric) -> list[Limit]:
    out = []
    if m.max is not None:
        out.append(Limit("max", m.max, f"limit {in_unit(m, m.max)}"))
    if m.min is not None:
        out.append(Limit("min", m.min, f"floor {in_unit(m, m.min)}"))
    if m.slo is not None:
        out.append(Limit("burn", m.slo.threshold, f"limit {m.slo.burn_rate:g}x the budget of objective "
                                                   f"{100 * m.slo.objective:g}%"))
    return out


def describe(m: Metric) -> str | None:
    """The metric's guardrails in a few words, for every output (report, console, JSON)."""
    parts = []
    if m.max is not None:
        parts.append(f"max {in_unit(m, m.max)}")
    if m.min is not None:
        parts.append(f"min {in_unit(m, m.min)}")
    if m.slo is not None:
        parts.append(f"burn < {m.slo.burn_rate:g}x ({100 * m.slo.objective:g}%)")
    return "; ".join(parts) or None


@dataclass(frozen=True)
class Check:
    """One limit measured on the canary's points of the window."""

    limit: Limit
    shown_beyond: bool  # by the anytime-valid test (the burn: and over the short window)
    over: bool  # the estimate itself is beyond the limit (its points clipped as the test's are)
    canary: float  # the canary over the window, in the limit's unit
    reference: float | None  # the baseline over the same points; history-only: the expectation
    points: int
    recent: float | None = None  # the burn: the canary's ratio over the short window...
    recent_points: int = 0  # ...of this many points

    @property
    def fleet(self) -> bool:
        """The reference is beyond the limit too: not the release's doing."""
        return self.limit.beyond(self.reference)


def guard(m: Metric, result: MetricResult, checks: list[Check], history_only: bool) -> MetricResult:
    """The metric's result once its guardrails are read: a breach of the canary's own fails it
    (whatever the comparison said); a relative fail stands; a breach the reference shares holds
    the metric (inconclusive); and a pass waits while the canary's estimate is beyond a limit."""
    shown = [c for c in checks if c.shown_beyond]
    blamed = [c for c in shown if not c.fleet]
    if blamed:
        c = blamed[0]
        return replace(result, verdict="fail", rule=Rule.BURNS_ERROR_BUDGET if c.limit.kind == "burn" else Rule.BREACHES_SLO,
                       reason=_breach(m, c))
    if result.verdict == "fail":
        return result
    if shown:
        return replace(result, verdict="inconclusive", rule=Rule.FLEET_BREACHES_SLO, reason=_shared(m, shown[0], history_only))
    over = [c for c in checks if c.over]
    if result.verdict == "pass" and over:
        c = over[0]
        return replace(result, verdict="inconclusive", rule=Rule.AT_SLO_LIMIT,
                       reason=f"{_canary(m, c)}: not shown beyond its SLO ({c.limit.words}) but not within it "
                              f"either: not passed; {result.reason}")
    return result


def _canary(m: Metric, c: Check) -> str:
    what = "error ratio" if m.denominator else ("rate" if m.summed else "mean")
    return f"canary {what} {in_unit(m, c.canary)} over {c.points} points"


def _breach(m: Metric, c: Check) -> str:
    if c.limit.kind == "burn":
        assert m.slo is not None and c.recent is not None
        budget = 1 - m.slo.objective
        return (f"{_canary(m, c)} ({c.canary / budget:.3g}x the budget), {in_unit(m, c.recent)} over the last "
                f"{c.recent_points} ({c.recent / budget:.3g}x): burns its error budget faster than its SLO allows "
                f"({c.limit.words})")
    side = "above" if c.limit.kind == "max" else "below"
    return f"{_canary(m, c)}: breaches its SLO ({c.limit.words}), shown {side} it"


def _shared(m: Metric, c: Check, history_only: bool) -> str:
    assert c.reference is not None
    if history_only:
        return (f"{_canary(m, c)} breaches its SLO ({c.limit.words}), but so does the seasonal expectation "
                f"at these hours ({in_unit(m, c.reference)}): the service, not the release; not promoted")
    return (f"both groups breach its SLO ({c.limit.words}): {_canary(m, c)}, baseline {in_unit(m, c.reference)}: "
            "a fleet-wide incident, not the release; not promoted")
