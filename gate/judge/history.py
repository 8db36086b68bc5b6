"""The history-only classifier (no baseline group): does the canary's window depart from the
KPI's own seasonal history?"""

from __future__ import annotations

import math

import numpy as np

from gate.judge.budget import TUNED_AT, Budget, Look
from gate.judge.classify import END_PASS_RULE
from gate.judge.comparison import _pct, _result
from gate.judge.coverage import _covered_enough
from gate.judge.preprocess import _latest_moment
from gate.judge.reference import Reference
from gate.judge.screens import _unread_points
from gate.kinds import judge_of
from gate.policy import Metric, Policy
from gate.rules import Rule
from gate.series import Frame, Observations
from gate.stats.sequential import margin_test, noise_variance
from gate.verdict import MetricResult

# History-only: a point this many robust noise scales off the seasonal expectation is an
# excursion; a window with at least max(3, 4% of its points) excursions departs from history.
EXCURSION_SCALES = 4.0
EXCURSION_SHARE = 0.04
EXCURSION_MIN = 3
HISTORY_ESTIMATE_AT_END = True  # history-only too: the window mean's estimate within the tolerance


def _against_history(
    m: Metric, policy: Policy, reference: Reference, canary: Frame,
    budget: Budget, lifetime_points: int, look: Look,
) -> MetricResult:
    """No baseline group: does the window depart from the KPI's own seasonal history?

    A point is an excursion when it is more than EXCURSION_SCALES robust noise scales off the
    seasonal expectation (shifted by how far the last hour before the deploy already ran off
    it); a healthy window has at most a handful. The count only grows, so failing on it is
    the same decision at any look; passing waits for the whole lifetime."""
    ref = reference.metrics.get(m.name)
    if ref is None or ref.seasonal is None:
        why = ref.unusable if ref is not None and ref.unusable else "no history before the deploy to learn from"
        return _result(m, "inconclusive", Rule.NO_HISTORY, why)
    x = canary.values.get(m.name)
    if x is None:
        return _result(m, "inconclusive", Rule.NO_DATA, "no data for this metric (query broken or metric absent)")
    ok = np.isfinite(x)
    volume = None
    if m.denominator:
        volume = canary.values.get(m.denominator)
        volume_ref = reference.metrics.get(m.denominator)
        if volume is None or not np.isfinite(volume).any():
            return _result(m, "inconclusive", Rule.NO_DATA, f"no data for its denominator {m.denominator}: a ratio "
                           "is not judged on its events alone (fewer requests hide a higher error rate)")
        if volume_ref is None or volume_ref.seasonal is None:
            return _result(m, "inconclusive", Rule.NO_HISTORY, f"no usable history of its denominator {m.denominator}")
        ok &= np.isfinite(volume)
    screened = ok.copy()  # what the zero screens read (reads_zero_against_history)
    if not m.summed and m.bad_direction == "increase":
        # A level reading 0 (or next to it) where its seasonal expectation is far above it is no
        # reading (a failed scrape filled with 0): a missing point, out of the mean and the coverage
        # (as beside a baseline, preprocess: not where a fall is what is judged).
        ok &= ~_unread_points(x, ref.seasonal.expected(canary.timestamps), ref.seasonal.scale(canary.timestamps))
    t, x = canary.timestamps[ok], x[ok]
    expected_values = ref.seasonal.expected(t)
    scale = ref.seasonal.scale(t)
    if volume is not None and len(t):
        # A ratio (review, reproduced: a canary whose requests fell to a third with the same
        # errors, its error rate tripled, passed at -9%): the events the history expects at the
        # window's own volume. The noise grows with a higher volume and is never narrowed for a
        # lower one (fewer false alarms, never more power than the history has).
        expected_volume = volume_ref.seasonal.expected(t)
        at_volume = np.where(expected_volume > 0, volume[ok] / np.maximum(expected_volume, 1e-12), 1.0)
        expected_values = expected_values * at_volume
        scale = scale * np.sqrt(np.maximum(at_volume, 1.0))
    expected = float(np.mean(expected_values)) if len(t) else None
    if len(t) == 0:
        return _result(m, "inconclusive", Rule.TOO_FEW_POINTS, "no point since the deploy", expected=expected)
    if volume is not None and float(np.sum(volume[ok])) < max(1, m.min_events):  # as beside a baseline
        return _result(m, "inconclusive", Rule.MINIMUM_VOLUME, f"the canary has {np.sum(volume[ok]):.0f} "
                       f"{m.denominator}, needs {max(1, m.min_events)}", expected=expected)
    # The offset (how far the hour before the deploy ran off the model) is the raw events'; a
    # ratio's expectation already follows the volume, and excusing a rise in traffic before the
    # deploy twice passed a doubled error rate (review, reproduced).
    offset = 0.0 if volume is not None else ref.offset
    z = (x - expected_values) / scale - offset
    if m.bad_direction == "increase":
        excursions = int(np.sum(z > EXCURSION_SCALES))
    elif m.bad_direction == "decrease":
        excursions = int(np.sum(z < -EXCURSION_SCALES))
    else:
        excursions = int(np.sum(np.abs(z) > EXCURSION_SCALES))
    needed = max(EXCURSION_MIN, math.ceil(EXCURSION_SHARE * lifetime_points))
    mean_x = float(np.mean(x))
    effect = mean_x / expected - 1 if expected else None
    interval = None
    if expected and len(x) >= 3:
        # The window mean's confidence interval against the expectation (autocorrelation included),
        # at the level of the fail tests.
        half = budget.final_z * math.sqrt(noise_variance(x - expected_values) / len(x)) / abs(expected)
        interval = (effect - half, effect + half)
    numbers = dict(canary=mean_x, expected=expected, effect=effect, interval=interval)
    shown = (f"{excursions} of {len(t)} points beyond {EXCURSION_SCALES:g} noise scales of the seasonal "
             f"expectation (departure at {needed})")
    if excursions >= needed:
        return _result(m, "fail", Rule.DEPARTS_FROM_HISTORY, shown, **numbers)
    if m.tolerance is not None and expected:
        sign = -1.0 if m.bad_direction == "decrease" else 1.0
        factor = 1 + sign * m.tolerance
        excess = sign * (x - factor * expected_values)
        test = margin_test(excess, scale**2 * (1 + factor**2), budget.fail, budget.checkpoint, lifetime_points // TUNED_AT)
        if test.beyond:
            return _result(m, "fail", Rule.MEAN_BEYOND_TOLERANCE,
                           f"window mean {_pct(effect)} vs seasonal expectation, shown beyond "
                           f"tolerance {m.tolerance:.0%}", **numbers)
    kind = judge_of(m)
    doubt = kind.clean_against_history(m, ref, canary)
    if doubt is not None:
        return _result(m, "inconclusive", Rule.IMPLAUSIBLY_CLEAN, doubt, **numbers)
    zeros = kind.reads_zero_against_history(m, reference, canary, canary.timestamps[screened],
                                            canary.values[m.name][screened])
    if zeros is not None:
        return _result(m, "inconclusive", Rule.READS_ZERO, zeros, **numbers)
    if look.final:
        if not _within_history_tolerance(m, mean_x, expected):
            return _result(m, "inconclusive", Rule.MEAN_COULD_NOT_TELL_AT_END,
                           f"{shown}: at the end of the lifetime the window mean is {_pct(effect)} off its "
                           f"seasonal expectation, beyond the tolerance {m.tolerance:.0%}, though not shown "
                           f"so: could not tell it within tolerance", **numbers)
        return _covered_enough(_result(m, "pass", Rule.CONSISTENT_WITH_HISTORY, shown, **numbers), t, lifetime_points,
                               lifetime_points, _latest_moment(Observations(canary)), canary.step,
                               sent=canary.timestamps[screened])
    return _result(m, "inconclusive", Rule.WATCHING_HISTORY, shown, **numbers)


def _within_history_tolerance(m: Metric, mean: float, expected: float | None) -> bool:
    """History-only, at the end: a pass needs the window mean's estimate within the tolerance on
    its bad side (END_PASS_RULE's estimate rule, as a canary beside a baseline). A metric without
    a tolerance is judged on a departure from its history only."""
    if m.tolerance is None or not HISTORY_ESTIMATE_AT_END or END_PASS_RULE == "not-shown-worse":
        return True
    if not expected:  # an expectation of 0 (no errors at these hours): within only where equal
        return mean == expected or (m.bad_direction == "decrease" and mean > 0)
    effect = mean / expected - 1
    worse = {"increase": effect, "decrease": -effect}.get(m.bad_direction, abs(effect))
    return math.isfinite(worse) and worse <= m.tolerance
