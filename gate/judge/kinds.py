"""What a kind of metric supplies to the judge (`MetricKind`): the judge finds a metric's through
the one registry of kinds (`gate.kinds.judge_of`: its kind's `judged_by` names a `MetricKind`).

A new kind is a module of the judge ending in its `MetricKind` (`gate/judge/gauge.py` and
`gate/judge/count.py` are the two there are) and its entry in `gate.kinds.KINDS`; nothing else in
the judge asks what kind a metric is."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

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


@dataclass(frozen=True)
class MetricKind:
    """A kind's part of the judge, each a function of its module."""

    rules: StatisticRules  # the rules its mean (a gauge) or its rate (a count) is decided by
    trend_at_end: bool  # at the end of the lifetime a trend putting its latest points beyond fails (a leak)
    lowest_effect: float  # the lowest effect an interval shows (a rate is never below zero: -1)
    # (m, frame, x, deployed_at, seasonal) -> its reference from the history (`x`, its values in
    # `frame`); a seasonal model only if `seasonal`.
    learn: Callable[[Metric, Frame, np.ndarray, int, bool], MetricReference]
    # (m, ref, volume_ref, canary, baseline, canary_volume, baseline_volume) -> the paired moments
    # holding a glitch point, left out of the comparison, and the series holding them ("canary requests").
    window_glitches: Callable[[Metric, MetricReference | None, MetricReference | None, np.ndarray, np.ndarray,
                               np.ndarray | None, np.ndarray | None], tuple[np.ndarray, tuple[str, ...]]]
    # (m, paired, ref, setting, expected) -> canary beside baseline on the paired points: what
    # `classify` decides on.
    compare: Callable[[Metric, Paired, MetricReference | None, Setting, float | None], Comparison]
    # (m, paired, ref, setting, comparison) -> a fail its own rules find where the comparison's
    # decision did not fail (a gauge's tail, a count's gross fault), or None.
    fails_besides: Callable[[Metric, Paired, MetricReference | None, Setting, Comparison], MetricResult | None]
    # History-only, (m, ref, canary) -> why its canary series looks missing (implausibly few events), or None.
    clean_against_history: Callable[[Metric, MetricReference, Frame], str | None]
    # History-only, (m, reference, canary, t, x) -> why its canary series looks filled with zeros, or None.
    reads_zero_against_history: Callable[[Metric, Reference, Frame, np.ndarray, np.ndarray], str | None]
    # (x, volume) -> a group's value over its points, as a limit is written (a mean, a ratio, a rate).
    value: Callable[[np.ndarray, np.ndarray | None], float | None]
    # (m, ref, x, volume, limit, scale) -> (excess over the limit per point, its variance at the
    # limit, the prior's weight) for the limit's test; `scale`: the seasonal noise at these moments
    # in history-only mode, or None.
    limit_terms: Callable[[Metric, MetricReference | None, np.ndarray, np.ndarray, guardrails.Limit,
                           np.ndarray | None], tuple[np.ndarray, np.ndarray, float]]
