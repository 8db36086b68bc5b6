"""What a kind's comparison of canary and baseline gives the decision (`Comparison`, one
`DirectionTest` per bad direction), the paired excursions both kinds count, and the metric result
every stage writes."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gate import guardrails
from gate.judge.budget import Budget
from gate.judge.reference import EXCURSION_JUMP, MIN_EXCURSION_RATE
from gate.policy import Metric
from gate.rules import Rule
from gate.stats.sequential import MarginTest, excursion_threshold
from gate.verdict import MetricResult

MIN_POINTS_TO_FAIL = 5  # a mean of fewer points is one spike away from anything
MIN_POINTS_FOR_EXCURSIONS = 10
END_CLIP_SCALES = 12.0
# The interval a metric result carries is the one of the test that decided it (issue 24, item 4).
FAIL_TEST = "fail test (anytime)"
PASS_TEST = "pass test (checkpoint)"
END_TEST = "end-of-lifetime test"
# Gauges: a paired excess further than this many robust scales from its median is clipped
# before it is summed (one host's cache spike is not a regression; see stats.winsorize).
CLIP_SCALES = 4.0


def _result(m: Metric, verdict: str, rule: Rule, reason: str, **numbers) -> MetricResult:
    return MetricResult(
        name=m.name, verdict=verdict, reason=reason, rule=rule, tolerance=m.tolerance,
        critical=m.critical, muted=m.muted, slo=guardrails.describe(m), **numbers,
    )


@dataclass(frozen=True)
class DirectionTest:
    """One direction of one metric's margin test."""

    direction: str
    test: MarginTest  # on the excess as it is: what passing rests on
    worse: float  # sum of canary minus baseline in the bad direction (no tolerance)
    null_variance: float  # its variance under "canary and baseline alike"
    robust: MarginTest | None = None  # on the clipped excess: what failing early rests on
    per_effect: float = 1.0  # the test's sum per unit of relative effect (total / per_effect = effect - tolerance)
    at_end: MarginTest | None = None  # gauges, at the end: on the excess clipped at END_CLIP_SCALES

    def effect(self, tolerance: float) -> tuple[float, float]:
        """The effect in the bad direction (+0.27: 27% worse) and its standard error, from the
        sum of the excess over the tolerance and its variance; a gauge's at the end on its excess
        clipped at END_CLIP_SCALES: one host's 10x spike for a minute moves a mean of 60 points
        by 15%, and is not a regression (the 4 scales of the fail tests would cut the real
        skewed noise of a noisy pair, and a +27% with it)."""
        test = self.at_end or self.test
        return tolerance + test.total / self.per_effect, math.sqrt(max(test.variance, 0.0)) / self.per_effect

    @property
    def beyond(self) -> bool:
        """Shown worse than tolerated, on the clipped excess where there is one: one host's spike
        must not fail a canary, though it holds a pass back (`test` keeps it)."""
        return (self.robust or self.test).beyond


@dataclass(frozen=True)
class Comparison:
    """What a metric's canary-vs-baseline numbers say, for `_decide` to turn into a result."""

    outcomes: list[DirectionTest]
    excursions: tuple[int, int] | None  # (seen, the count that fails) or None: not judged
    numbers: dict
    n: int
    tolerance: float
    shown: str  # the numbers in words, for every reason
    doubt: str | None = None  # why the numbers cannot be trusted to pass (a missing series)
    doubt_rule: Rule = Rule.IMPLAUSIBLY_CLEAN


def _directions(m: Metric) -> list[str]:
    return ["increase", "decrease"] if m.bad_direction == "either" else [m.bad_direction]


def _at_tolerance(m: Metric, tolerance: float) -> list[tuple[str, float, float]]:
    """Each bad direction with its sign (+1: an increase is bad) and the canary's factor at the
    tolerance in that direction (1 + sign * tolerance): what each mean/rate test compares against."""
    return [(d, sign, 1 + sign * tolerance) for d in _directions(m) for sign in (1.0 if d == "increase" else -1.0,)]


def _excursions(m: Metric, difference, scale, ref, directions, budget: Budget, lifetime_points: int, centre: bool):
    """(excursions so far, the count that fails) for a canary point far above its baseline, or
    None when the history gives no noise scale. Gauges are centred on their median difference
    first: a steady offset is the level test's business, not a burst."""
    if not m.judges_tail:
        return None
    if scale is None:  # no usable history (absent, or flat): the window's spread alone
        scale = np.zeros(len(difference))
    rate = ref.excursion_rate if ref is not None and ref.excursion_rate is not None else MIN_EXCURSION_RATE
    ok = np.isfinite(difference)
    if ok.sum() < MIN_POINTS_FOR_EXCURSIONS:
        return None
    difference, scale = difference[ok], scale[ok]
    if centre:
        # The history's noise may understate the pair's (a metric held for minutes jumps
        # rarely); the window's own robust spread, which a tail of 30% barely moves, is a floor.
        difference = difference - np.median(difference)
        scale = np.maximum(scale, _lower_side_sd(difference))
    if not np.all(scale > 0):
        return None
    u = difference / scale
    if directions == ["decrease"]:
        u = -u
    if centre and len(directions) == 1:
        # Two real hosts jump apart more often than one host's history jumps: the pair's own
        # excursions to the harmless side (a tail of slow requests never makes the canary
        # faster) say how often the harmful side jumps by chance.
        rate = max(rate, float(np.sum(u < -EXCURSION_JUMP)) / len(u))
    count = int(np.sum(u > EXCURSION_JUMP)) if directions != ["increase", "decrease"] else int(np.sum(np.abs(u) > EXCURSION_JUMP))
    needed = excursion_threshold(rate * len(directions), lifetime_points, budget.fail)
    return count, needed


def _lower_side_sd(centred: np.ndarray) -> float:
    """Robust spread from the points below the median only: a slow tail contaminates the upper
    side, the canary's own everyday noise shows on both."""
    below = -centred[centred < 0]
    if len(below) < 3:
        return 0.0
    return float(1.4826 * np.median(below))


def _pct(x: float | None) -> str:
    if x is None or not np.isfinite(x):
        return "n/a"
    return f"{x:+.1%}"
