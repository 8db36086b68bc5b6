"""The peers the judge is measured against, implemented from their published descriptions.

Each peer takes a recorded case (`gate.sources.replay.Case`: its series, deploy time, end of
lifetime and metric definitions; never its labels) and answers pass or fail with the moment it
decided. Like the judge, a peer only looks at data up to the moment it is deciding.

* `kayenta`: Kayenta's NetflixACAJudge as configured in Spinnaker: per metric a two-sided
  Mann-Whitney U test at 98% confidence between all canary and baseline points of the window,
  failed only when also beyond the effect-size tolerance (mean ratio); the WeightedSumScorer
  (share of metrics passing, `Nodata` metrics left out of the score) against a pass threshold of
  95; judged once, at the end of the lifetime.
* `threshold`: an Argo Rollouts / Flagger style analysis: every interval the canary's mean
  since the deploy against the baseline's, a breach beyond the tolerance, failure after 3
  consecutive breaching intervals.
* `three_sigma`: for history-only cases, each point of the window against the same minute of the
  day on the past days: mean +- 3 standard deviations.

docs/benchmarks.md describes every choice made where the descriptions leave one open.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy.stats import mannwhitneyu

from gate.series import Frame
from gate.sources.replay import Case

DAY = 86400


@dataclass(frozen=True)
class PeerVerdict:
    verdict: str  # "pass" or "fail"
    decided_at: int
    reason: str


def steps(case: Case) -> Iterator[int]:
    """The moments the live loop evaluates: every step after the deploy, the last exactly at
    the end of the lifetime (as gate.analysis.Analysis.steps)."""
    t = case.deployed_at + case.step
    while t < case.end_at:
        yield t
        t += case.step
    yield case.end_at


def judged_metrics(case: Case) -> list[dict]:
    return [m for m in case.metrics if m.get("bad_direction", "increase") != "none"]


def directions(metric: dict) -> tuple[str, ...]:
    bad = metric.get("bad_direction", "increase")
    return ("increase", "decrease") if bad == "either" else (bad,)


def tolerance(metric: dict) -> float:
    value = metric.get("tolerance")
    return 0.0 if value is None else float(value)


def per_step(frame: Frame, metric: dict) -> np.ndarray:
    """The metric's points as the peer judges them: a count with a denominator as the per-step
    ratio (NaN where the denominator is missing or zero)."""
    x = frame.values.get(metric["name"])
    if x is None:
        return np.full(len(frame), np.nan)
    denominator = metric.get("denominator")
    if not denominator:
        return x
    volume = frame.values.get(denominator)
    if volume is None:
        return np.full(len(frame), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(volume > 0, x / volume, np.nan)


def _frame(case: Case, scope: str) -> Frame:
    return case.frames.get(scope) or Frame.empty(case.step)


# ------------------------------------------------------------------------------ Kayenta


def kayenta_classify(canary: np.ndarray, baseline: np.ndarray, metric: dict, confidence: float = 0.98) -> str:
    """`Pass`, `High`, `Low` or `Nodata` for one metric, as Kayenta's Mann-Whitney classifier
    with an effect size: significant (two-sided p < 1 - confidence) AND the mean ratio beyond the
    tolerance in a bad direction."""
    canary, baseline = canary[np.isfinite(canary)], baseline[np.isfinite(baseline)]
    if len(canary) == 0 or len(baseline) == 0:
        return "Nodata"
    if np.array_equal(np.sort(canary), np.sort(baseline)) or len(np.unique(np.concatenate([canary, baseline]))) == 1:
        return "Pass"
    p = mannwhitneyu(canary, baseline, alternative="two-sided").pvalue
    if not p < 1 - confidence:
        return "Pass"
    mean_c, mean_b = float(np.mean(canary)), float(np.mean(baseline))
    ratio = mean_c / mean_b if mean_b != 0 else (math.inf if mean_c > 0 else -math.inf if mean_c < 0 else 1.0)
    tol = tolerance(metric)
    bad = directions(metric)
    if "increase" in bad and ratio > 1 + tol:
        return "High"
    if "decrease" in bad and ratio < 1 - tol:
        return "Low"
    return "Pass"


def kayenta(case: Case, confidence: float = 0.98, pass_score: float = 95.0) -> PeerVerdict:
    """Judged once at the end of the lifetime on the whole window (deploy to end)."""
    end = case.end_at
    canary = _frame(case, "canary").between(case.deployed_at, end)
    baseline = _frame(case, "baseline").between(case.deployed_at, end)
    labels = {m["name"]: kayenta_classify(per_step(canary, m), per_step(baseline, m), m, confidence)
              for m in judged_metrics(case)}
    counted = [v for v in labels.values() if v != "Nodata"]
    score = 100.0 * counted.count("Pass") / len(counted) if counted else 0.0
    critical = [m["name"] for m in judged_metrics(case) if m.get("critical") and labels[m["name"]] != "Pass"]
    summary = ", ".join(f"{k}={v}" for k, v in labels.items())
    if critical:
        return PeerVerdict("fail", end, f"critical metric(s) not Pass: {', '.join(critical)} ({summary})")
    verdict = "pass" if score >= pass_score else "fail"
    return PeerVerdict(verdict, end, f"score {score:.0f} (pass >= {pass_score:g}): {summary}")


# ------------------------------------------------------------------- Argo / Flagger gate


def window_mean(frame: Frame, metric: dict) -> float:
    """The analysis query's value over a window: the mean of a gauge, the ratio of sums for a
    count with a denominator (what a rate query returns). NaN when there is no data."""
    x = frame.values.get(metric["name"])
    if x is None:
        return math.nan
    denominator = metric.get("denominator")
    if denominator:
        volume = frame.values.get(denominator)
        if volume is None:
            return math.nan
        ok = np.isfinite(x) & np.isfinite(volume)
        total = float(volume[ok].sum())
        return float(x[ok].sum()) / total if total > 0 else math.nan
    ok = np.isfinite(x)
    return float(x[ok].mean()) if ok.any() else math.nan


def breach(canary: float, baseline: float, metric: dict) -> str | None:
    """Why this interval breaches, or None. No canary data is a breach (a failed measurement);
    no baseline data gives nothing to compare with, hence no breach."""
    if not math.isfinite(canary):
        return "no canary data"
    if not math.isfinite(baseline):
        return None
    tol = tolerance(metric)
    bad = directions(metric)
    if "increase" in bad and canary > baseline * (1 + tol):
        return f"{canary:.4g} > {baseline:.4g} x {1 + tol:g}"
    if "decrease" in bad and canary < baseline * (1 - tol):
        return f"{canary:.4g} < {baseline:.4g} x {1 - tol:g}"
    return None


def threshold(case: Case, window_steps: int | None = None, failure_limit: int = 3) -> PeerVerdict:
    """Every interval: canary vs baseline mean since the deploy (or over the last
    `window_steps` steps); fail after `failure_limit` consecutive intervals with any metric in
    breach; pass at the end if it never failed."""
    canary_all, baseline_all = _frame(case, "canary"), _frame(case, "baseline")
    consecutive = 0
    for t in steps(case):
        start = case.deployed_at
        if window_steps is not None:
            start = max(start, t - (window_steps - 1) * case.step)
        canary, baseline = canary_all.between(start, t), baseline_all.between(start, t)
        reasons = []
        for m in judged_metrics(case):
            why = breach(window_mean(canary, m), window_mean(baseline, m), m)
            if why:
                reasons.append(f"{m['name']}: {why}")
        consecutive = consecutive + 1 if reasons else 0
        if consecutive >= failure_limit:
            return PeerVerdict("fail", t, f"{consecutive} consecutive breaching intervals; " + "; ".join(reasons))
    return PeerVerdict("pass", case.end_at, "no run of breaching intervals")


# ---------------------------------------------------------------- 3-sigma time of day


def same_time_of_day(times: np.ndarray, x: np.ndarray, moments: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each moment, the mean, standard deviation (ddof=1) and count of the history's values
    (`x` at `times`) at the same time of day on the past days."""
    by_time = dict(zip(times.tolist(), x.tolist()))
    days = int((moments.max() - times.min()) // DAY) if len(times) and len(moments) else 0
    mean, sd, count = (np.full(len(moments), np.nan) for _ in range(3))
    for i, t in enumerate(moments.tolist()):
        past = [by_time.get(t - d * DAY, math.nan) for d in range(1, days + 1)]
        past = np.array([v for v in past if math.isfinite(v)])
        count[i] = len(past)
        if len(past) >= 2:
            mean[i], sd[i] = past.mean(), past.std(ddof=1)
    return mean, sd, count


def three_sigma(case: Case, sigmas: float = 3.0, min_days: int = 3) -> PeerVerdict:
    """Fail at the first window point beyond `sigmas` standard deviations of the same time of
    day on the past days (at least `min_days` of them, else the point is not judged)."""
    frame = _frame(case, "canary")
    history = frame.between(frame.timestamps[0] if len(frame) else 0, case.deployed_at - 1)
    window = frame.between(case.deployed_at, case.end_at)
    beyond = np.zeros(len(window), dtype=bool)
    for m in judged_metrics(case):
        x = per_step(window, m)
        mean, sd, count = same_time_of_day(history.timestamps, per_step(history, m), window.timestamps)
        ok = np.isfinite(x) & (count >= min_days)
        bad = directions(m)
        if "increase" in bad:
            beyond |= ok & (x > mean + sigmas * sd)
        if "decrease" in bad:
            beyond |= ok & (x < mean - sigmas * sd)
    seen = 0
    for t in steps(case):
        visible = int(np.searchsorted(window.timestamps, t, side="right"))
        if beyond[seen:visible].any():
            at = int(window.timestamps[seen + int(np.argmax(beyond[seen:visible]))])
            return PeerVerdict("fail", t, f"point at {at} beyond {sigmas:g} sigma of its time of day")
        seen = visible
    return PeerVerdict("pass", case.end_at, f"no point beyond {sigmas:g} sigma of its time of day")


def threshold_last5(case: Case) -> PeerVerdict:
    """The threshold gate on a sliding window of the last 5 steps (a `[5m]` range query)."""
    return threshold(case, window_steps=5)


PEERS = {"kayenta": kayenta, "threshold": threshold, "threshold_last5": threshold_last5,
         "three_sigma": three_sigma}
