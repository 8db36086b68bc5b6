"""Counts of events (errors) per point: how unlikely a window, or a stretch of it, with so few
events is, when each point is negative binomial around an expected count (Var = mu (1 + mu / k)).
Pure numerics: arrays in, probabilities out."""

from __future__ import annotations

import numpy as np

from gate.stats.seasonal import BUCKETS_PER_DAY, DAY


def sum_inverse_k(expected: np.ndarray, inverse_k: float) -> float:
    """1/k of a sum of negative binomial points with these means and one 1/k: the sum's variance
    sum mu_i (1 + mu_i / k) is M (1 + M / k_sum) with 1/k_sum = (1/k) sum mu_i^2 / M^2 (about
    1/k over the points, not 1/k itself: the per-point 1/k applied to the sum made a history's
    bursts a licence for a whole window without one event)."""
    expected = np.asarray(expected, dtype=float)
    total = float(np.sum(expected))
    if not (total > 0 and np.isfinite(total)):
        return 0.0
    # As shares of the total: squaring the total overflows past 1e154 and underflows below 1e-154.
    return inverse_k * float(np.sum(np.square(expected / total)))


def window_inverse_k(events: np.ndarray, expected: np.ndarray) -> float:
    """1/k as a window's own points show it, against their expected counts (a moment estimate:
    E[(x - mu)^2] = mu + mu^2 / k), leaving out the one point that says most: a single burst
    (one minute at 10x) must not make any lull of the rest look like chance. 0 where they vary no
    more than Poisson."""
    ok = np.isfinite(events) & np.isfinite(expected)
    x, mu = events[ok], expected[ok]
    with np.errstate(all="ignore"):
        terms = np.square(x - mu) - mu
        weights = np.square(mu)
        if len(terms) < 2:
            return 0.0
        largest = int(np.argmax(terms / np.where(weights > 0, weights, np.inf)))
        keep = np.arange(len(terms)) != largest
        squares = float(np.sum(weights[keep]))
        if not (squares > 0 and np.isfinite(squares)):
            return 0.0
        estimate = float(np.sum(terms[keep])) / squares
    return max(0.0, estimate) if np.isfinite(estimate) else 0.0


def lower_tail(seen, mean, inverse_k) -> np.ndarray:
    """P(X <= seen) for negative binomial counts of these means, Var = mean (1 + mean / k);
    Poisson where 1/k is 0; 1 where the mean is 0. Element-wise over arrays."""
    from scipy.stats import nbinom, poisson  # here, not at import: scipy.stats costs a cold start

    seen, mean, inverse_k = np.broadcast_arrays(np.floor(np.asarray(seen, float)),
                                                np.asarray(mean, float), np.asarray(inverse_k, float))
    chance = np.ones(seen.shape)
    poisson_points = (mean > 0) & (inverse_k <= 0)
    chance[poisson_points] = poisson.cdf(seen[poisson_points], mean[poisson_points])
    nb_points = (mean > 0) & (inverse_k > 0)
    k = 1.0 / inverse_k[nb_points]
    chance[nb_points] = nbinom.cdf(seen[nb_points], k, k / (k + mean[nb_points]))
    return chance


def quiet_stretches(events: np.ndarray, min_points: int) -> list[tuple[int, int]]:
    """The stretches [start, end) of a window a series that stopped reporting would leave
    quiet: every suffix (it stopped and stays stopped), and every maximal run of zero points (it
    stopped and came back), of at least `min_points` points. A test over these is as many tests
    as stretches (the caller corrects for it)."""
    n = len(events)
    stretches = [(start, n) for start in range(0, n - min_points + 1)]
    # A run to the end is already a suffix.
    return stretches + [(start, end) for start, end in zero_runs(events, min_points) if end != n]


def zero_runs(events: np.ndarray, min_points: int) -> list[tuple[int, int]]:
    """The maximal runs [start, end) of points that read exactly 0, of at least `min_points`."""
    zero = np.concatenate(([False], np.asarray(events) == 0, [False]))
    edges = np.flatnonzero(np.diff(zero.astype(int)))
    return [(int(start), int(end)) for start, end in zip(edges[::2], edges[1::2]) if end - start >= min_points]


def time_of_day_inverse_k(expected: np.ndarray, scale: np.ndarray) -> float:
    """1/k of counts whose points spread `scale` (a seasonal model's noise at their hour: Var =
    scale^2) around `expected` (a moment estimate over the points, as window_inverse_k's): the
    dispersion the history shows at these times of day, where a learned per-minute 1/k of the
    busy hours may not reach (rare night bursts). 0 where the points vary no more than Poisson."""
    expected, scale = np.asarray(expected, dtype=float), np.asarray(scale, dtype=float)
    ok = np.isfinite(expected) & np.isfinite(scale) & (expected > 0)
    with np.errstate(all="ignore"):
        squares = float(np.sum(np.square(expected[ok])))
        if not (squares > 0 and np.isfinite(squares)):
            return 0.0
        estimate = float(np.sum(np.square(scale[ok]) - expected[ok])) / squares
    return max(0.0, estimate) if np.isfinite(estimate) else 0.0


def time_of_day_profile(timestamps: np.ndarray, events: np.ndarray, step: int, quantile: float,
                        min_days: int) -> np.ndarray:
    """A count's events per point by time of day, robust to the days that were not ordinary: for
    each of BUCKETS_PER_DAY slots of the day, the mean count per point over that slot on each day
    of the history that reported at least half of it, and across those days their `quantile`
    (the lower one of two: an order statistic, never an average of days). A low quantile is
    untouched by incidents (days that had more) and by as many quiet days as it leaves below
    it. NaN (no claim) for a slot fewer than `min_days` days reported: not 0, which would read
    as a claim that none are expected and hide a dead source behind a short history."""
    t = np.asarray(timestamps, dtype=np.int64)
    x = np.asarray(events, dtype=float)
    known = np.isfinite(x)
    t, x = t[known], x[known]
    profile = np.full(BUCKETS_PER_DAY, np.nan)
    if len(t) == 0:
        return profile
    slot_seconds = DAY // BUCKETS_PER_DAY
    day = t // DAY - t[0] // DAY
    cell = day * BUCKETS_PER_DAY + (t % DAY) // slot_seconds
    cells = (int(day[-1]) + 1) * BUCKETS_PER_DAY
    sums = np.bincount(cell, weights=x, minlength=cells).reshape(-1, BUCKETS_PER_DAY)
    points = np.bincount(cell, minlength=cells).reshape(-1, BUCKETS_PER_DAY)
    reported = points >= 0.5 * slot_seconds / max(step, 1)
    with np.errstate(all="ignore"):
        means = np.where(reported, sums / np.maximum(points, 1), np.nan)
    enough = reported.sum(axis=0) >= min_days
    if enough.any():
        profile[enough] = np.nanquantile(means[:, enough], quantile, axis=0, method="lower")
    return profile


def profile_at(profile: np.ndarray, timestamps: np.ndarray, spread: int = 0) -> np.ndarray:
    """A time_of_day_profile's value at each moment (NaN where it makes no claim): its lowest
    over the slots within `spread` seconds either side (the day wraps), where any claims. Slots
    are of UTC time; a day that lives by a local clock shifts them an hour at a DST change."""
    values = np.asarray(profile, dtype=float)
    reach = int(spread) * len(values) // DAY
    if reach > 0:
        shifted = np.stack([np.roll(values, k) for k in range(-reach, reach + 1)])
        with np.errstate(all="ignore"):
            claims = np.isfinite(shifted).any(axis=0)
            values = np.where(claims, np.nanmin(np.where(np.isfinite(shifted), shifted, np.inf), axis=0), np.nan)
    slot = (np.asarray(timestamps, dtype=np.int64) % DAY) * len(values) // DAY
    return values[slot]
