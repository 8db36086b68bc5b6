"""The data every source returns and the judge reads: metrics of a group on a regular time grid."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Frame:
    """The metrics of one group on a regular grid of `step` seconds.

    `timestamps` are epoch seconds, ascending, `step` apart; every array in `values` has the same
    length, NaN where the point is missing (a missing point is not a zero: a count of zero events
    is 0.0). A metric the source could not query at all is absent from `values`.
    """

    step: int
    timestamps: np.ndarray
    values: dict[str, np.ndarray] = field(default_factory=dict)

    @staticmethod
    def empty(step: int, names: list[str] | tuple[str, ...] = ()) -> Frame:
        return Frame(step, np.empty(0, dtype=np.int64), {n: np.empty(0) for n in names})

    @staticmethod
    def on_grid(
        step: int, start: int, end: int, points: dict[str, dict[int, float]], origin: int = 0
    ) -> Frame:
        """Lay scattered points (metric -> {timestamp: value}) on the grid start..end inclusive.

        The grid is the timestamps `origin + k * step`: epoch multiples of the step by default
        (what Datadog and CloudWatch return), or anchored on a recorded series' first point."""
        first = start + (origin - start) % step
        timestamps = np.arange(first, end + 1, step, dtype=np.int64)
        values = {}
        for name, by_time in points.items():
            column = np.full(len(timestamps), np.nan)
            for t, v in by_time.items():
                i = (t - first) // step
                if 0 <= i < len(timestamps) and first + i * step == t:
                    column[i] = v
            values[name] = column
        return Frame(step, timestamps, values)

    def __len__(self) -> int:
        return len(self.timestamps)

    def between(self, start: int, end: int) -> Frame:
        """Rows with start <= timestamp <= end."""
        lo, hi = np.searchsorted(self.timestamps, [start, end + 1])
        return Frame(
            self.step,
            self.timestamps[lo:hi],
            {k: v[lo:hi] for k, v in self.values.items()},
        )

    def reporting(self, name: str) -> np.ndarray:
        """Mask of the points where `name` was reported."""
        column = self.values.get(name)
        if column is None:
            return np.zeros(len(self), dtype=bool)
        return ~np.isnan(column)


@dataclass(frozen=True)
class Observations:
    """What the gate sees of one release: the canary and (optionally) the baseline group."""

    canary: Frame
    baseline: Frame | None = None
