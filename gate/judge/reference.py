"""Preprocessing, once per deploy: what the history before the deploy says about each KPI (the
`Reference`: its seasonal model, noise priors and rates), each kind learning its own noise
(`gate.judge.kinds`), and what the seasonal model expects over a window (the report's band too)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gate.kinds import judge_of
from gate.policy import Metric, Policy
from gate.series import Observations
from gate.stats.seasonal import SeasonalModel

# A moment when both groups are this many noise scales off their seasonal expectation is a
# fleet-wide anomaly, held out of the comparison; but only for a KPI whose history shows such
# moments rarely (below FLEET_ANOMALY_RARE of its points): a sparse metric's non-zero points, or
# a spiky one's spikes, are its everyday behaviour, not anomalies.
FLEET_ANOMALY_SCALES = 5.0
FLEET_ANOMALY_RARE = 0.01
# Paired excursions: a canary point more than EXCURSION_JUMP noise scales above its baseline is
# an excursion (a slow request burst, an error burst); the history says how often one happens by
# chance, and a count beyond that fails the metric (latency tails, error bursts).
EXCURSION_JUMP = 3.5
MIN_EXCURSION_RATE = 1e-3


@dataclass(frozen=True)
class MetricReference:
    seasonal: SeasonalModel | None
    noise: float | None  # gauges: relative noise of one group per point; counts: dispersion
    excursion_rate: float | None = None  # share of history points jumping > EXCURSION_JUMP noise scales
    rate: float | None = None  # counts: events per unit of denominator in the history
    offset: float = 0.0  # how far (in noise scales) the last hour before the deploy ran off the model
    anomaly_rate: float = 0.0  # share of history points beyond FLEET_ANOMALY_SCALES of the model
    unusable: str | None = None  # why the history's seasonal model was dropped (seasonal is None)
    jump_quantile: float | None = None  # gauges: TAIL_QUANTILE of one host's relative jumps (centred)
    glitch_ceiling: float | None = None  # counts: a window point above it (in one group alone) is a glitch
    dip_share: float | None = None  # gauges: share of history points below a tenth of their level (screens._dip_share)
    # counts without a denominator: events per point by 15-minute slot of the day, a low quantile
    # across the history's days (count.DAYS_QUANTILE), for a window's expectation robust to incidents
    by_time_of_day: np.ndarray | None = None


@dataclass(frozen=True)
class Reference:
    metrics: dict[str, MetricReference] = field(default_factory=dict)
    history_points: int = 0


def learns_from(policy: Policy) -> str:
    """The group whose history `learn` reads: history-only, the canary's own; otherwise the
    baseline's (the canary group is usually new). The other group's history need not be fetched."""
    return "canary" if policy.history_only else "baseline"


def learn(policy: Policy, history: Observations, deployed_at: int) -> Reference:
    """What the history before the deploy says about each KPI (of the group `learns_from` names),
    each as its kind learns it (`MetricKind.learn`)."""
    frame = history.canary if learns_from(policy) == "canary" else (history.baseline or history.canary)
    t = frame.timestamps
    metrics = {}
    for m in policy.metrics:
        x = frame.values.get(m.name)
        if x is None or len(x) == 0:
            continue
        metrics[m.name] = judge_of(m).learn(m, frame, x, deployed_at, m.judged or _is_denominator(policy, m))
    return Reference(metrics, int(len(t)))


def learned(seasonal: SeasonalModel | None, t: np.ndarray, x: np.ndarray, deployed_at: int,
            **fields) -> MetricReference:
    """A metric's reference from its seasonal model (None: not fitted, or unusable) and the
    history it was fitted on, with what its kind learned besides (`fields`)."""
    # How far the last hour before the deploy already ran off the model (in noise scales): a
    # level the model misses (a week learned from 7 days, a slow trend) is not an anomaly of
    # the canary window.
    offset, anomaly_rate = 0.0, 0.0
    if seasonal is not None:
        known = np.isfinite(x)
        with np.errstate(all="ignore"):
            z = (x[known] - seasonal.expected(t[known])) / seasonal.scale(t[known])
        recent = t[known] >= deployed_at - 3600
        if recent.sum() >= 10:
            offset = float(np.median(z[recent]))
        anomaly_rate = float(np.mean(np.abs(z) > FLEET_ANOMALY_SCALES)) if len(z) else 0.0
    return MetricReference(seasonal, offset=offset, anomaly_rate=anomaly_rate, **fields)


def _rate(events: np.ndarray, volume: np.ndarray | None) -> float | None:
    """Events per unit of volume over the points where both are known (None: no volume)."""
    if volume is None:
        return None
    ok = np.isfinite(events) & np.isfinite(volume)
    total = float(volume[ok].sum()) if ok.any() else 0.0
    return float(events[ok].sum()) / total if total > 0 else None


def _is_denominator(policy: Policy, metric: Metric) -> bool:
    return any(m.denominator == metric.name and m.judged for m in policy.metrics)


def _jump_rate(standardized: np.ndarray) -> float:
    """How often one group jumps up by more than EXCURSION_JUMP noise scales between minutes:
    the chance rate of the excursions the paired comparison counts (floored: a clean history
    does not prove a clean canary)."""
    return max(float(np.mean(standardized > EXCURSION_JUMP)), 1.0 / len(standardized), MIN_EXCURSION_RATE)


def _expected(m: Metric, reference: Reference, timestamps: np.ndarray) -> float | None:
    """What the seasonal model expected over these moments, in the unit the metric is judged
    in (a ratio for counts with a denominator)."""
    ref = reference.metrics.get(m.name)
    if ref is None or ref.seasonal is None or len(timestamps) == 0:
        return None
    value = float(np.mean(ref.seasonal.expected(timestamps)))
    if m.denominator:
        volume = reference.metrics.get(m.denominator)
        if volume is None or volume.seasonal is None:
            return None
        total = float(np.mean(volume.seasonal.expected(timestamps)))
        return value / total if total > 0 else None
    return value


def expected_band(policy: Policy, reference: Reference, timestamps: np.ndarray,
                  scales: float) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """What the seasonal model expects at these moments, per metric it has a model of, in the unit
    the metric is judged in (a ratio: the expected events over the expected volume), as (expected,
    expected - `scales` noise scales, expected + `scales` noise scales): the report's band, which
    it asks here and never fits itself (it cannot show an expectation the verdict did not use)."""
    t = timestamps
    models = {name: ref.seasonal for name, ref in reference.metrics.items()}
    bands = {}
    for m in policy.metrics:
        model = models.get(m.name)
        if model is None:
            continue
        mean, spread = np.asarray(model.expected(t), dtype=float), scales * np.asarray(model.scale(t), dtype=float)
        if m.denominator:  # a ratio: the expected events over the expected volume
            volume = models.get(m.denominator)
            if volume is None:
                continue
            with np.errstate(divide="ignore", invalid="ignore"):
                per = np.where(volume.expected(t) > 0, 1.0 / np.asarray(volume.expected(t), dtype=float), np.nan)
            mean, spread = mean * per, spread * per
        bands[m.name] = (mean, mean - spread, mean + spread)
    return bands
