"""The scorer: the metrics' results into one verdict. Fail on any voting metric shown beyond its
tolerance, pass only when every one is shown within it (or not worse at the end) and the canary
has run its minimum duration, otherwise wait; and the numbers behind a canary that stopped."""

from __future__ import annotations

import numpy as np

from gate.judge.budget import minimum_duration
from gate.judge.reference import Reference, _expected, _rate
from gate.policy import Metric, Policy
from gate.rules import Rule
from gate.series import Frame, Observations
from gate.verdict import MetricResult, Verdict, joined_reasons


def _what_was_seen(m: Metric, reference: Reference, window: Observations) -> dict:
    """The numbers behind a canary that stopped reporting: the baseline's value over the window
    and what the seasonal model expected there. The canary has none: it is gone (its earlier
    points are in the report's chart)."""
    def value(frame: Frame | None) -> float | None:
        if frame is None or m.name not in frame.values:
            return None
        x = frame.values[m.name]
        if m.denominator:
            return _rate(x, frame.values.get(m.denominator))
        ok = np.isfinite(x)
        return float(np.mean(x[ok])) if ok.any() else None

    grid = window.baseline if window.baseline is not None and len(window.baseline) else window.canary
    return dict(baseline=value(window.baseline), expected=_expected(m, reference, grid.timestamps))


def _score(policy: Policy, results: list[MetricResult], deployed_at: int, now: int, notes: list[str]) -> Verdict:
    voting = [r for r in results if not r.muted]
    failed = [r for r in voting if r.verdict == "fail"]
    min_duration = minimum_duration(policy)
    ran = now - deployed_at
    if failed:
        failed.sort(key=lambda r: not r.critical)
        reason = joined_reasons(failed)
        return Verdict("", "fail", reason, deployed_at, now, True, results, notes)
    undecided = [r for r in voting if r.verdict != "pass"]
    if not undecided and ran >= min_duration:
        shown = [r.name for r in voting if Rule(r.rule).shown_within]
        if len(shown) == len(voting):
            reason = "every judged metric is shown within its tolerance"
        else:
            reason = ("end of the lifetime: no judged metric is shown worse than its tolerance"
                      + (f" ({', '.join(shown)} shown within it)" if shown else ""))
        return Verdict("", "pass", reason, deployed_at, now, True, results, notes)
    shared_breach = [r for r in undecided if Rule(r.rule).shared_breach]
    if shared_breach:
        reason = "an SLO breach the release is not blamed for, not promoted into: " + joined_reasons(shared_breach)
    elif not undecided:
        reason = (f"every judged metric is within its tolerance so far; a canary must run "
                  f"{min_duration // 60} min before it can pass ({ran // 60} min so far)")
    else:
        reason = "waiting for evidence: " + joined_reasons(undecided)
    return Verdict("", "inconclusive", reason, deployed_at, now, False, results, notes)
