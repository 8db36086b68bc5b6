"""Series that look like data and are not: a canary series filled with zeros (a dead agent, a
stopped series), against its baseline or its seasonal expectation."""

from __future__ import annotations

import numpy as np

from gate.stats.seasonal import SeasonalModel

ZERO_FAR_SCALES = 2.0  # history-only: 0 is "far" from an expectation this many noise scales above it
# A gauge's canary reading 0 on at least this many latest points (this share of a stretch) while
# its baseline reads above 0 is a series filled with zeros, not a canary (see _reads_zero).
ZERO_RUN_MIN = 5
ZERO_RUN_DENSITY = 0.5
# ... or scattered over a gauge's window (`anywhere`): ZERO_RUN_MIN zeros or more, where the
# reference reads above 0 on all but this share of the points (a scrape failing one minute in
# three, filled with 0, pulled a 1.3x CPU to -17%; one in eleven, a 1.15x to +3%: no share of the
# window makes 5 zeros a reading).
ZERO_SCATTER_SHARE = 0.1
COLLAPSED_SHARE = 0.01  # "0" is at most 1% of the reference (0.001, a sentinel -1; real canaries: at most 2 such points)


def _reads_zero(name: str, canary: np.ndarray, reference: np.ndarray, whose: str, anywhere: bool = False) -> str | None:
    """A canary series that reads 0, or next to it (at most COLLAPSED_SHARE of its reference: 0.001,
    a sentinel -1), on its latest points (ZERO_RUN_MIN of them or more, and at least
    ZERO_RUN_DENSITY of a stretch up to the latest point: real values that got through must not
    hide the rest) while its reference (the baseline's values, or in history-only mode
    its seasonal expectation) is above 0 at those moments: a query that fills a dead agent's or a
    stopped series' minutes with zeros (CPU, memory or latency 0 is no serving host's; requests
    0 is no serving canary). "Far below" would pass it within any tolerance. Real canary windows of
    dev, replicas and the noisy family never read 0 twice in a row; a real baseline's CPU history
    reads 0 for up to 5 minutes, hence the length."""
    zero = (canary <= COLLAPSED_SHARE * reference) & (reference > 0)
    counts = np.cumsum(zero[::-1])  # zeros among the last 1, 2, ... points
    lengths = np.arange(1, len(canary) + 1)
    stretch = np.flatnonzero((counts >= ZERO_RUN_MIN) & (counts >= ZERO_RUN_DENSITY * lengths))
    if len(stretch) == 0:
        return _reads_zero_earlier(name, zero, reference, whose) if anywhere else None
    last = int(lengths[stretch[-1]])
    zeros, seen = int(counts[stretch[-1]]), reference[-last:][zero[-last:]]
    return (f"the canary's {name} reads 0 or next to it at {zeros} of its last {last} points (of {len(canary)}) while "
            f"{whose} is {np.min(seen):.4g} to {np.max(seen):.4g} there: is its {name} series filled "
            f"with zeros (a dead agent, a stopped series, a canary serving nothing)?")


def _far_above_zero(seasonal: SeasonalModel, t: np.ndarray) -> np.ndarray:
    """The seasonal expectation where 0 would be an excursion (more than EXCURSION_SCALES noise
    scales below it), else 0: a KPI that is mostly 0 in its history (expected 0.003, Kontrast's)
    reads 0 for a whole window by its nature."""
    expected = seasonal.expected(t)
    return np.where(expected > ZERO_FAR_SCALES * seasonal.scale(t), expected, 0.0)


def _reads_zero_earlier(name: str, zero: np.ndarray, reference: np.ndarray, whose: str) -> str | None:
    """A zero-filled stretch before the latest points (`anywhere`: a gauge's window): ZERO_RUN_MIN
    or more zeros within 2x that many points, anywhere (the same density as at the end). A canary
    whose agent filled its first 29 of 60 minutes with zeros averaged them with a CPU 1.3x its
    baseline into "-21%, not shown worse" (a pass): its zeros are no reading of the canary, and
    what they hide cannot be told."""
    width = min(len(zero), round(ZERO_RUN_MIN / ZERO_RUN_DENSITY))
    if width == 0:
        return None
    counts = np.convolve(zero.astype(int), np.ones(width, dtype=int), mode="valid")  # zeros per stretch
    dense = np.flatnonzero((counts >= ZERO_RUN_MIN) & (counts >= ZERO_RUN_DENSITY * width))
    if len(dense) == 0:
        # Scattered: no stretch dense enough, but ZERO_RUN_MIN zeros all the same (review), of a
        # metric whose reference is above 0 nearly throughout (a mostly-zero KPI reads 0 by its
        # nature: Kayenta's CLES suite has one).
        zeros = int(zero.sum())
        if zeros >= ZERO_RUN_MIN and np.mean(reference > 0) >= 1 - ZERO_SCATTER_SHARE:
            seen = reference[zero]
            return (f"the canary's {name} reads 0 or next to it at {zeros} of its {len(zero)} points, scattered, "
                    f"while {whose} is {np.min(seen):.4g} to {np.max(seen):.4g} there: are its {name} readings "
                    f"failing and filled with zeros? A mean over them is no reading of the canary")
        return None
    at = np.flatnonzero(zero)
    first, last = int(at[at >= dense[0]][0]), int(at[at <= dense[-1] + width - 1][-1])  # the stretch's own zeros
    zeros, seen = int(zero[first:last + 1].sum()), reference[first:last + 1][zero[first:last + 1]]
    return (f"the canary's {name} reads 0 or next to it at {zeros} of its points {first + 1} to {last + 1} (of "
            f"{len(zero)}) while {whose} is {np.min(seen):.4g} to {np.max(seen):.4g} there: is its {name} series "
            f"filled with zeros over a stretch (a dead agent, an agent started late)? A mean over them is no "
            f"reading of the canary")
