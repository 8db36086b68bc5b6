"""Upper quantiles of a paired comparison: is the canary's tail worse than its noise allows?

A slow tail (one request in seven three times slower) moves a mean little and a median not at
all; what it moves is the upper quantiles. Here the canary's paired relative excess over its
baseline is compared with an upper quantile of the noise between two hosts (learned from the
history as one host's minute-to-minute jumps, which carry the same noise): under "no tail", a
point lands above that quantile with the chance 1 - quantile, so the count of points above it is
binomial, and a count that a whole lifetime would reach by chance only with probability alpha
fails. A count only grows, so one threshold for the lifetime is one test however often it is
looked at.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def relative_difference(canary: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """(canary - baseline) over their mean level, per point: the measure one host's jumps from
    one minute to the next are learned in, so a quantile of those jumps applies to it. Bounded
    by +-2, so one absurd point weighs as much as any other point above the threshold, no more.
    Zero where both are zero."""
    canary, baseline = np.asarray(canary, dtype=float), np.asarray(baseline, dtype=float)
    level = (np.abs(canary) + np.abs(baseline)) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(level > 0, (canary - baseline) / np.where(level > 0, level, 1.0), 0.0)


def centred_upper_quantile(x: np.ndarray, quantile: float) -> float | None:
    """The `quantile` of x about its median (None with no finite value): how far above its
    typical value a point of this noise lands with chance 1 - quantile."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return None
    if not 0 < quantile < 1:
        raise ValueError(f"quantile {quantile} must be within (0, 1)")
    return float(np.quantile(x - np.median(x), quantile))


def binomial_threshold(rate: float, points: int, alpha: float, minimum: int = 3) -> int:
    """Smallest count k that `points` independent points, each above a quantile with chance
    `rate`, reach with probability <= alpha: P(Binomial(points, rate) >= k) <= alpha."""
    from scipy.stats import binom  # here, not at import: scipy.stats costs a cold start

    points = max(int(points), 1)
    rate = min(max(rate, 0.0), 1.0)
    k = minimum
    while k <= points and binom.sf(k - 1, points, rate) > alpha:
        k += 1
    return k  # points + 1: no count can fail (a rate so high that the window is all noise)


def local_median(x: np.ndarray, half_width: int) -> np.ndarray:
    """Each point's running median over its `half_width` neighbours on each side, the window cut
    at the ends (never padded with values: the latest point of a live window is judged against
    the points before it, not against copies of itself)."""
    x = np.asarray(x, dtype=float)
    if len(x) == 0 or half_width <= 0:
        return x.copy()
    padded = np.concatenate([np.full(half_width, np.nan), x, np.full(half_width, np.nan)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half_width + 1)
    return np.nanmedian(windows, axis=1)


def runs(flags: np.ndarray) -> int:
    """How many runs of consecutive True there are: [T, T, F, T] has 2."""
    flags = np.asarray(flags, dtype=bool)
    if len(flags) == 0:
        return 0
    return int(flags[0]) + int(np.sum(flags[1:] & ~flags[:-1]))


@dataclass(frozen=True)
class TailExceedance:
    """The canary's points above the noise's upper quantile plus the tolerance, and the count
    that fails."""

    above: int  # runs of canary points that far above their baseline (after the median offset)
    below: int  # runs that far below it: the harmless side, the pair's own chance rate
    points: int
    threshold: float  # relative excess counted: the noise quantile plus the tolerance
    rate: float  # chance of a point above, under "no tail"
    needed: int  # the count that fails over the lifetime

    @property
    def beyond(self) -> bool:
        return self.above >= self.needed


def paired_tail_exceedance(canary: np.ndarray, baseline: np.ndarray, noise_quantile: float, quantile: float,
                           tolerance: float, lifetime_points: int, alpha: float,
                           half_width: int = 3) -> TailExceedance:
    """Count the canary points whose relative excess over their baseline, less the running median
    of that excess over `half_width` points each side, lies above `noise_quantile` (the noise's
    centred `quantile`, learned from one host's jumps from one point to the next) plus
    `tolerance`. The running median takes out what lasts: a steady offset is the level test's
    business, and two real pods trade load for minutes (one +60% while the other is -40%: the
    replicas of shared/corpus); a slow tail strikes a point at a time, above its neighbours. The chance of one is 1 - quantile, or the share
    of points that far on the harmless side, whichever is larger: two real hosts spike apart more
    often than one host's history jumps, and they spike both ways, where a slow tail goes one.

    A run of consecutive points above counts once: what the running median leaves of a drift
    is one event, not several independent draws. (P(a run starts at a point) <= P(the point is
    above), so the rate holds.)"""
    excess = relative_difference(canary, baseline)
    excess = excess[np.isfinite(excess)]
    n = len(excess)
    threshold = max(noise_quantile, 0.0) + max(tolerance, 0.0)
    if n == 0:
        return TailExceedance(0, 0, 0, threshold, 1.0, binomial_threshold(1.0, lifetime_points, alpha))
    centred = excess - local_median(excess, half_width)
    above, below = runs(centred > threshold), runs(-centred > threshold)
    rate = max(1.0 - quantile, below / n)
    return TailExceedance(above, below, n, threshold, rate,
                          binomial_threshold(rate, max(lifetime_points, n), alpha))
