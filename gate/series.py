"""The data every source returns and the judge reads: metrics of a group on a regular time grid."""

from __future__ import annotations

from collections.abc import Collection
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

    def fill_zero_counts(self, denominators: dict[str, str], reported: set[str]) -> Frame:
        """A count with a denominator (`denominators`: count -> its denominator) is 0 where this
        group reported the denominator but not the count: CloudWatch publishes no datapoint for a
        minute without 5xx, Datadog answers null for a sparse counter. Only for a count in
        `reported` (it has a point somewhere, in either group, in this fetch or an earlier one): a
        query that never answers (a misspelt metric) is no data, not zero errors. Fills in place."""
        for name, denominator in denominators.items():
            if name in reported and name in self.values and denominator in self.values:
                column = self.values[name]
                column[np.isnan(column) & ~np.isnan(self.values[denominator])] = 0.0
        return self

    @staticmethod
    def on_grid(
        step: int, start: int, end: int, points: dict[str, dict[int, float]], *,
        summed: Collection[str], origin: int = 0,
    ) -> Frame:
        """Lay scattered points (metric -> {timestamp: value}) on the grid start..end inclusive.

        The grid is the timestamps `origin + k * step`: epoch multiples of the step by default
        (what Datadog and CloudWatch return), or anchored on a recorded series' first point.
        `summed` names the metrics whose points are events (counts, `Metric.summed`): the caller
        knows the policy, the grid does not, so it is asked every time."""
        first = start + (origin - start) % step
        timestamps = np.arange(first, end + 1, step, dtype=np.int64)

        def bucket(t) -> int:
            return (int(t) - first) // step

        # The moments anything reported at, per bucket: a count with points at fewer of them is
        # partial there (one half-minute of its events unknown), and a partial sum would be a
        # made-up lower count (review: it passed a doubled error rate); it is missing instead.
        moments = np.zeros(len(timestamps))
        for t in {t for by_time in points.values() for t, v in by_time.items() if np.isfinite(v)}:
            if 0 <= bucket(t) < len(timestamps):
                moments[bucket(t)] += 1
        values = {}
        for name, by_time in points.items():
            # A point off the grid (a host clock a few seconds off) belongs to the bucket it falls
            # in. Several points in one bucket: a count's add up (two half-minute counts are the
            # minute's events; their mean would halve them), a level's are averaged. NaN points
            # are missing points.
            total, count = np.zeros(len(timestamps)), np.zeros(len(timestamps))
            for t, v in by_time.items():
                i = bucket(t)
                if 0 <= i < len(timestamps) and np.isfinite(v):
                    total[i] += v
                    count[i] += 1
            with np.errstate(invalid="ignore"):
                if name in summed:
                    values[name] = np.where((count > 0) & (count == moments), total, np.nan)
                else:
                    values[name] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
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

    def neighbouring_pairs(self, name: str) -> int:
        """How many pairs of reported points of `name` lie one step apart."""
        reported = self.reporting(name)
        return int(np.sum(reported[:-1] & reported[1:] & (np.diff(self.timestamps) == self.step)))


# A target the load balancer sends no request: stopped or terminated ("unused",
# Target.InvalidState), deregistered ("draining"). Not "unhealthy": when every target of a group
# is unhealthy the ALB fails open and routes to them all; not "unavailable": a Lambda target
# group's health checks are off (Target.HealthCheckDisabled) and it serves.
OUT_OF_SERVICE_STATES = frozenset({"unused", "draining"})


class TargetHealthUnread(Exception):
    """The load balancer was asked for the canary's targets and did not answer (a role without
    elasticloadbalancing:DescribeTargetHealth, a failed call): the message says why. Not a reason
    to stop judging (the health is extra evidence), but the verdict says it was not read."""


@dataclass(frozen=True)
class TargetHealth:
    """The canary target group's targets as its load balancer saw them at one moment (elbv2
    describe_target_health): (state, reason) per registered target. Read at a look, never
    recorded in a series: a replay has none."""

    group: str
    at: int
    targets: tuple[tuple[str, str], ...]

    @property
    def serving(self) -> bool:
        """Some target may take traffic (OUT_OF_SERVICE_STATES). A target in a zone the load
        balancer does not use (Target.NotInUse: a configuration matter, not the canary's health)
        counts as serving: it says nothing about the canary."""
        return any(state not in OUT_OF_SERVICE_STATES or reason == "Target.NotInUse" for state, reason in self.targets)

    def describe(self) -> str:
        if not self.targets:
            return f"target group {self.group} has no registered target"
        states = sorted({f"{state} ({reason})" if reason else state for state, reason in self.targets})
        return f"none of the {len(self.targets)} target(s) of {self.group} takes traffic: {', '.join(states)}"


@dataclass(frozen=True)
class Observations:
    """What the gate sees of one release: the canary and (optionally) the baseline group, and
    at a rollout's look the canary target group's health (None: not known)."""

    canary: Frame
    baseline: Frame | None = None
    canary_targets: TargetHealth | None = None

    def cleaned(self, counts: set[str] | frozenset[str] = frozenset()) -> Observations:
        """The points a judge can trust: an infinite value is missing, and so is a negative
        count (a counter that reset, or a delta across a restart: not "fewer than zero events")."""

        def clean(frame: Frame | None) -> Frame | None:
            if frame is None:
                return None
            values = {}
            for name, column in frame.values.items():
                column = np.asarray(column, dtype=float)
                bad = ~np.isfinite(column) | ((column < 0) if name in counts else False)
                values[name] = np.where(bad, np.nan, column) if bad.any() else column
            return Frame(frame.step, frame.timestamps, values)

        return Observations(canary=clean(self.canary), baseline=clean(self.baseline),
                            canary_targets=self.canary_targets)
