"""What a report is drawn from: the judged window as each metric's series, the judge's seasonal
expectation over it (the band), and their compact JSON copy kept in the store (the snapshot), so
that `gate report RELEASE` draws the same report later from the store alone."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from gate.policy import Metric, Policy, parse_policy
from gate.series import Frame, Observations

log = logging.getLogger(__name__)

Band = tuple[np.ndarray, np.ndarray, np.ndarray]  # mean, low, high; aligned with window_grid(window)


def metric_series(frame: Frame | None, metric: Metric) -> np.ndarray | None:
    """What the judge compares for `metric`: the value, or the ratio to its denominator."""
    if frame is None or metric.name not in frame.values:
        return None
    values = np.asarray(frame.values[metric.name], dtype=float)
    if metric.denominator:
        denominator = frame.values.get(metric.denominator)
        if denominator is None:
            return None
        with np.errstate(divide="ignore", invalid="ignore"):
            values = np.where(np.asarray(denominator) > 0, values / np.asarray(denominator), np.nan)
    return values


def window_grid(window: Observations) -> np.ndarray:
    """Every timestamp of the window, of either group: the grid an expected band is laid on."""
    grid = window.canary.timestamps
    if window.baseline is not None:
        grid = np.union1d(grid, window.baseline.timestamps)
    return np.asarray(grid, dtype=np.int64)


BAND_SCALES = 2.0  # the band drawn: expected +- 2 noise scales (about 95% of normal points)


def expected_band(judge: Any, reference: Any, policy: Policy, window: Observations) -> dict[str, Band] | None:
    """The seasonal expectation over the window, as the judge learned it, if it can tell: the
    judge's `expected_band(policy, reference, timestamps, scales) -> {metric: (mean, low, high)}`
    (gate.judge's), drawn as expected +- BAND_SCALES noise scales; a judge without one, no band.
    The report never reads a reference or fits a model of its own, so it cannot show an
    expectation the verdict did not use.
    """
    timestamps = window_grid(window)
    hook = getattr(judge, "expected_band", None)
    if reference is None or len(timestamps) == 0 or hook is None:
        return None
    try:
        result = hook(policy, reference, timestamps, BAND_SCALES) or {}
        return {k: tuple(np.asarray(a, dtype=float) for a in v) for k, v in result.items()} or None
    except Exception as e:  # noqa: BLE001 - a missing band must not cost the report
        log.warning("report: no expected band (%s: %s)", type(e).__name__, e)
        return None


def _json_floats(values: np.ndarray) -> list[float | None]:
    """JSON-ready, at full precision: the rebuilt report draws exactly what the first one drew."""
    return [float(v) if math.isfinite(v) else None for v in np.asarray(values, dtype=float)]


def _frame_to_dict(frame: Frame | None) -> dict | None:
    if frame is None:
        return None
    return {"step": frame.step, "t": [int(t) for t in frame.timestamps],
            "values": {k: _json_floats(v) for k, v in frame.values.items()}}


def _frame_from_dict(d: dict | None) -> Frame | None:
    if d is None:
        return None
    arrays = {k: np.array([np.nan if v is None else v for v in vs], dtype=float) for k, vs in d["values"].items()}
    return Frame(int(d["step"]), np.array(d["t"], dtype=np.int64), arrays)


def _policy_outline(policy: Policy) -> dict:
    """The policy without its source options and queries: all the report reads, nothing secret."""
    data = policy.model_dump(mode="json", exclude={"source": {"options"}, "metrics": {"__all__": {"queries"}}})
    data["source"]["options"] = {}
    return data


def snapshot(policy: Policy, window: Observations, expected: dict[str, Band] | None,
             canary: str | None = None, baseline: str | None = None) -> dict:
    """A compact JSON copy of what a report needs besides the verdict."""
    canary, baseline = policy.scopes(canary=canary, baseline=baseline)
    return {
        "policy": _policy_outline(policy),
        "canary_scope": canary,
        "baseline_scope": baseline,
        "canary": _frame_to_dict(window.canary),
        "baseline": _frame_to_dict(window.baseline),
        "expected": None if expected is None else {k: [_json_floats(a) for a in v] for k, v in expected.items()},
    }


def from_snapshot(data: dict) -> tuple[Policy, Observations, dict[str, Band] | None, dict]:
    policy = parse_policy(data["policy"], origin="recorded report data")
    window = Observations(canary=_frame_from_dict(data["canary"]), baseline=_frame_from_dict(data.get("baseline")))
    expected = None
    if data.get("expected"):
        expected = {k: tuple(np.array([np.nan if x is None else x for x in a], dtype=float) for a in v)
                    for k, v in data["expected"].items()}
    groups = {"canary": data.get("canary_scope"), "baseline": data.get("baseline_scope")}
    return policy, window, expected, groups
