"""Series that look like data and are not: a canary series filled with zeros (a dead agent, a
stopped series), against its baseline or its seasonal expectation."""

from __future__ import annotations

import math

import numpy as np

from gate.stats.quantiles import relative_difference
from gate.stats.seasonal import SeasonalModel, robust_sd

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
# A gauge point is no reading (_unread_points) where it lies below NEAR_ZERO_SHARE of its
# reference AND more than UNREAD_SCALES noise scales below it. Both, because each alone is wrong:
# a share alone ignores the noise (a gauge whose points scatter by half its level reaches a tenth
# of it as a reading now and then; CPU 0.5% reads 0 and 1 by its quantum), and scales alone
# ignore the level (a gauge quiet to 1% would read a real 0.9x as "far below"). UNREAD_SCALES is
# the fleet-anomaly screen's "off", a drop a normal noise makes once in 3.5 million points, so a
# real canary's low minute is never taken out (taken out, a low point's absence would bias an
# "increase" gauge towards failing); NEAR_ZERO_SHARE is an order of magnitude below the level, which
# no tolerance comes near: a point there reads as a fill (0.02x its baseline), not a regression's
# opposite. Beside a baseline, with a paired relative spread above (1 - NEAR_ZERO_SHARE) /
# UNREAD_SCALES = 0.18 (_paired_scale: the history's or the window's own, the larger) a point is
# never taken out: such a gauge's zeros are only the screens' business (_reads_zero).
# History-only, the scale is the seasonal model's at that moment.
NEAR_ZERO_SHARE = 0.1
UNREAD_SCALES = 5.0
# ... or, whatever the noise, where the reference's own series rarely falls there: at most this
# share of its points (history, and the window's baseline, each where known) lie below
# NEAR_ZERO_SHARE of their local level (the median of DIP_NEIGHBOURS points around them). A noisy
# latency (a paired spread of 0.2-0.5) is never 5 scales above 0.02x of itself, so its fills
# (0.02x every 3rd step) counted in the mean and passed a +44% shift; a gauge whose baseline
# itself dips there (both groups dip) keeps its dips as readings.
DIP_RARE = 0.005
DIP_NEIGHBOURS = 11


def _dip_share(x: np.ndarray) -> float | None:
    """The share of a series' known points below NEAR_ZERO_SHARE of their local level (the median
    of the DIP_NEIGHBOURS known points centred on them), among those whose level is above 0; None
    with fewer than DIP_NEIGHBOURS known points."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) < DIP_NEIGHBOURS:
        return None
    half = DIP_NEIGHBOURS // 2
    padded = np.pad(x, half, mode="reflect")  # an end point is not its own neighbours
    level = np.median(np.lib.stride_tricks.sliding_window_view(padded, DIP_NEIGHBOURS), axis=1)
    above = level > 0
    if not above.any():
        return None
    return float(np.mean(x[above] < NEAR_ZERO_SHARE * level[above]))


def _rarely_dips(*shares: float | None) -> bool:
    """Whether a reference series rarely falls below NEAR_ZERO_SHARE of its level: every known
    `shares` (_dip_share: of its history, of its window) at most DIP_RARE, and at least one known."""
    known = [s for s in shares if s is not None]
    return bool(known) and all(s <= DIP_RARE for s in known)


def _unread_points(canary: np.ndarray, reference: np.ndarray, scale: np.ndarray,
                   rarely_dips: bool = False) -> np.ndarray:
    """The points of a gauge's canary that are no reading (a scrape failing, filled with 0 or next
    to it): 0, or below NEAR_ZERO_SHARE of their reference (the paired baseline point, or the
    seasonal expectation), where the reference is more than UNREAD_SCALES noise scales (`scale`,
    per point) above them. A mean over such points is no reading of the canary: 4 zeros in 60
    minutes pulled a 1.15x CPU to +3% (a pass). A reference near 0 (an idle service's CPU 0.5%, a
    latency of no requests) is never far above its own noise: nothing is taken out there.
    `rarely_dips` (_rarely_dips: the reference's own series almost never falls below
    NEAR_ZERO_SHARE of its level): every point below that share is no reading, whatever the noise."""
    canary, reference = np.asarray(canary, dtype=float), np.asarray(reference, dtype=float)
    with np.errstate(invalid="ignore"):
        far = reference - canary > UNREAD_SCALES * np.asarray(scale, dtype=float)
        return (reference > 0) & (canary <= NEAR_ZERO_SHARE * reference) & (far | rarely_dips)


def _paired_scale(canary: np.ndarray, baseline: np.ndarray, relative_noise: float | None) -> np.ndarray:
    """One paired point's noise scale (the difference of two hosts at the baseline's level), the
    larger of two relative spreads times the baseline: the history's relative noise (one host's,
    minute to minute) times sqrt 2, and the window's own (the spread of the canary's relative
    differences from its baseline, by MAD: robust to the few points asked about). The window's
    is the pair's real heterogeneity, which one host's history does not show: two different real
    series side by side (the noisy family: a paired SD of 40-70% of the level) dip to 0 as
    readings, and taken out those dips pushed 20 clean canaries past their tolerance. The window's
    spread leaves out the points asked about (below NEAR_ZERO_SHARE of their baseline): at a
    relative difference of -2 each, 20 fills in 60 points pushed it past the cut-off, and a
    1.2x CPU filled 0.02x every 3rd minute passed at -21%. NaN where nothing tells."""
    canary, baseline = np.asarray(canary, dtype=float), np.asarray(baseline, dtype=float)
    both = np.isfinite(canary) & np.isfinite(baseline)
    with np.errstate(invalid="ignore"):
        both &= ~((baseline > 0) & (canary <= NEAR_ZERO_SHARE * baseline))
    spreads = [robust_sd(relative_difference(canary[both], baseline[both])) if both.sum() >= 3 else float("nan")]
    if relative_noise is not None and np.isfinite(relative_noise) and relative_noise > 0:
        spreads.append(relative_noise * math.sqrt(2))
    spreads = [x for x in spreads if np.isfinite(x)]
    return (max(spreads) if spreads else float("nan")) * np.abs(baseline)


def _reads_zero(name: str, canary: np.ndarray, reference: np.ndarray, whose: str, anywhere: bool = False,
                unread: np.ndarray | None = None) -> str | None:
    """A canary series that reads 0, or next to it (at most COLLAPSED_SHARE of its reference: 0.001,
    a sentinel -1), on its latest points (ZERO_RUN_MIN of them or more, and at least
    ZERO_RUN_DENSITY of a stretch up to the latest point: real values that got through must not
    hide the rest) while its reference (the baseline's values, or in history-only mode
    its seasonal expectation) is above 0 at those moments: a query that fills a dead agent's or a
    stopped series' minutes with zeros (CPU, memory or latency 0 is no serving host's; requests
    0 is no serving canary). "Far below" would pass it within any tolerance. Real canary windows of
    dev, replicas and the noisy family never read 0 twice in a row; a real baseline's CPU history
    reads 0 for up to 5 minutes, hence the length. `unread`: points also read as zeros (a gauge's
    implausible near-zero fills, _unread_points)."""
    zero = (canary <= COLLAPSED_SHARE * reference) & (reference > 0)
    if unread is not None:
        zero |= unread
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
