"""Upper quantiles of two samples compared without a model of their distribution.

A slow tail (one request in seven three times slower) moves a mean little and a median not at
all; what it moves is the upper quantiles. The test here counts how many of one sample's points
lie above the other sample's own upper quantile, and asks how often two samples from one
distribution would put that many there: the exceedance statistic of Gumbel and von Schelling
(1950), exact for any continuous distribution and for any sample sizes, so the uncertainty of a
quantile read off a short window is part of the answer, not assumed away.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def exceedance_tail(exceeding: int, points: int, reference_points: int, rank: int) -> float:
    """P(K >= exceeding) where K is how many of `points` draws exceed the `rank`-th largest of
    `reference_points` draws of the same continuous distribution (all independent):

        P(K = j) = C(j + rank - 1, j) C(points - j + reference_points - rank, points - j)
                   / C(points + reference_points, points).

    With ties, or a sample stochastically below the reference, exceedances are no likelier, so
    the same tail is a conservative p-value."""
    if not 1 <= rank <= reference_points or points < 0:
        raise ValueError(f"rank {rank} must be within 1..{reference_points} and points >= 0")
    if exceeding <= 0:
        return 1.0
    if exceeding > points:
        return 0.0
    total = math.comb(points + reference_points, points)
    tail = sum(math.comb(j + rank - 1, j) * math.comb(points - j + reference_points - rank, points - j)
               for j in range(exceeding, points + 1))
    return tail / total  # exact integers: a ratio of two big ints is exact to float precision


@dataclass(frozen=True)
class QuantileExceedance:
    """How a sample's upper tail stands against a reference sample's upper quantile."""

    quantile: float  # the level compared (0.9: the reference's 90th percentile)
    threshold: float  # the reference's quantile, widened by the tolerance: what counts as above
    exceeding: int  # points of the sample above the threshold
    expected: float  # how many would be, were the sample's quantile the reference's
    points: int
    p_value: float  # chance of `exceeding` or more from one distribution (exceedance_tail)


def upper_quantile_exceedance(sample: np.ndarray, reference: np.ndarray, quantile: float,
                              tolerance: float = 0.0) -> QuantileExceedance:
    """Whether `sample`'s `quantile` lies above `reference`'s by more than `tolerance` (relative):
    the reference's order statistic at that level (the `rank`-th largest, rank = ceil((1 -
    quantile) m), never a quantile between points, so the exact null holds) is widened by the
    tolerance, and the sample's points above it are counted. A sample whose quantile is within
    the tolerance of the reference's puts at most the share 1 - quantile above it."""
    sample = np.asarray(sample, dtype=float)
    reference = np.asarray(reference, dtype=float)
    if not 0 < quantile < 1:
        raise ValueError(f"quantile {quantile} must be within (0, 1)")
    if len(reference) == 0 or not np.all(np.isfinite(reference)) or not np.all(np.isfinite(sample)):
        raise ValueError("both samples must be non-empty and finite")
    m = len(reference)
    rank = max(1, math.ceil((1 - quantile) * m - 1e-9))
    order = float(np.sort(reference)[m - rank])
    threshold = order + tolerance * abs(order)
    exceeding = int(np.sum(sample > threshold))
    return QuantileExceedance(quantile, threshold, exceeding, len(sample) * rank / (m + 1), len(sample),
                              exceedance_tail(exceeding, len(sample), m, rank))


def look_sizes(first: int, last: int, growth: float = 1.5) -> list[int]:
    """Window sizes at which a test is looked at: `first`, then growing by `growth` up to `last`
    (included). A fixed, sparse schedule, so that a Bonferroni split over it stays cheap (7 looks
    from 10 to 120 points) while an early tail is still caught early."""
    if first < 1 or last < first or growth <= 1:
        return [last] if last >= 1 else []
    sizes, size = [], float(first)
    while round(size) < last:
        if not sizes or round(size) > sizes[-1]:
            sizes.append(int(round(size)))
        size *= growth
    sizes.append(last)
    return sizes
