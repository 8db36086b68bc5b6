"""Seasonal baseline: what a KPI is expected to be at any moment, and how noisy it is then.

Learned once per release from the history before the deploy. Robust STL (statsmodels) on the
history aggregated to ~15-minute buckets gives trend + daily shape fast (default STL on 1-minute
data is ~100x slower) and `robust=True` keeps past incidents out of the expectation; a weekly
profile is added when two weeks or more are known. A gauge's glitch points (a sensor writing
1e6) are clipped to their bucket's reach first: robust STL copes with an incident, not with a
seventh of its buckets spoiled. The noise scale is a robust spread of the
1-minute residuals per hour of day, so a quiet night and a busy noon are judged on their own
noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DAY = 86400
WEEK = 7 * DAY
BUCKETS_PER_DAY = 96  # 15-minute buckets: enough to draw a daily shape, cheap for STL
MIN_DAYS = 2.0  # below this there is no season to learn: level and spread only
WEEKLY_DAYS = 14.0  # from this on a weekly profile is learned too
MAD_TO_SD = 1.4826
MEAN_AD_TO_SD = 1.2533
# A history point farther than this many robust spreads from its 15-minute bucket's median is a
# glitch (a sensor writing 1e6, a counter reset) or an incident, not the service's usual: clipped
# there before the bucket means are taken. 1% of glitch points spoil one bucket in seven, more
# than robust STL can down-weight, and the model then learned (expecting -200 of a KPI near 2,
# with noise scales in the thousands) passed a tripled window. Clipping keeps the bucket means
# (not medians, which bias a skewed count's expectation low) of everything within reach.
GLITCH_SPREADS = 10.0
# The central 95% of a normal sample spans 3.92 standard deviations.
CENTRAL_95_TO_SD = 3.92


def robust_sd(x: np.ndarray) -> float:
    """Standard deviation from the median absolute deviation (ignores NaN). Quantized data
    (CPU in whole percents, counts) often has a MAD of 0: then the mean absolute deviation."""
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return float("nan")
    deviation = np.abs(x - np.median(x))
    mad = float(np.median(deviation))
    if mad > 0:
        return MAD_TO_SD * mad
    return float(MEAN_AD_TO_SD * np.mean(deviation))


@dataclass(frozen=True)
class SeasonalModel:
    level: float  # trend at the end of the history
    daily: np.ndarray | None  # BUCKETS_PER_DAY offsets by time of day (None: no season)
    weekly: np.ndarray | None  # 7 x BUCKETS_PER_DAY extra offsets by time of week
    hourly_scale: np.ndarray  # 24 noise scales (robust sd of residuals) by hour of day
    points: int  # finite history points it was learned from

    @property
    def informative(self) -> bool:
        """False for a flat history (a constant series): its noise scale says nothing."""
        return bool(np.max(self.hourly_scale) > 1e-6 * max(abs(self.level), 1e-9))

    def expected(self, timestamps: np.ndarray) -> np.ndarray:
        t = np.asarray(timestamps, dtype=np.int64)
        value = np.full(len(t), self.level, dtype=float)
        slot = (t % DAY) * BUCKETS_PER_DAY // DAY
        if self.daily is not None:
            value += self.daily[slot]
        if self.weekly is not None:
            day_of_week = (t // DAY) % 7
            value += self.weekly[day_of_week, slot]
        return value

    def scale(self, timestamps: np.ndarray) -> np.ndarray:
        hour = (np.asarray(timestamps, dtype=np.int64) % DAY) // 3600
        return self.hourly_scale[hour]


def same_kind_from(seconds: float) -> float:
    """The shortest history (seconds) whose model is of the same kind as one learned from
    `seconds` of it: level and spread only below MIN_DAYS, a daily shape from MIN_DAYS on, a
    weekly profile too from WEEKLY_DAYS on."""
    days = seconds / DAY
    return next((d * DAY for d in (WEEKLY_DAYS, MIN_DAYS) if days >= d), 0.0)


def fit_seasonal(
    timestamps: np.ndarray, values: np.ndarray, step: int, *, clip_glitches: bool = True,
) -> SeasonalModel | None:
    """Learn the model from history; None when there are too few points to say anything.
    `clip_glitches=False` keeps every point whole: a count's bursts of hundreds of times its
    median are real (its expectation is their mean), so a count cannot be told from a glitch."""
    t = np.asarray(timestamps, dtype=np.int64)
    x = np.asarray(values, dtype=float)
    finite = np.isfinite(x)
    if finite.sum() < max(10, 3600 // max(step, 1)):
        return None
    t, x = t[finite], x[finite]
    span_days = (t[-1] - t[0] + step) / DAY
    bucket_seconds = DAY // BUCKETS_PER_DAY
    if span_days < MIN_DAYS or step > bucket_seconds:
        if clip_glitches:
            x = _clip_glitches(x, np.full(len(x), np.median(x)))
        level = float(np.median(x[-max(10, len(x) // 4):]))
        residual = x - np.median(x)
        return SeasonalModel(level, None, None, _hourly_scale(t, residual), int(finite.sum()))

    # Aggregate to buckets (the mean: robust STL below down-weights the buckets an incident spoiled),
    # fill empty buckets by interpolation.
    first = t[0] - t[0] % bucket_seconds
    index = (t - first) // bucket_seconds
    n_buckets = int(index[-1]) + 1
    if clip_glitches:
        x = _clip_glitches(x, _bucket_medians(index, x, n_buckets)[index])
    sums = np.bincount(index, weights=x, minlength=n_buckets)
    counts = np.bincount(index, minlength=n_buckets)
    bucketed = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    gaps = ~np.isfinite(bucketed)
    if gaps.all():  # every bucket's sum overflowed (values near 1e308): nothing to model
        return None
    if gaps.any():
        known = np.flatnonzero(~gaps)
        bucketed[gaps] = np.interp(np.flatnonzero(gaps), known, bucketed[known])

    from statsmodels.tsa.seasonal import STL  # here, not at import: a cached reference needs no fit

    jump = max(1, BUCKETS_PER_DAY // 10)
    result = STL(
        bucketed, period=BUCKETS_PER_DAY, robust=True,
        seasonal_jump=jump, trend_jump=jump, low_pass_jump=jump,
    ).fit()
    slot_of_bucket = ((first + np.arange(n_buckets) * bucket_seconds) % DAY) // bucket_seconds
    # The daily shape: the seasonal component of the last full days, by slot.
    recent = np.arange(n_buckets) >= n_buckets - 3 * BUCKETS_PER_DAY
    daily = _by_slot(result.seasonal[recent], slot_of_bucket[recent], BUCKETS_PER_DAY)
    level = float(np.median(result.trend[-max(1, BUCKETS_PER_DAY // 24):]))

    weekly = None
    if span_days >= WEEKLY_DAYS:
        bucket_times = first + np.arange(n_buckets) * bucket_seconds
        day_of_week = (bucket_times // DAY) % 7
        weekly = np.zeros((7, BUCKETS_PER_DAY))
        remainder = result.resid
        for d in range(7):
            mine = day_of_week == d
            weekly[d] = _by_slot(remainder[mine], slot_of_bucket[mine], BUCKETS_PER_DAY)
        weekly = _smooth_rows(weekly)

    model = SeasonalModel(level, daily, weekly, np.ones(24), int(finite.sum()))
    # In-sample fit per point: the trend where it was, plus the season.
    bucket_of_point = (t - first) // bucket_seconds
    fitted = result.trend[bucket_of_point] + model.expected(t) - model.level
    return SeasonalModel(level, daily, weekly, _hourly_scale(t, x - fitted), int(finite.sum()))


def _clip_glitches(x: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Clip each point to GLITCH_SPREADS robust spreads of its center. The spread is read from
    the central 95% of the deviations (glitches rarer than 2.5% do not move it), or their MAD
    when wider; deviations that are zero over their central 95% (a sparse error count) give
    nothing to clip against, and the rare events are kept whole."""
    deviation = x - center
    low, high = np.quantile(deviation, [0.025, 0.975])
    spread = max((high - low) / CENTRAL_95_TO_SD, MAD_TO_SD * float(np.median(np.abs(deviation))))
    if not spread > 0:
        return x
    bound = GLITCH_SPREADS * spread
    return center + np.clip(deviation, -bound, bound)


def _bucket_medians(index: np.ndarray, x: np.ndarray, n: int) -> np.ndarray:
    """The median of the points in each bucket (NaN for an empty one), by one sort."""
    order = np.lexsort((x, index))
    ordered = x[order]
    counts = np.bincount(index, minlength=n)
    starts = np.cumsum(counts) - counts
    filled = counts > 0
    medians = np.full(n, np.nan)
    lower = starts[filled] + (counts[filled] - 1) // 2
    upper = starts[filled] + counts[filled] // 2
    medians[filled] = (ordered[lower] + ordered[upper]) / 2
    return medians


def _by_slot(values: np.ndarray, slots: np.ndarray, n: int) -> np.ndarray:
    profile = np.full(n, np.nan)
    for s in range(n):
        v = values[slots == s]
        if len(v):
            profile[s] = np.median(v)
    missing = ~np.isfinite(profile)
    if missing.all():
        return np.zeros(n)
    if missing.any():
        known = np.flatnonzero(~missing)
        profile[missing] = np.interp(np.flatnonzero(missing), known, profile[known], period=n)
    return profile


def _smooth_rows(rows: np.ndarray) -> np.ndarray:
    kernel = np.ones(5) / 5
    padded = np.concatenate([rows[:, -2:], rows, rows[:, :2]], axis=1)
    return np.array([np.convolve(r, kernel, mode="valid") for r in padded])


def _hourly_scale(t: np.ndarray, residual: np.ndarray) -> np.ndarray:
    """Robust spread of the residuals per hour of day; hours with little data use the overall."""
    overall = robust_sd(residual)
    if not np.isfinite(overall) or overall <= 0:
        overall = float(np.nanstd(residual)) or 1e-9
    hour = (t % DAY) // 3600
    scale = np.full(24, overall)
    for h in range(24):
        r = residual[hour == h]
        if len(r) >= 30:
            s = robust_sd(r)
            if np.isfinite(s) and s > 0:
                scale[h] = s
    # Never trust an hour to be much quieter than the day overall: few points underestimate.
    return np.maximum(scale, 0.5 * overall)
