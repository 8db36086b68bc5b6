"""A pass needs data: the canary reported a metric for enough of the lifetime (or of the points
so far), and lately (a series that stopped is not scattered gaps)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from gate.release import iso
from gate.rules import Rule
from gate.verdict import MetricResult

# At the end of the lifetime a metric not shown worse passes only if the canary reported it for
# at least this share of the lifetime: "not shown worse" on a few scattered points is not a
# judgement (a canary sending one point in three would pass a regression for lack of power).
MIN_COVERAGE_TO_PASS = 0.5
# ... and its latest pair of points no more than this many steps (or this share of the points it
# could have) behind the latest data of the deploy: a series that stopped is not scattered gaps.
MAX_BEHIND = 3
MAX_BEHIND_SHARE = 0.1
RECENT_SPAN = 3  # ... and half of the last 3x that many steps reported
# ... and, whatever the lifetime (MAX_BEHIND_SHARE of a 24 h one is 144 steps, of 7 days 16.8 h),
# no further behind than its own gaps make plausible: a trailing silence as long as its missing
# rate (with the canary-down rule's prior: 1 in 8, worth 8 points) gives a chance below
# STOPPED_CHANCE, or than STOPPED_GAP_MULTIPLE times its longest earlier silence (a series
# reporting every 5th step runs 4 silent by its cadence). A flaky canary missing one point in
# eight is 5 behind with a chance of 3e-5.
STOPPED_CHANCE = 1e-4
STOPPED_GAP_MULTIPLE = 2


def _covered_enough(result: MetricResult, reported: np.ndarray, lifetime_points: int, elapsed_points: int,
                    latest: int, step: int, sent: np.ndarray | None = None) -> MetricResult:
    """A pass needs the canary to have reported (`reported`: the metric's moments) for
    MIN_COVERAGE_TO_PASS of the points it could have: at the end of the lifetime, of the
    lifetime's (a pass that rests on "not shown worse"); at a checkpoint, of the points so far (a
    pass shown within tolerance: the test accounts for how many points it had, not for the ones a
    series that stopped did not send, and "within tolerance over 3 points" of an error series
    blank since its third minute is not a judgement). And it needs the metric reporting lately:
    its latest point no more than MAX_BEHIND steps (or MAX_BEHIND_SHARE of the points) behind the
    deploy's `latest` data, and half of the last RECENT_SPAN times that many steps reported (one
    point sent after a long silence must not reset it). A series that stopped while the others go
    on is not scattered gaps, and a pass on its first half would ignore the half it stopped
    sending (or a doubled canary whose baseline stopped). `sent`: the moments it reported
    something, its points left out as no reading too (preprocess: a gauge's zeros); what its own
    gaps allow is read from them: left out, they were gaps that excused a stopped series."""
    if result.verdict != "pass" and not Rule(result.rule).could_not_tell:
        return result
    at_checkpoint = Rule(result.rule).shown_within
    possible = elapsed_points if at_checkpoint else lifetime_points
    points = len(reported)
    allowed = max(MAX_BEHIND, math.ceil(MAX_BEHIND_SHARE * possible))
    behind = max(0, (latest - int(reported[-1])) // step) if points else possible
    span = min(RECENT_SPAN * allowed, max(possible, 1))
    recent = int(np.sum(reported > latest - span * step))
    needed = math.ceil(MIN_COVERAGE_TO_PASS * possible)
    if points < needed:
        of = f"the {possible} points so far" if at_checkpoint else f"the lifetime's {possible} points"
        unshown = "" if at_checkpoint else "not shown worse, but "
        return replace(result, verdict="inconclusive", rule=Rule.TOO_LITTLE_DATA,
                       reason=f"only {points} of {of} reported; {unshown}a pass needs {needed} "
                              f"({MIN_COVERAGE_TO_PASS:.0%}): {result.reason}")
    gaps_from = reported if sent is None or len(sent) == 0 else sent
    if points and behind > MAX_BEHIND and behind > _own_gaps_allow(gaps_from, step):
        return replace(result, verdict="inconclusive", rule=Rule.TOO_LITTLE_DATA,
                       reason=f"the canary's {result.name} series stopped: nothing since {iso(int(reported[-1]))}, "
                              f"{behind} steps behind the deploy's latest data, longer than its own earlier gaps "
                              f"make plausible ({_own_gaps_allow(gaps_from, step)} steps): {result.reason}")
    if behind > allowed or recent < math.ceil(MIN_COVERAGE_TO_PASS * span):
        return replace(result, verdict="inconclusive", rule=Rule.TOO_LITTLE_DATA,
                       reason=f"its latest point is {behind} steps behind the deploy's latest data and it "
                              f"reported {recent} of the last {span} steps (a pass allows {allowed} behind and "
                              f"needs half): did its series stop? {result.reason}")
    return result


def _own_gaps_allow(reported: np.ndarray, step: int) -> int:
    """How many steps a series reporting at the moments `reported` may plausibly be silent at its
    end: the trailing run its missing rate (the canary-down rule's prior: 1 in 8, worth 8 points)
    makes less likely than STOPPED_CHANCE, but no more than STOPPED_GAP_MULTIPLE times its longest
    earlier silence (a series on its own cadence, every 5th step, has a high missing rate and
    runs of 4), and at least MAX_BEHIND."""
    spanned = int((reported[-1] - reported[0]) // step) + 1
    rate = (spanned - len(reported) + 1) / (spanned + 8)
    by_rate = math.ceil(math.log(STOPPED_CHANCE) / math.log(rate))
    longest = int(np.max(np.diff(reported)) // step) - 1 if len(reported) > 1 else 0
    return max(MAX_BEHIND, min(by_rate, STOPPED_GAP_MULTIPLE * longest))
