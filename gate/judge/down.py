"""A canary that is gone, caught from its first minute (warm-up or not) and for every metric at
once: it stopped reporting (`_canary_down`), or it stopped serving (`_canary_not_serving`)."""

from __future__ import annotations

import math

import numpy as np

from gate.judge.screens import COLLAPSED_SHARE
from gate.policy import Policy
from gate.series import Frame, Observations
from gate.stats.counts import lower_tail

# A canary that serves none of a count's denominator (requests) for GONE_MIN_GAP points in a row
# while the baseline serves, after it served its share, is dead (out of the load balancer, its
# gateway gone) when its own earlier share makes none at all implausible. A canary that stops
# *reporting* is left to _canary_down: the dev corpus's flaky canaries (one point in eight
# missing, labelled pass) miss 3 points in a row after 5+ steady ones; silence of 2 or 3 points
# cannot tell them from a dead one.
GONE_MIN_GAP = 2
# ... unless the load balancer says which: at a rollout's look, none of the canary target group's
# targets healthy (its health checks failed UnhealthyThresholdCount times in a row on every one)
# and the canary silent, or serving nothing, for its last TARGETS_DOWN_MIN_GAP points while the
# baseline reported (_canary_targets_down). A flaky canary's targets stay healthy.
TARGETS_DOWN_MIN_GAP = 2


def _canary_down(policy: Policy, window: Observations, deployed_at: int, now: int, lifetime_points: int,
                 alpha: float) -> str | None:
    """The canary stopped reporting: the trailing run of steps with no judged metric from the
    canary is longer than its own missing rate makes plausible before the end of the lifetime.
    A few scattered gaps are tolerated; zero events (0.0) are data, not a gap."""
    names = [m.name for m in policy.metrics if m.judged]
    step = policy.interval
    reference_frame = window.baseline if window.baseline is not None and len(window.baseline) else None
    canary = window.canary
    grid_frame = reference_frame if reference_frame is not None else (canary if len(canary) else None)
    # The window's grid; with no point at all from either group, the deploy's (history-only: a
    # canary that never reported since the deploy has no frame to speak of).
    origin = int(grid_frame.timestamps[0]) if grid_frame is not None else -(-deployed_at // step) * step
    if origin > now:
        return None
    last_grid = now - (now - origin) % step
    if reference_frame is not None:
        # Judge only up to where the baseline has data: a late source delays both groups.
        last_grid = min(last_grid, int(reference_frame.timestamps[-1]))
    elif len(canary):
        # History-only: up to the source's horizon, the end of the grid it answered (a source
        # waiting for late data, Datadog's `settle`, has not read the last minutes yet).
        last_grid = min(last_grid, int(canary.timestamps[-1]))
    start = int(canary.timestamps[0]) if len(canary) else None
    reported = np.zeros(len(canary), dtype=bool)
    for n in names:
        reported |= canary.reporting(n)
    if reported.any():
        last = int(canary.timestamps[np.flatnonzero(reported)[-1]])
        seen = canary.timestamps <= last
        missing_before, points_before = int((~reported[seen]).sum()), int(seen.sum())
    else:
        first = reference_frame.timestamps[0] if reference_frame is not None else (start if start is not None else origin)
        last = int(first) - step
        missing_before, points_before = 0, 0
    gap = (last_grid - last) // step
    # Missing rate with a prior of 1 in 8 worth 8 points: an unseen canary is not assumed perfect.
    rate = (missing_before + 1) / (points_before + 8)
    needed = max(3, math.ceil(math.log(alpha / lifetime_points) / math.log(rate)))
    if gap < needed:
        return None
    if reference_frame is not None:
        baseline_reported = np.zeros(len(reference_frame), dtype=bool)
        for n in names:
            baseline_reported |= reference_frame.reporting(n)
        recent = reference_frame.timestamps > last
        if not baseline_reported[recent].any():
            # Nothing from either group: the source or the queries, not the canary, went quiet.
            return (f"neither group has reported any judged metric for the last {gap} points "
                    f"({gap * step // 60} min): the data source or its queries return nothing")
        while_ = "the baseline did"
    else:
        while_ = "it was expected"
    return (f"the canary has not reported its last {gap} points ({gap * step // 60} min) while {while_}; "
            f"its earlier gap rate ({rate:.0%}) makes {needed}+ missing points in a row implausible")


def _canary_not_serving(policy: Policy, window: Observations, now: int, lifetime_points: int,
                        alpha: float) -> str | None:
    """A dead canary within two looks (issue 23, item 5): after at least one point it served at,
    it serves none (or under COLLAPSED_SHARE of its usual share) of a judged count's denominator
    for its last GONE_MIN_GAP+ points while the baseline served at every one of them, and its own
    earlier share of the baseline's volume makes so few implausible (Poisson: P(X <= served)
    below the canary-down check's share of alpha per point of the lifetime, as _canary_down
    spends it)."""
    if window.baseline is None or len(window.baseline) == 0:
        return None
    base = window.baseline.between(int(window.baseline.timestamps[0]), now)
    judged = [m for m in policy.metrics if m.judged]
    canary_reported = np.zeros(len(base), dtype=bool)
    for m in judged:
        canary_reported |= np.isfinite(_aligned(window.canary, base, m.name))
    for volume in sorted({m.denominator for m in judged if m.denominator}):
        baseline_volume = _aligned(base, base, volume)
        # No volume point while the canary reports its other metrics is no request: CloudWatch
        # publishes no RequestCount for a minute without one, Datadog answers null.
        canary_volume = _aligned(window.canary, base, volume)
        canary_volume[np.isnan(canary_volume) & canary_reported] = 0.0
        counted = (np.nan_to_num(baseline_volume) > 0) & np.isfinite(canary_volume)
        # A minute the baseline served nothing at, or the canary reported nothing at (one dropped
        # scrape), says nothing either way: skipped, not a break of the idle run.
        neutral = ~(np.nan_to_num(baseline_volume) > 0) | ~canary_reported
        # Serving a trickle (1 request a minute where it served 1000) is out of service too: a
        # minute at under COLLAPSED_SHARE of the canary's usual share of the baseline's volume.
        with np.errstate(all="ignore"):
            shares = canary_volume[counted] / baseline_volume[counted]
        usual = float(np.percentile(shares, 90)) if len(shares) else 0.0
        off = canary_volume <= COLLAPSED_SHARE * usual * np.nan_to_num(baseline_volume)
        idle = _trailing_run(off, counted, neutral, base)
        if idle is None or idle[1] < GONE_MIN_GAP:
            continue
        points = np.flatnonzero(counted)
        before, after = points[:-idle[1]], points[-idle[1]:]
        share = float(np.sum(canary_volume[before]) / np.sum(baseline_volume[before]))
        expected = share * float(np.sum(baseline_volume[after]))
        served = float(np.sum(canary_volume[after]))
        if float(lower_tail(served, expected, 0.0)) < alpha / lifetime_points:  # Poisson: 1/k = 0
            what = f"no {volume}" if served == 0 else f"only {served:.0f} {volume}"
            return (f"the canary served {what} over its last {idle[1]} points ({idle[1] * base.step // 60} min) "
                    f"while the baseline served {np.sum(baseline_volume[after]):.0f}; at its own earlier share "
                    f"({share:.1%}) it would have served about {expected:.0f}: it is out of service")
    return None


def _canary_targets_down(policy: Policy, window: Observations, now: int) -> str | None:
    """A dead canary behind a rollout's load balancer within two looks (issue 23, item 5): none of
    the canary target group's targets takes traffic at this look (TargetHealth.serving), and at each of the
    baseline's last TARGETS_DOWN_MIN_GAP reported points the canary reported no judged metric, or
    none of a judged count's denominator the baseline served, after it reported and served at an
    earlier one. Either alone is not enough: silence is as often late or dropped data (the flaky
    canaries of the dev corpus), and health checks can fail on a path the release moved while it
    serves; both at once, while the baseline reports, is a canary out of service."""
    health = window.canary_targets
    if health is None or health.serving or window.baseline is None or len(window.baseline) == 0:
        return None
    base = window.baseline.between(int(window.baseline.timestamps[0]), now)
    judged = [m for m in policy.metrics if m.judged]
    baseline_reported = np.zeros(len(base), dtype=bool)
    served = np.zeros(len(base), dtype=bool)
    for m in judged:
        baseline_reported |= base.reporting(m.name)
        served |= np.isfinite(_aligned(window.canary, base, m.name))
    for volume in {m.denominator for m in judged if m.denominator}:
        # No datapoint is none served too: CloudWatch publishes no RequestCount for a minute
        # without requests (a volume that never reported is caught by "served at an earlier one").
        none = ~(_aligned(window.canary, base, volume) > 0) & (np.nan_to_num(_aligned(base, base, volume)) > 0)
        served &= ~none
    points = np.flatnonzero(baseline_reported)
    last, earlier = points[-TARGETS_DOWN_MIN_GAP:], points[:-TARGETS_DOWN_MIN_GAP]
    if len(last) < TARGETS_DOWN_MIN_GAP or served[last].any() or not served[earlier].any():
        return None
    minutes = TARGETS_DOWN_MIN_GAP * base.step // 60
    return (f"the load balancer takes the canary out of service ({health.describe()}), and the canary has "
            f"reported or served nothing at its last {TARGETS_DOWN_MIN_GAP} points ({minutes} min) while the "
            "baseline did: it is down")


def _aligned(frame: Frame, grid: Frame, name: str) -> np.ndarray:
    """`frame`'s values of `name` at `grid`'s timestamps, NaN where it has none."""
    out = np.full(len(grid), np.nan)
    column = frame.values.get(name)
    if column is None or len(frame) == 0:
        return out
    _, at_grid, at_frame = np.intersect1d(grid.timestamps, frame.timestamps, return_indices=True)
    out[at_grid] = column[at_frame]
    return out


def _trailing_run(off: np.ndarray, counted: np.ndarray, neutral: np.ndarray, grid: Frame) -> tuple[int, int] | None:
    """(points before, length) of the trailing run of `off` points among the `counted` ones, when
    at least one counted point comes before it (the last of them not off) and every step from
    that point on is counted or `neutral` (a minute that says nothing either way); else None."""
    points = np.flatnonzero(counted)
    on = np.flatnonzero(counted & ~off)
    if len(points) == 0 or len(on) == 0 or not off[points[-1]]:
        return None
    run, before = points[points > on[-1]], points[points <= on[-1]]
    span = np.arange(on[-1], points[-1] + 1)
    if not np.all(counted[span] | neutral[span]) or np.any(np.diff(grid.timestamps[span]) != grid.step):
        return None
    return len(before), len(run)
