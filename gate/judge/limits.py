"""The absolute guardrails measured (`gate.guardrails` says what the limits are and what a
breach does): each limit's excess on the canary's points, summed, against the mixture boundary of
the relative tests, with the variance its kind gives points at the limit."""

from __future__ import annotations

import numpy as np

from gate import guardrails
from gate.judge.budget import TUNED_AT, Setting
from gate.judge.comparison import CLIP_SCALES, MIN_POINTS_TO_FAIL
from gate.judge.reference import MetricReference, Reference, _expected
from gate.kinds import judge_of
from gate.policy import Metric
from gate.series import Frame
from gate.stats.sequential import MarginTest, margin_test, winsorize


def _value(m: Metric, x: np.ndarray, volume: np.ndarray | None) -> float | None:
    """A group's value over its points, as a limit is written: a gauge's mean, a count's ratio
    to its denominator (events per point without one)."""
    if len(x) == 0:
        return None
    return judge_of(m).value(x, volume)


def _limit_checks(m: Metric, ref: MetricReference | None, x: np.ndarray, volume: np.ndarray | None,
                  setting: Setting, reference_value: float | None,
                  scale: np.ndarray | None = None) -> list[guardrails.Check]:
    """Each guardrail of the metric measured on the canary's points (see gate.guardrails): the
    excess over the limit, summed, against the same mixture boundary as the relative tests, with
    the variance the points would have at the limit (a gauge's noise scale, the count model)."""
    checks = []
    n = len(x)
    canary = _value(m, x, volume)
    if canary is None:
        return checks
    volume = volume if volume is not None else np.ones(n)
    for limit in guardrails.limits(m):
        with np.errstate(all="ignore"):
            test = _beyond_limit_test(m, ref, x, volume, limit, setting, scale)
        shown = test.computable and test.beyond and n >= MIN_POINTS_TO_FAIL
        recent, last = None, 0
        if limit.kind == "burn":
            # The short window: the burn is still going on (a burst that ended does not fail).
            last = min(n, max(MIN_POINTS_TO_FAIL, setting.lifetime_points // guardrails.SHORT_WINDOW_SHARE))
            recent = _value(m, x[-last:], volume[-last:])
            shown = shown and limit.beyond(recent)
        # Not computable (values near overflow): the limit proves nothing, so it holds a pass.
        over = not test.computable or not test.estimate_within
        checks.append(guardrails.Check(limit, shown, over, canary, reference_value, n, recent, last))
    return checks


def _beyond_limit_test(m: Metric, ref: MetricReference | None, x: np.ndarray, volume: np.ndarray,
                       limit: guardrails.Limit, setting: Setting, scale: np.ndarray | None) -> MarginTest:
    excess, prior, weight = judge_of(m).limit_terms(m, ref, x, volume, limit, scale)
    # Fail on the excess clipped as a gauge's is: one point far over the limit is not a breach.
    clipped = winsorize(excess, CLIP_SCALES, float(np.sqrt(np.mean(prior))) if len(prior) else 0.0)
    # Only its failing side is read (shown beyond; the estimate itself): no drift to fit.
    return margin_test(clipped, prior, setting.budget.fail, setting.budget.checkpoint,
                       setting.lifetime_points // TUNED_AT, prior_weight=weight, drift=False)


def _history_limit_checks(m: Metric, reference: Reference, canary: Frame, setting: Setting) -> list[guardrails.Check]:
    """History-only: the canary's points against its limits; the reference is the seasonal
    expectation of the same moments (a service over its limit at these hours anyway)."""
    if not guardrails.limits(m) or m.name not in canary.values:
        return []
    x = canary.values[m.name]
    volume = canary.values.get(m.denominator) if m.denominator else None
    if m.denominator and volume is None:
        return []
    ok = np.isfinite(x) & (np.isfinite(volume) if volume is not None else True)
    t, x = canary.timestamps[ok], x[ok]
    volume = volume[ok] if volume is not None else None
    ref = reference.metrics.get(m.name)
    # The seasonal noise at these moments: a gauge's variance at the limit (a count's is its model's).
    scale = ref.seasonal.scale(t) if ref is not None and ref.seasonal is not None else None
    return _limit_checks(m, ref, x, volume, setting, _expected(m, reference, t), scale)
