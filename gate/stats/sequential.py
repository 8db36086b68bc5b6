"""Anytime-valid tests: boundaries a running sum may cross with probability at most alpha,
however often it is looked at (Robbins' normal mixture; Howard et al. 2021, "Time-uniform,
nonparametric, nonasymptotic confidence sequences").

The gate looks every interval; a fixed-sample test checked 60 times would raise a false alarm
in a fair share of healthy canaries. A mixture boundary grows like sqrt(V log V) in the
accumulated variance V, so the chance that a null sum *ever* crosses it stays below alpha.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np


def mixture_rho(target_variance: float, alpha: float) -> float:
    """Mixture width that makes the boundary tightest when the variance reaches `target_variance`."""
    log_term = 2 * math.log(1 / alpha)
    return max(target_variance, 1e-12) / (log_term + math.log1p(log_term))


def mixture_boundary(variance: float, alpha: float, rho: float) -> float:
    """Normal-mixture boundary: P(exists t: S_t >= boundary(V_t)) <= alpha for a sum S_t of
    zero-mean (sub-)Gaussian increments with accumulated variance V_t."""
    v = max(variance, 0.0) + rho
    return math.sqrt(v * (2 * math.log(1 / alpha) + math.log(v / rho)))


def lag1_inflation(x: np.ndarray) -> float:
    """Variance inflation of a mean for lag-1 autocorrelated points, (1 + r) / (1 - r), r >= 0.

    Neighbouring minutes of real KPIs are rarely independent; ignoring it would make the
    intervals too narrow and the false alarms too many."""
    if len(x) < 8:
        return 1.0
    d = x - x.mean()
    denom = float(d @ d)
    if denom <= 0:
        return 1.0
    r = float(d[1:] @ d[:-1]) / denom
    r = min(max(r, 0.0), 0.8)
    return (1 + r) / (1 - r)


MAX_LONG_RUN_INFLATION = 20.0


def long_run_inflation(x: np.ndarray) -> float:
    """How much more a mean of these points varies than independent points would: the larger of
    the lag-1 (AR(1)) inflation and a Bartlett-kernel (Newey-West) long-run estimate over
    ~1.5 n^(1/3) lags, never below 1.

    Two real hosts drift apart for a minute and back: at 10-second steps that is six points
    that move together, which a lag-1 correlation alone understates."""
    n = len(x)
    ar1 = lag1_inflation(x)
    if n < 8:
        return ar1
    d = x - x.mean()
    gamma0 = float(d @ d) / n
    if gamma0 <= 0:
        return ar1
    lags = min(n - 2, max(1, int(1.5 * n ** (1 / 3))))
    total = 1.0
    for k in range(1, lags + 1):
        total += 2 * (1 - k / (lags + 1)) * float(d[k:] @ d[:-k]) / n / gamma0
    return float(min(max(total, ar1, 1.0), MAX_LONG_RUN_INFLATION))


def noise_variance(x: np.ndarray) -> float:
    """Per-point variance of the noise around the level, inflated for autocorrelation (the
    long-run variance a sum of these points has).

    Measured around a straight line rather than the mean: a canary drifting away (a memory leak)
    is a change of level, not noise, and must not widen its own interval."""
    n = len(x)
    if n >= 8:
        index = np.arange(n, dtype=float)
        slope, intercept = np.polyfit(index, x, 1)
        residual = x - (intercept + slope * index)
        return float(residual @ residual / (n - 2)) * long_run_inflation(residual)
    return float(np.var(x, ddof=1)) * lag1_inflation(x)


def winsorize(x: np.ndarray, scales: float, floor_scale: float = 0.0) -> np.ndarray:
    """Clip points further than `scales` robust scales (MAD, floored at `floor_scale`) from the
    median: a single 10x spike of one host moves a sum as much as a real shift would, and
    inflates its variance until a real shift hides in it. Symmetric noise keeps its mean."""
    if len(x) < 3:
        return x
    centre = float(np.median(x))
    scale = max(1.4826 * float(np.median(np.abs(x - centre))), floor_scale)
    if not np.isfinite(scale) or scale <= 0:
        return x
    return np.clip(x, centre - scales * scale, centre + scales * scale)


# The variance the window shows may only raise the history's prior, never lower it: a prior
# learned from one host's minutes is the least two hosts can differ by.
PRIOR_FLOOR = 1.0
# margin_test(window_floor=...): the window's own variance floors a few points' blend only where
# it contradicts the prior at this level (a one-sided chi-square test of the sample variance).
PRIOR_CONTRADICTED_AT = 0.05


@dataclass(frozen=True)
class MarginTest:
    """Outcome of testing a sum of 'excess over the tolerated level' against zero."""

    total: float  # sum of the excess: > 0 means worse than tolerated
    variance: float  # its accumulated variance
    fail_boundary: float  # anytime-valid: may be checked at every look
    checkpoint_boundary: float  # fixed-sample: for the few planned pass checkpoints only
    drift_now: float = 0.0  # the excess at the latest point on a straight-line fit (0: no drift)
    drift_end: float = 0.0  # the same line carried to the end of the lifetime (slope shrunk by its error)
    drift_now_error: float = 0.0  # standard error of drift_now (0: no line fitted)

    @property
    def beyond(self) -> bool:
        """Shown worse than the tolerance (valid at any look)."""
        return self.total > self.fail_boundary

    @property
    def within(self) -> bool:
        """Shown within the tolerance (valid at a planned checkpoint), and not drifting past it
        by the end of the lifetime: a leak is still within on average long after its latest
        points are not."""
        return self.total < -self.checkpoint_boundary and self.drift_now < 0 and self.drift_end < 0

    @property
    def estimate_within(self) -> bool:
        """The estimate itself is within the tolerance (the final judgement at the deadline)."""
        return self.total <= 0

    def latest_beyond(self, z: float) -> bool:
        """The straight line's latest point is beyond the tolerance by `z` of its standard errors:
        a leak whose mean over the window is still within, while its latest points are not."""
        return self.drift_now_error > 0 and self.drift_now > z * self.drift_now_error

    @property
    def computable(self) -> bool:
        """Every number is finite: an overflow (values around 1e154) proves nothing either way."""
        return all(math.isfinite(v) for v in (self.total, self.variance, self.fail_boundary,
                                              self.checkpoint_boundary, self.drift_now, self.drift_end,
                                              self.drift_now_error))


def margin_test(
    excess: np.ndarray,
    prior_variance: np.ndarray,
    alpha_fail: float,
    alpha_checkpoint: float,
    target_points: int,
    prior_weight: float = 10.0,
    remaining_points: int = 0,
    drift: bool = True,
    window_floor: np.ndarray | None = None,
) -> MarginTest:
    """Sequential test of sum(excess) against 0 with a variance that blends a prior per-point
    variance (from the history, known from the first point) with the empirical one.

    The prior keeps the first looks honest (an empirical variance from 3 points is unreliable);
    the empirical part takes over as points accumulate and catches a canary noisier than the
    history said (two real hosts drift apart more than one host's minutes do). The blend never
    falls below PRIOR_FLOOR times the prior. `drift=False` skips the straight-line fit only a pass
    reads (`within`): half the cost of a test that is only ever asked whether it fails.

    `window_floor` (the per-point variance the window's points would have by the history at
    their own levels): nor below the window's own variance while the prior weighs more than the
    window's points (n - 1 < prior_weight), where the window contradicts that variance (its
    plain variance beyond its PRIOR_CONTRADICTED_AT quantile of a sample variance). Where the
    prior is only the least the points can vary (one host's noise, for the difference of two
    hosts), blending it in pulls a few points that vary far more toward a variance the window
    shows it understates: two real hosts drifting apart for five points read as a shift. A window
    the history explains keeps the blend (an unconditional floor, the max of the blend and a 4-df
    estimate, cost every early fail power); so does a canary whose noise grew with its level (a
    latency +90% with its noise +90%: the history's relative noise at the canary's level explains
    it). Past that the window's own variance leads anyway.
    """
    n = len(excess)
    with np.errstate(all="ignore"):
        prior = float(np.mean(prior_variance)) if n else 0.0
        if n >= 3 and math.isfinite(prior_weight):
            empirical = noise_variance(excess)
            per_point = (prior_weight * prior + (n - 1) * empirical) / (prior_weight + n - 1)
            # While the prior weighs more than the window's points (the few-point looks).
            contradicted = window_floor is not None and n - 1 < prior_weight and _contradicts(excess, window_floor)
            floor = empirical if contradicted else 0.0
            per_point = max(per_point, PRIOR_FLOOR * prior, floor)
        else:
            per_point = prior
        variance = n * per_point
        target = max(target_points, 1) * max(per_point, prior, 1e-12)
        fail_b = mixture_boundary(variance, alpha_fail, mixture_rho(target, alpha_fail)) if math.isfinite(variance) else math.inf
        checkpoint_b = NormalDist().inv_cdf(1 - alpha_checkpoint) * math.sqrt(variance) if math.isfinite(variance) else math.inf
        now, end, now_error = _drift(excess, remaining_points) if drift else (0.0, 0.0, 0.0)
        return MarginTest(float(np.sum(excess)), variance, fail_b, checkpoint_b, now, end, now_error)


def _contradicts(x: np.ndarray, expected_variance: np.ndarray) -> bool:
    """The points' plain sample variance lies beyond the PRIOR_CONTRADICTED_AT upper quantile of
    the sample variance of as many points of the prior's variance (chi-square, n - 1 df)."""
    from scipy.stats import chi2  # here, not at import: scipy.stats costs a cold start ~0.7 s

    n = len(x)
    expected = float(np.mean(expected_variance))
    if n < 3 or not expected > 0:
        return False
    quantile = chi2.ppf(1 - PRIOR_CONTRADICTED_AT, n - 1) / (n - 1)
    return float(np.var(x, ddof=1)) > quantile * expected


def _drift(x: np.ndarray, remaining: int) -> tuple[float, float, float]:
    """The excess at the latest point on a straight-line fit, the same carried `remaining` points
    on with the slope shrunk by one standard error (a noisy slope must not hold every pass back;
    a steady rise toward the tolerance must), and the standard error of the first (0: too few
    points for a line). The residuals' autocorrelation widens both errors."""
    n = len(x)
    if n < 8:
        level = float(np.mean(x)) if n else 0.0
        return level, level, 0.0
    index = np.arange(n, dtype=float)
    slope, intercept = np.polyfit(index, x, 1)
    now = float(intercept + slope * index[-1])
    residual = x - (intercept + slope * index)
    spread = float(np.sum((index - index.mean()) ** 2))
    residual_variance = float(residual @ residual) / (n - 2) * long_run_inflation(residual)
    slope_se = math.sqrt(residual_variance / spread)
    now_se = math.sqrt(residual_variance * (1 / n + (index[-1] - index.mean()) ** 2 / spread))
    return now, now + max(0.0, float(slope) - slope_se) * max(remaining, 0), now_se


def excursion_threshold(rate: float, points: int, alpha: float, minimum: int = 3) -> int:
    """Smallest count of rare events that a window of `points` would reach by chance with
    probability <= alpha, when each point is such an event with probability `rate`.

    A count of events only grows, so comparing it with a threshold set for the whole lifetime
    is one test, however often it is looked at."""
    from scipy.stats import poisson  # here, not at import: scipy.stats costs a cold start ~0.7 s

    expected = max(rate, 0.0) * max(points, 1)
    k = minimum
    while poisson.sf(k - 1, expected) > alpha:
        k += 1
    return k
