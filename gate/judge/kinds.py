"""What a kind of metric supplies to the judge (`MetricKind`): the judge finds a metric's through
the one registry of kinds (`gate.kinds.judge_of`: its kind's `judged_by` names an object of these
methods).

A new kind is a module of the judge with an object of these methods (`gate/judge/gauge.py` and
`gate/judge/count.py` are the two there are) and its entry in `gate.kinds.KINDS`; nothing else in
the judge asks what kind a metric is."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np

    from gate import guardrails
    from gate.judge.budget import Setting
    from gate.judge.comparison import Comparison
    from gate.judge.preprocess import Paired
    from gate.judge.reference import MetricReference, Reference
    from gate.policy import Metric
    from gate.rules import StatisticRules
    from gate.series import Frame
    from gate.verdict import MetricResult


class MetricKind(Protocol):
    rules: StatisticRules  # the rules its mean (a gauge) or its rate (a count) is decided by
    trend_at_end: bool  # at the end of the lifetime a trend putting its latest points beyond fails (a leak)
    lowest_effect: float  # the lowest effect an interval shows (a rate is never below zero: -1)

    def learn(self, m: Metric, frame: Frame, x: np.ndarray, deployed_at: int, seasonal: bool) -> MetricReference:
        """Its reference from the history (`x`, its values in `frame`); a seasonal model only if `seasonal`."""

    def compare(self, m: Metric, paired: Paired, ref: MetricReference | None, setting: Setting,
                expected: float | None) -> Comparison:
        """Canary beside baseline on the paired points: what `classify` decides on."""

    def fails_besides(self, m: Metric, paired: Paired, ref: MetricReference | None, setting: Setting,
                      comparison: Comparison) -> MetricResult | None:
        """A fail its own rules find when the comparison's decision did not fail (a tail, a gross fault)."""

    def clean_against_history(self, m: Metric, ref: MetricReference, canary: Frame) -> str | None:
        """History-only: why its canary series looks missing (implausibly few events), or None."""

    def reads_zero_against_history(self, m: Metric, reference: Reference, canary: Frame, t: np.ndarray,
                                   x: np.ndarray) -> str | None:
        """History-only: why its canary series looks filled with zeros, or None."""

    def value(self, x: np.ndarray, volume: np.ndarray | None) -> float | None:
        """A group's value over its points, as a limit is written (a mean, a ratio, a rate)."""

    def limit_terms(self, m: Metric, ref: MetricReference | None, x: np.ndarray, volume: np.ndarray,
                    limit: guardrails.Limit, scale: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, float]:
        """(excess over the limit per point, its variance at the limit, the prior's weight) for the
        limit's test; `scale` is the seasonal noise at these moments in history-only mode, or None."""

