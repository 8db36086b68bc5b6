"""Preprocessing of each look: canary and baseline points paired by timestamp (load, time of day
and fleet-wide swings cancel), missing points dropped, moments when both groups are off their
seasonal expectation held out (a fleet-wide anomaly is not the canary's fault), a gauge's points
that read 0 where its baseline is far above it taken out as missing (no reading)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gate.judge.reference import FLEET_ANOMALY_RARE, FLEET_ANOMALY_SCALES, MetricReference
from gate.judge.screens import _dip_share, _paired_scale, _rarely_dips, _unread_points
from gate.kinds import judge_of
from gate.policy import Metric
from gate.series import Observations


def _after(window: Observations, start: int, now: int) -> Observations:
    return Observations(window.canary.between(start, now),
                        window.baseline.between(start, now) if window.baseline is not None else None)


@dataclass(frozen=True)
class Paired:
    timestamps: np.ndarray
    canary: np.ndarray
    baseline: np.ndarray
    canary_volume: np.ndarray | None = None  # denominators, for ratios
    baseline_volume: np.ndarray | None = None
    held_out: int = 0  # points dropped as fleet-wide anomaly
    reported: np.ndarray | None = None  # the moments both groups reported it (held-out ones too, glitches not)
    glitches: int = 0  # moments left out for a glitch point (its kind's window_glitches)
    glitched: tuple[str, ...] = ()  # ... in which series ("canary requests")
    unread: int = 0  # a gauge's moments left out as missing: its canary read 0 or next to it (_unread_points)
    # (canary, baseline, unread) at the moments both groups reported, unread ones included: what
    # the zero screens (screens._reads_zero) read; None for a count.
    zero_screen: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    sent: np.ndarray | None = None  # the moments in `reported` and those left out as no reading (`unread`)
    # The denominators at every moment the baseline served and the canary reported any metric,
    # the canary's missing there read as 0 (CloudWatch publishes no RequestCount for a minute
    # without one, as down._canary_not_serving reads it): for count._volume_reads_zero, which
    # the moments above (both groups' every series known) would not show such a run.
    served_canary_volume: np.ndarray | None = None
    served_baseline_volume: np.ndarray | None = None


def preprocess(m: Metric, window: Observations, ref: MetricReference | None,
               volume_ref: MetricReference | None = None, screen: bool = True) -> Paired | None:
    """The moments both groups reported, paired; a count's glitch moments left out (`screen`) and
    a fleet-wide anomaly's held out."""
    canary, baseline = window.canary, window.baseline
    if m.name not in canary.values or baseline is None or m.name not in baseline.values:
        return None
    common, ci, bi = np.intersect1d(canary.timestamps, baseline.timestamps, return_indices=True)
    c, b = canary.values[m.name][ci], baseline.values[m.name][bi]
    cv = bv = served_cv = served_bv = None
    if m.denominator:
        if m.denominator not in canary.values or m.denominator not in baseline.values:
            return None
        cv, bv = canary.values[m.denominator][ci], baseline.values[m.denominator][bi]
        canary_reported = np.zeros(len(ci), dtype=bool)
        for values in canary.values.values():
            canary_reported |= np.isfinite(values[ci])
        served_cv = np.where(np.isnan(cv) & canary_reported, 0.0, cv)
        counted = np.isfinite(served_cv) & (np.nan_to_num(bv) > 0)
        served_cv, served_bv = served_cv[counted], bv[counted]
    keep = np.isfinite(c) & np.isfinite(b)
    if cv is not None:
        keep &= np.isfinite(cv) & np.isfinite(bv) & (bv > 0) & (cv >= 0)
    glitches, glitched = (judge_of(m).window_glitches(m, ref, volume_ref, c, b, cv, bv) if screen
                          else (np.zeros_like(keep), ()))
    glitches &= keep
    keep &= ~glitches
    zero_screen = None
    unread = np.zeros_like(keep)
    if not m.summed:
        # A level (CPU, memory, latency) reading 0 where its baseline is far above it is a failed
        # scrape filled with 0, not the canary's level: left out as a missing point (neither in
        # the mean nor in the coverage, which then decides as for any gap). Scattered zeros
        # averaged in pulled a 1.15x CPU within its 10% tolerance (a pass). The screens still
        # see them: 5+ zeros or a stretch block a pass (_reads_zero). Only where a rise is what is
        # judged: where a fall is (decrease, either) a zero counts against the canary, and a real
        # collapse (a hit ratio at 0, a KPI's drop) must not be excused as a failed scrape
        # (history-only, Kontrast KPIs judged either way failed later or not at all).
        # Whatever the noise, a point below a tenth of its baseline where the baseline's own
        # series (its history, its window) almost never falls there (_rarely_dips) is counted by
        # the screens as a zero (5+ or a stretch block a pass): a noisy latency's 0.02x fills every
        # 3rd step passed a +44% shift. It stays in the mean: the noisy family's real canaries
        # read 0 at 1-2 of 16-24 points beside a baseline that never dips, and taken out those
        # dips failed 25 clean pairs (bench.cv). A gauge whose baseline dips too is unaffected.
        dips = np.zeros_like(keep)
        if m.bad_direction == "increase":
            scale = _paired_scale(np.where(keep, c, np.nan), b, ref.noise if ref is not None else None)
            unread = keep & _unread_points(c, b, scale)
            rarely_dips = _rarely_dips(ref.dip_share if ref is not None else None, _dip_share(b[keep]))
            dips = keep & _unread_points(c, b, scale, rarely_dips)
        zero_screen = (c[keep], b[keep], (unread | dips)[keep])
        keep &= ~unread
    # The moments the canary sent something, its no-readings too: a stopped series' allowance
    # (coverage._own_gaps_allow) must not grow by the points taken out here.
    sent = common[keep | unread]
    reported = keep.copy()
    held = 0
    if (ref is not None and ref.seasonal is not None and keep.any() and ref.seasonal.informative
            and ref.anomaly_rate < FLEET_ANOMALY_RARE):
        # Relative to the offset the baseline already had before the deploy. A moment is the
        # fleet's anomaly only when both groups are off their expectation the same way: one
        # group off alone is that group's own moment (a sparse metric's rare non-zero point is
        # exactly what its baseline is made of, and must stay in the comparison).
        expected, scale = ref.seasonal.expected(common), ref.seasonal.scale(common)
        with np.errstate(all="ignore"):
            off_b = (b - expected) / scale - ref.offset
            off_c = (c - expected) / scale - ref.offset
        both_off = (keep & (np.abs(off_b) > FLEET_ANOMALY_SCALES) & (np.abs(off_c) > FLEET_ANOMALY_SCALES)
                    & (np.sign(off_b) == np.sign(off_c)))
        # ... and only where the canary moved with the fleet: a surge (a run of such moments)
        # over which it is worse than its own baseline beyond tolerance and noise is its own
        # (_canary_departs), and all of it stays in.
        anomalous = both_off.copy()
        for run in _runs(both_off):
            if _canary_departs(m, c, b, cv, bv, scale, run):
                anomalous[run] = False
        # Hold out a minority of the minutes only: a baseline off its expectation most of the
        # time is a level the model misses (or an incident that ran before the deploy), not a
        # passing anomaly, and the pairing already cancels what both groups share. Counted on
        # every minute both groups were off (the canary's departures too): whether the model
        # misses the level is not a question of how the canary did.
        if anomalous.any() and 2 * both_off.sum() < keep.sum():
            held = int(anomalous.sum())
            keep &= ~anomalous
    return Paired(
        common[keep], c[keep], b[keep],
        None if cv is None else cv[keep], None if bv is None else bv[keep], held,
        common[reported], int(glitches.sum()), glitched, int(unread.sum()), zero_screen, sent, served_cv, served_bv,
    )


def _canary_departs(m: Metric, c: np.ndarray, b: np.ndarray, cv: np.ndarray | None, bv: np.ndarray | None,
                    scale: np.ndarray, among: np.ndarray) -> bool:
    """Whether over the moments `among` (one surge: a run of moments both groups are off their
    expectation the same way) the canary is worse than its own baseline by more than the
    metric's tolerance and by more than FLEET_ANOMALY_SCALES noise scales of their sum: a canary
    3x its baseline during a surge has not moved with the fleet, and its minutes, held out, would
    let a regression shown only then pass (review). Decided over a surge's minutes together, not
    one by one: kept one by one, a clean canary's unluckiest draws stayed in and its luckiest went
    out, and 4 of 10 clean canaries failed (the fix's review); nor over every surge of the window
    at once, where one surge 2x worse was diluted by five clean ones and passed (its review). A
    count is set against the baseline's rate at the canary's volume. A canary better than its
    baseline there is held out: no evidence against it."""
    if not np.any(among):
        return False
    tolerance = m.tolerance or 0.0
    with np.errstate(all="ignore"):
        like = (b if cv is None else b * cv / bv)[among]  # the baseline, at the canary's volume
        gap = float(np.sum(c[among] - like))
        beyond = abs(gap) > max(tolerance * float(np.sum(np.abs(like))),
                                FLEET_ANOMALY_SCALES * math.sqrt(float(np.sum(scale[among] ** 2))))
    worse = {"increase": gap > 0, "decrease": gap < 0}.get(m.bad_direction, True)
    return bool(beyond and worse)


def _runs(mask: np.ndarray) -> list[slice]:
    """The runs of adjacent True points of `mask`, as slices."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return [slice(int(a), int(z)) for a, z in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1))]


def _latest_moment(window: Observations) -> int:
    """The latest moment at which either group reported any value: how far the deploy's data goes
    (a source's lag delays every series alike)."""
    latest = 0
    for frame in (window.canary, window.baseline):
        if frame is None or not frame.values:
            continue
        reported = np.any(np.isfinite(np.vstack(list(frame.values.values()))), axis=0)
        if reported.any():
            latest = max(latest, int(frame.timestamps[np.flatnonzero(reported)[-1]]))
    return latest
