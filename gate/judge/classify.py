"""The classifier, canary beside a baseline: per metric, the pairs (`preprocess`) compared as its
kind compares them (`gate.judge.kinds`), then decided: fail when shown worse than tolerated at any
look, pass when shown within at a checkpoint or not worse at the end, otherwise wait; its limits
(`gate.judge.limits`) and its coverage after."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from gate import guardrails
from gate.judge.budget import Budget, Setting
from gate.judge.comparison import (END_TEST, MIN_POINTS_TO_FAIL, PASS_TEST, Comparison, DirectionTest, _pct,
                                   _result)
from gate.judge.count import GLITCH_WINDOW_OVER_P99
from gate.judge.coverage import _covered_enough
from gate.judge.limits import _limit_checks, _value
from gate.judge.preprocess import Paired, _latest_moment, preprocess
from gate.judge.reference import EXCURSION_JUMP, FLEET_ANOMALY_SCALES, MetricReference, Reference, _expected
from gate.kinds import judge_of
from gate.policy import Metric
from gate.rules import Rule, StatisticRules
from gate.series import Observations
from gate.verdict import MetricResult

# The end of the lifetime also fails a metric whose straight-line trend puts its latest points
# significantly beyond the tolerance (one more fixed-sample share of alpha): a leak's mean over
# the window is within long after its latest points are not (issue 12). Gauges only: a leak is a
# gauge's (memory, latency creep), and a low-traffic count's excess is a few 0/1 events whose
# fitted latest point rests on a normal approximation they do not meet (a chance late cluster
# would fail it; `gate plan` at a 1% share caught a 2x error rate that way, on luck).
LATEST_AT_END = True
# At the end of the lifetime a pass means the evidence favours "within tolerance" (issue 23): a
# metric not shown worse passes only where the estimate is likelier under an acceptable canary
# than under one regressed by END_REGRESSION_MULTIPLE times its tolerance; otherwise it could not
# tell (inconclusive, and `on_undecided` decides). How strongly it must favour it, one of:
# * "not-shown-worse": always (the rule before issue 23: passes any estimate it cannot condemn);
# * "estimate-within": the effect's estimate is within the tolerance (the cross-validated pick,
#   docs/cross-validation.md): a likelihood ratio above 1 only, so a wide interval still reaching
#   the regression passes, and a canary exactly at its tolerance passes about half the time at
#   the end, whatever `pass_risk` (which bounds the checkpoints' passes);
# * "upper-bound": the effect's upper bound (END_BOUND_Z standard errors) is below the regression;
# * "likelihood-ratio": the effect at the tolerance is END_LIKELIHOOD_RATIO times likelier than at
#   the regression (normal approximation of the estimate).
END_PASS_RULE = "estimate-within"
END_REGRESSION_MULTIPLE = 2.0
END_BOUND_Z = 1.645
END_LIKELIHOOD_RATIO = 3.0


def _relative_to_baseline(
    m: Metric, ref: MetricReference | None, paired: Paired | None, reference: Reference, setting: Setting,
    notes: list[str], latest: int, step: int,
) -> MetricResult:
    if paired is None:
        return _result(m, "inconclusive", Rule.NO_DATA,
                       "no data for this metric from one of the groups (query broken or metric absent)")
    if paired.held_out:
        notes.append(f"{m.name}: {paired.held_out} point(s) held out: both groups were more than "
                     f"{FLEET_ANOMALY_SCALES:g} noise scales off their seasonal expectation (fleet-wide anomaly)")
    n = len(paired.timestamps)
    expected = _expected(m, reference, paired.timestamps)
    if n < 3:
        return _result(m, "inconclusive", Rule.TOO_FEW_POINTS, f"{n} paired point(s) so far", expected=expected)
    if m.denominator and float(np.sum(paired.canary_volume)) < max(1, m.min_events):
        return _result(m, "inconclusive", Rule.MINIMUM_VOLUME,
                       f"the canary has {np.sum(paired.canary_volume):.0f} {m.denominator}, "
                       f"needs {max(1, m.min_events)}", expected=expected)
    kind = judge_of(m)
    with np.errstate(all="ignore"):
        comparison = kind.compare(m, paired, ref, setting, expected)
    result = _decide(m, comparison, setting)
    if result.verdict != "fail":
        result = kind.fails_besides(m, paired, ref, setting, comparison) or result
    # Minutes held out for a fleet-wide anomaly (a minority) were reported by the canary: covered.
    elapsed = max(0, setting.lifetime_points - setting.remaining_points)
    return _covered_enough(result, paired.reported, setting.lifetime_points, elapsed, latest, step, sent=paired.sent)


def _against_baseline(
    m: Metric, reference: Reference, window: Observations, setting: Setting, notes: list[str],
) -> MetricResult:
    screened_notes: list[str] = []
    result, paired = _judged_against_baseline(m, reference, window, setting, screened_notes, screen=True)
    if paired is None or not paired.glitches:
        notes.extend(screened_notes)
        return result
    # By size alone a screen cannot tell a glitch from a real moment of one group (a bad release's
    # retries drawing canary traffic with its errors; a fleet surge the canary could not keep up
    # with): the glitch moments are judged both ways and the canary gets the worse answer. The
    # screen may take a glitch's excuse away, never a regression's evidence.
    kept_notes: list[str] = []
    kept, _ = _judged_against_baseline(m, reference, window, setting, kept_notes, screen=False)
    left_out = (f"{paired.glitches} point(s) over {GLITCH_WINDOW_OVER_P99:g}x the history's 99th percentile in "
                f"one group only ({', '.join(paired.glitched)})")
    if OUTCOME_SEVERITY[kept.verdict] > OUTCOME_SEVERITY[result.verdict]:
        notes.extend(kept_notes)
        return replace(kept, reason=f"{kept.reason}; {left_out}: judged with them, the worse answer")
    notes.extend(screened_notes)
    notes.append(f"{m.name}: {left_out} left out as glitches")
    return replace(result, reason=f"{result.reason}; {left_out} left out as glitches")


# The worse of two answers for one metric (a glitch screen's, _against_baseline).
OUTCOME_SEVERITY = {"pass": 0, "skipped": 1, "inconclusive": 2, "fail": 3}


def _judged_against_baseline(m: Metric, reference: Reference, window: Observations, setting: Setting,
                             notes: list[str], screen: bool) -> tuple[MetricResult, Paired | None]:
    """The metric's comparison with the baseline and its guardrails, on one preprocessing."""
    ref = reference.metrics.get(m.name)
    paired = preprocess(m, window, ref, reference.metrics.get(m.denominator) if m.denominator else None,
                        screen=screen)
    result = _relative_to_baseline(m, ref, paired, reference, setting, notes, _latest_moment(window),
                                   window.canary.step)
    if paired is None or not guardrails.limits(m):
        return result, paired
    checks = _limit_checks(m, ref, paired.canary, paired.canary_volume, setting,
                           reference_value=_value(m, paired.baseline, paired.baseline_volume))
    return guardrails.guard(m, result, checks, history_only=False), paired


def _decide(m: Metric, comparison: Comparison, setting: Setting) -> MetricResult:
    kind = judge_of(m)
    rules = kind.rules
    budget, look, numbers, shown = setting.budget, setting.look, comparison.numbers, comparison.shown
    outcomes, n = comparison.outcomes, comparison.n
    if not all(o.test.computable and (o.robust is None or o.robust.computable)
               and math.isfinite(o.worse) and math.isfinite(o.null_variance) for o in outcomes):
        return _result(m, "inconclusive", Rule.NOT_COMPUTABLE,
                       f"the values are too large to compute with ({shown}): could not judge", **_finite(numbers))
    for o in outcomes:
        if o.beyond and n >= MIN_POINTS_TO_FAIL:
            return _result(m, "fail", rules.beyond_tolerance,
                           f"{shown}: shown worse than tolerated ({o.direction})", **numbers)
    if comparison.excursions is not None:
        count, needed = comparison.excursions
        if count >= needed:
            return _result(m, "fail", Rule.EXCURSIONS_BEYOND_CHANCE,
                           f"{count} of {n} canary points more than {EXCURSION_JUMP:g} noise scales above "
                           f"the baseline (a tail or bursts; the history makes {needed}+ implausible); {shown}",
                           **numbers)
    if comparison.doubt is not None:
        return _result(m, "inconclusive", comparison.doubt_rule, comparison.doubt, **numbers)
    if look.checkpoint and all(o.test.within for o in outcomes):
        numbers = _decided_by(m, numbers, outcomes, lambda o: o.test.checkpoint_boundary, PASS_TEST)
        return _result(m, "pass", rules.within_tolerance, f"{shown}: shown within tolerance", **numbers)
    if look.final:
        for o in outcomes:
            if _worse_at_end(o, budget):
                numbers = _decided_by(m, numbers, [o], lambda o: budget.final_z * math.sqrt(o.null_variance), END_TEST)
                return _result(m, "fail", rules.beyond_tolerance_at_end,
                               f"{shown}: at the end of the lifetime the estimate is beyond tolerance "
                               f"and the canary significantly worse ({o.direction})", **numbers)
            if LATEST_AT_END and kind.trend_at_end and o.test.latest_beyond(budget.final_z):
                return _result(m, "fail", rules.rising_beyond_tolerance_at_end,
                               f"{shown}: at the end of the lifetime its trend puts the latest points "
                               f"significantly beyond tolerance ({o.direction}; a leak)", **numbers)
        for o in outcomes:
            if not _favours_within(o, comparison.tolerance):
                return _could_not_tell(m, o, comparison, rules)
        numbers = _decided_by(m, numbers, outcomes, lambda o: END_BOUND_Z * o.effect(m.tolerance or 0.0)[1] * o.per_effect, END_TEST)
        return _result(m, "pass", rules.not_shown_worse_at_end,
                       f"{shown}: at the end of the lifetime not shown worse beyond tolerance", **numbers)
    return _result(m, "inconclusive", Rule.INTERVAL_STRADDLES_TOLERANCE, f"{shown}: not yet conclusive", **numbers)


def _favours_within(o: DirectionTest, tolerance: float) -> bool:
    """Whether the evidence at the end favours "within tolerance" over a regression of
    END_REGRESSION_MULTIPLE times it (END_PASS_RULE)."""
    effect, se = o.effect(tolerance)
    regressed = END_REGRESSION_MULTIPLE * tolerance
    if END_PASS_RULE == "not-shown-worse":
        return True
    if END_PASS_RULE == "estimate-within" or se <= 0:
        return effect <= tolerance
    if END_PASS_RULE == "upper-bound":
        return effect + END_BOUND_Z * se < regressed
    if END_PASS_RULE == "likelihood-ratio":
        log_ratio = ((effect - regressed) ** 2 - (effect - tolerance) ** 2) / (2 * se**2)
        return log_ratio >= math.log(END_LIKELIHOOD_RATIO)
    raise ValueError(f"END_PASS_RULE {END_PASS_RULE!r}")


def _could_not_tell(m: Metric, o: DirectionTest, comparison: Comparison, rules: StatisticRules) -> MetricResult:
    """Inconclusive at the end: the estimate and its interval say why no pass."""
    effect, se = o.effect(comparison.tolerance)
    sign = -1.0 if o.direction == "decrease" else 1.0
    low, high = sorted((sign * (effect - END_BOUND_Z * se), sign * (effect + END_BOUND_Z * se)))
    numbers = {**comparison.numbers, "interval": (low, high), "interval_test": END_TEST}
    return _result(m, "inconclusive", rules.could_not_tell_at_end,
                   f"{comparison.shown}: at the end of the lifetime could not tell it within tolerance "
                   f"from a regression of {END_REGRESSION_MULTIPLE:g}x it: estimate {_pct(sign * effect)}, "
                   f"interval [{_pct(low)}, {_pct(high)}], tolerance {comparison.tolerance:.0%}", **numbers)


def _decided_by(m: Metric, numbers: dict, outcomes: list[DirectionTest], boundary, test: str) -> dict:
    """The numbers with the interval of the test that decided: that test's estimate of the
    effect plus or minus its boundary (a sum of excess, `boundary(outcome)`) in units of the
    effect, so that a pass's interval lies within the tolerance as the pass test found it."""
    tolerance = m.tolerance or 0.0
    bounds = []
    for o in outcomes:
        effect, _ = o.effect(tolerance)
        half = boundary(o) / o.per_effect
        sign = -1.0 if o.direction == "decrease" else 1.0
        bounds += [sign * (effect - half), sign * (effect + half)]
    if not all(math.isfinite(b) for b in bounds):
        return numbers
    low = max(min(bounds), judge_of(m).lowest_effect)  # a rate is never below zero
    return {**numbers, "interval": (low, max(bounds)), "interval_test": test}


def _worse_at_end(o: DirectionTest, budget: Budget) -> bool:
    """The deadline: as Kayenta does, fail a difference that is both significant and beyond the
    tolerance. (A fixed-sample test against the tolerance itself would promise fewer false
    alarms near the tolerance, but measured on the corpora it gave up 6 points of detection
    and no false alarm.)"""
    return not o.test.estimate_within and o.worse > budget.final_z * math.sqrt(o.null_variance)


def _finite(numbers: dict) -> dict:
    def clean(v):
        if isinstance(v, tuple):
            return tuple(clean(x) for x in v) if all(clean(x) is not None for x in v) else None
        return v if v is None or isinstance(v, str) or math.isfinite(v) else None
    return {k: clean(v) for k, v in numbers.items()}
