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


def noise_variance(x: np.ndarray) -> float:
    """Per-point variance of the noise around the level, corrected for lag-1 autocorrelation.

    Measured around a straight line rather than the mean: a canary drifting away (a memory leak)
    is a change of level, not noise, and must not widen its own interval."""
    n = len(x)
    if n >= 8:
        index = np.arange(n, dtype=float)
        slope, intercept = np.polyfit(index, x, 1)
        residual = x - (intercept + slope * index)
        return float(residual @ residual / (n - 2)) * lag1_inflation(residual)
    return float(np.var(x, ddof=1)) * lag1_inflation(x)


@dataclass(frozen=True)
class MarginTest:
    """Outcome of testing a sum of 'excess over the tolerated level' against zero."""

    total: float  # sum of the excess: > 0 means worse than tolerated
    variance: float  # its accumulated variance
    fail_boundary: float  # anytime-valid: may be checked at every look
    checkpoint_boundary: float  # fixed-sample: for the few planned pass checkpoints only
    drift_now: float = 0.0  # the excess at the latest point on a straight-line fit (0: no drift)

    @property
    def beyond(self) -> bool:
        """Shown worse than the tolerance (valid at any look)."""
        return self.total > self.fail_boundary

    @property
    def within(self) -> bool:
        """Shown within the tolerance (valid at a planned checkpoint), and not drifting past it:
        a leak is still within on average long after its latest points are not."""
        return self.total < -self.checkpoint_boundary and self.drift_now < 0

    @property
    def estimate_within(self) -> bool:
        """The estimate itself is within the tolerance (the final judgement at the deadline)."""
        return self.total <= 0


def margin_test(
    excess: np.ndarray,
    prior_variance: np.ndarray,
    alpha_fail: float,
    alpha_checkpoint: float,
    target_points: int,
    prior_weight: float = 10.0,
) -> MarginTest:
    """Sequential test of sum(excess) against 0 with a variance that blends a prior per-point
    variance (from the history, known from the first point) with the empirical one.

    The prior keeps the first looks honest (an empirical variance from 3 points is unreliable);
    the empirical part takes over as points accumulate and catches a canary noisier than the
    history said. The blend never falls below half the prior.
    """
    n = len(excess)
    prior = float(np.mean(prior_variance)) if n else 0.0
    if n >= 3 and math.isfinite(prior_weight):
        empirical = noise_variance(excess)
        per_point = (prior_weight * prior + (n - 1) * empirical) / (prior_weight + n - 1)
        per_point = max(per_point, 0.5 * prior)
    else:
        per_point = prior
    variance = n * per_point
    target = max(target_points, 1) * max(per_point, prior, 1e-12)
    fail_b = mixture_boundary(variance, alpha_fail, mixture_rho(target, alpha_fail))
    checkpoint_b = NormalDist().inv_cdf(1 - alpha_checkpoint) * math.sqrt(variance)
    return MarginTest(float(np.sum(excess)), variance, fail_b, checkpoint_b, _fitted_last(excess))


def _fitted_last(x: np.ndarray) -> float:
    if len(x) < 8:
        return float(np.mean(x)) if len(x) else 0.0
    index = np.arange(len(x), dtype=float)
    slope, intercept = np.polyfit(index, x, 1)
    return float(intercept + slope * index[-1])


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
