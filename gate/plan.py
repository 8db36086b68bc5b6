"""`gate plan`: before the canary is deployed, how long the judge will need at this traffic and noise.

From the baseline's recent history (read once, the history the judge learns from), the real
judge is replayed (the rule of `gate replay`) on the canary window it would see: the baseline at the same hours of the last
day(s), and a canary (a) exactly as good as the baseline, (b) 2x its tolerance worse, one metric
at a time, with `--canary-share` of the baseline's traffic. There is no formula of its own: the
judge's variance model (its noise prior per point, the counts' dispersion at the canary's volume,
the anytime fail boundaries, the pass checkpoints) decides, step by step as it will live. The
canary is the expected one, without noise of its own (the judge's variance never drops below its
prior), so the times are the typical ones, not the unlucky ones.

A metric is judged in time by the rule of `gate backtest`'s recommendation (`judged_in_time`): its
2x regression caught, and a canary as good as the baseline passed (not "could not tell"), within
the lifetime. Its answer is `ok`, `too short` (not judged in time), or `at the end`: judged in time,
but the regression caught only at the last look, a risk (about one in four of those is missed by a
real canary that is noisier than the expected one).

Where the source reads the baseline group host by host (Datadog `by {host}`, CloudWatch per
InstanceId: `gate backtest`'s split, `backtest.split_by_host`, not a second copy), the canary is
not the baseline's own last day: the group's hosts go into two sides, the canary side as many
hosts as a canary of `--canary-share` runs (one of 20 at 5%), the baseline side the rest, which
the judge learns from and compares with; the canary's gauges a mean over its few hosts, as noisy
as the live canary's, its counts that follow traffic thinned to the canary share, so that the
judge sees the real divergence of two groups of hosts running the same code, as a paired canary
will show it. Where it cannot split (one host, no per-host metric,
the replay and simulate sources), the expected canary from one group's history, labelled so:
its times are then those of a canary that differs from its baseline by nothing but the effect.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from gate.analysis import group_scopes, replay_recorded
from gate.backtest import (DEFAULT_CANARY_SHARE, MIN_COVERAGE, SPLIT, Injection, WindowReferences, asked_moment,
                           covered_share, inject,
                           judged_in_time, no_history, primary_kind, scaled_by_share, share_kept, share_note, split_by_host,
                           thin_to_share, traffic)
from gate.errors import GateError, InputError, PolicyError
from gate.policy import MAX_LIFETIME, Metric, Policy, _human
from gate.series import Frame
from gate.sources import MetricSource, Query
from gate.sources.replay import Case
from gate.release import iso
from gate.rules import Rule

DAY = 86400
REGRESSION = 2.0  # the regression a plan must catch in time, in multiples of the tolerance
LIFETIME_STEPS = (1.5, 2, 3, 4, 6, 8, 12, 16, 24, 48)  # lifetimes tried when the policy's is too short
SHARE_RANGE = (1e-4, 1.0)  # canary shares searched for the smallest that judges a count
SHARE_ITERATIONS = 12
OK, AT_END, TOO_SHORT = "ok", "at the end", "too short"  # a metric's answer, the plan's: the worst of them
UNTIMED = "no tolerance"  # history-only, tolerance null: no regression size to time, so never `ok`
RISKS = (TOO_SHORT, UNTIMED, AT_END)  # worst first
ONE_GROUP = "one group's history"  # the mode of a plan whose baseline cannot be split by host


def answer(tolerance: float | None, lifetime: int, seconds_to_pass: int | None, seconds_to_fail: int | None) -> str:
    """A metric's answer for a lifetime: too short unless judged in time (backtest's rule, here on
    the one expected canary); at the end when its regression is caught only at the last look."""
    if not tolerance:
        # Judged against its history only: it passes at the end when no departure shows, which
        # promises nothing about a regression; a plan cannot say it is judged in time.
        return UNTIMED
    if not judged_in_time(float(seconds_to_fail is not None), float(seconds_to_pass is not None)):
        return TOO_SHORT
    return AT_END if seconds_to_fail >= lifetime else OK


@dataclass
class MetricPlan:
    name: str
    tolerance: float | None
    lifetime: int
    seconds_to_pass: int | None = None  # when the judge passes the metric of a canary as good as the baseline
    pass_rule: Rule | None = None
    seconds_to_fail: int | None = None  # when it fails a 2x-tolerance regression; None: not in the lifetime
    fail_rule: Rule | None = None
    lifetime_needed: int | None = None  # too short: the lifetime at which the regression is caught
    share_needed: float | None = None  # counts with a denominator: the smallest canary share that catches it in time
    notes: list[str] = field(default_factory=list)

    @property
    def answer(self) -> str:
        return answer(self.tolerance, self.lifetime, self.seconds_to_pass, self.seconds_to_fail)

    def to_dict(self) -> dict:
        return {"name": self.name, "tolerance": self.tolerance, "answer": self.answer,
                "seconds_to_pass": self.seconds_to_pass,
                "pass_rule": self.pass_rule, "seconds_to_fail_2x": self.seconds_to_fail, "fail_rule": self.fail_rule,
                "lifetime_needed": self.lifetime_needed, "share_needed": self.share_needed, "notes": self.notes}


@dataclass
class Plan:
    policy: Policy
    release: str
    deployed_at: int
    share: float
    mode: str
    seconds_to_pass: int | None  # the whole canary (every metric within, minimum duration run)
    metrics: list[MetricPlan]
    mode_reason: str = ""  # why this mode: the split's halves, or why the baseline could not be split

    @property
    def verdict(self) -> str:
        answers = {m.answer for m in self.metrics}
        return next((a for a in RISKS if a in answers), OK)

    def reason(self) -> str:
        at = "" if self.policy.history_only else f" at a {self.share:.1%} canary share"  # history-only: its own traffic
        life = _human(self.policy.lifetime)
        if self.verdict == OK:
            return (f"every judged metric catches a {REGRESSION:g}x-tolerance regression before the end of the "
                    f"{life} lifetime{at}, and passes a canary as good as the baseline")
        parts = []
        for m in self.metrics:
            fixes = []
            if m.lifetime_needed is not None:
                fixes.append(f"a lifetime of {_human(m.lifetime_needed)}")
            if m.share_needed is not None:
                fixes.append(f"a canary share of {m.share_needed:.1%}")
            fix = " or ".join(fixes) if fixes else f"no lifetime up to {_human(MAX_LIFETIME)}"
            if m.answer == TOO_SHORT:
                why = [f"a {REGRESSION:g}x-tolerance regression is not caught"] if m.seconds_to_fail is None else []
                why += ["a canary as good as the baseline is not passed (could not tell)"] if m.seconds_to_pass is None else []
                parts.append(f"{m.name} cannot be judged: {' and '.join(why)} within {life}{at} (would suffice: {fix})")
            elif m.answer == UNTIMED:
                parts.append(f"{m.name} has no tolerance: judged only on a departure from its history, it has "
                             f"no regression size a plan can time (give it a tolerance to plan it)")
            elif m.answer == AT_END:
                parts.append(f"{m.name}: a {REGRESSION:g}x-tolerance regression is caught only at the end of the "
                             f"{life} lifetime{at}, at the last look: a noisier canary may be missed "
                             f"(caught before the end with: {fix})")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return {"release": self.release, "policy": self.policy.name, "verdict": self.verdict, "reason": self.reason(),
                "deployed_at": iso(self.deployed_at), "lifetime": self.policy.lifetime, "canary_share": self.share,
                "mode": self.mode, "mode_reason": self.mode_reason, "seconds_to_pass": self.seconds_to_pass,
                "metrics": [m.to_dict() for m in self.metrics]}


# ------------------------------------------------------------------------ the expected canary


def recent_window(history: Frame, deployed_at: int, lifetime: int) -> Frame:
    """The baseline over the canary's lifetime as the last day(s) at the same hours showed it."""
    back = math.ceil((lifetime + history.step) / DAY) * DAY
    seen = history.between(deployed_at - back, deployed_at - back + lifetime)
    return Frame(history.step, seen.timestamps + back, {n: v.copy() for n, v in seen.values.items()})


def expected_canary(policy: Policy, window: Frame, share: float, metric: Metric | None, effect: float) -> Frame:
    """The canary as good as the baseline, or `effect` (relative) worse on `metric`."""
    follow = scaled_by_share(policy)
    values = {n: v * share if n in follow else v.copy() for n, v in window.values.items()}
    if metric is not None:
        sign = -1.0 if metric.bad_direction == "decrease" else 1.0
        values[metric.name] = values[metric.name] * max(0.0, 1 + sign * effect)
    return Frame(window.step, window.timestamps, values)


def _joined(a: Frame, b: Frame) -> Frame:
    names = set(a.values) & set(b.values)
    return Frame(a.step, np.concatenate([a.timestamps, b.timestamps]),
                 {n: np.concatenate([a.values[n], b.values[n]]) for n in names})


# ------------------------------------------------------------------------------ the judging


class Planner:
    def __init__(self, policy: Policy, history: Frame, deployed_at: int, share: float,
                 progress: Callable[[str, int, int | None], None] | None = None, canary_half: Frame | None = None,
                 group: Frame | None = None):
        """`history`: what the judge learns from and compares with (the baseline group, or its
        half when split by host); `canary_half`: split by host, the other half, the canary's own
        hosts (None: the expected canary, the baseline's own last day)."""
        self.policy, self.history, self.deployed_at, self.share = policy, history, deployed_at, share
        self.canary_half = canary_half
        # The traffic the share is of: the group as read (default: both sides, as they stand).
        self.group_traffic = traffic(policy, group if group is not None else history)
        if group is None and canary_half is not None:
            for d, events in traffic(policy, canary_half).items():
                self.group_traffic[d] += events
        self.references = WindowReferences()  # learned once: every run shares the deploy's history
        self.clean: dict = {}  # (lifetime, share) -> the clean canary's first pass per metric
        self.progress = progress or (lambda stage, done=0, total=None: None)

    def judge(self, lifetime: int, metric: Metric | None, effect: float,
              share: float | None = None) -> tuple[dict, dict, int | None]:
        """Replay the expected canary as `gate replay` does (`replay_recorded`, until the first
        decisive verdict): each metric's first pass and first fail (seconds after the deploy,
        rule), and when the whole canary passed."""
        policy = self.policy.model_copy(update={"lifetime": lifetime})
        d = self.deployed_at
        window = recent_window(self.history, d, lifetime)
        share = self.share if share is None else share
        if self.canary_half is None:
            canary = expected_canary(policy, window, share, metric, effect)
        else:
            canary = self.half_canary(policy, lifetime, share, metric, effect)
        past = self.history.between(d - policy.history, d - 1)
        if policy.history_only:
            frames = {"canary": _joined(past, canary)}
        else:
            frames = {"canary": canary, "baseline": _joined(past, window)}
        passed: dict = {}
        failed: dict = {}

        def seen(verdict) -> None:
            for r in verdict.metrics:
                if r.verdict in ("pass", "fail"):
                    (passed if r.verdict == "pass" else failed).setdefault(r.name, (verdict.evaluated_at - d, r.rule))

        case = Case("plan", Path("."), policy.interval, d, d + lifetime, [], frames)
        verdict = replay_recorded(case, policy, cache=self.references, on_verdict=seen)[1].verdict
        return passed, failed, (verdict.evaluated_at - d if verdict.verdict == "pass" else None)

    def half_canary(self, policy: Policy, lifetime: int, share: float, metric: Metric | None, effect: float) -> Frame:
        """Split by host: the canary half over the same hours of the last day(s), its counts that
        follow traffic thinned to `share` (`backtest.thin_to_share`: the events of that much traffic,
        with their Poisson noise, the errors drawn out of the requests kept), and the regression injected as the backtest injects it (a shift for
        gauges, extra events drawn for counts: `backtest.inject`)."""
        window = recent_window(self.canary_half, self.deployed_at, lifetime)
        keep = share_kept(policy, traffic(policy, self.canary_half), self.group_traffic, share)
        rng = np.random.default_rng([self.deployed_at, lifetime])  # seeded: one plan answers the same each time
        canary = thin_to_share(policy, window, keep, rng)
        if metric is None or not effect:
            return canary
        injection = Injection(primary_kind(metric), metric.name, effect / float(metric.tolerance))
        return inject(canary, policy, injection, self.deployed_at, lifetime)

    def caught_within(self, metric: Metric, lifetime: int, share: float | None = None) -> tuple[int, Rule] | None:
        _, failed, _ = self.judge(lifetime, metric, REGRESSION * float(metric.tolerance), share)
        hit = failed.get(metric.name)
        # Failed for the regression itself: a gap in the day the window is drawn from is no catch.
        return hit if hit is not None and not Rule(hit[1]).not_reporting else None

    def passed_within(self, metric: Metric, lifetime: int, share: float | None = None) -> tuple[int, Rule] | None:
        """When a canary as good as the baseline has the metric passed (one clean run per lifetime
        and share, shared by the metrics)."""
        key = lifetime, self.share if share is None else share
        if key not in self.clean:
            self.clean[key] = self.judge(lifetime, None, 0.0, share)[0]
        return self.clean[key].get(metric.name)

    def answer(self, metric: Metric, lifetime: int, share: float | None = None) -> str:
        caught = self.caught_within(metric, lifetime, share)
        passed = self.passed_within(metric, lifetime, share)
        return answer(metric.tolerance, lifetime, passed and passed[0], caught and caught[0])

    def lifetime_needed(self, metric: Metric, enough: frozenset[str]) -> int | None:
        """The shortest lifetime (among LIFETIME_STEPS x the policy's) whose answer is `enough`."""
        longest = min(MAX_LIFETIME, self.policy.history - DAY)  # the window is drawn from the history's last days
        for n, factor in enumerate(LIFETIME_STEPS):
            life = int(self.policy.lifetime * factor) // self.policy.interval * self.policy.interval
            if life > longest:
                return None
            self.progress(f"{metric.name}: trying a lifetime of {_human(life)}", n, len(LIFETIME_STEPS))
            if self.answer(metric, life) in enough:
                return life
        return None

    def share_needed(self, metric: Metric, enough: frozenset[str]) -> float | None:
        """The smallest canary share at which the answer is `enough` within the lifetime (log
        bisection: more traffic, more evidence)."""
        lo, hi = SHARE_RANGE
        stage = f"{metric.name}: searching the canary share that judges it"
        self.progress(stage, 0, SHARE_ITERATIONS + 1)
        if self.answer(metric, self.policy.lifetime, hi) not in enough:
            return None
        for n in range(SHARE_ITERATIONS):
            self.progress(stage, n + 1, SHARE_ITERATIONS + 1)
            mid = math.sqrt(lo * hi)
            if self.answer(metric, self.policy.lifetime, mid) in enough:
                hi = mid
            else:
                lo = mid
        return hi


@dataclass(frozen=True)
class Options:
    """What a front door calls the plan's settings, so that a refusal names the one to change: the
    CLI's options by default, the Lambda's event fields. `at`: the name of the deploy moment when
    the caller gave it (None: now)."""

    canary_share: str = "--canary-share"
    at: str | None = None


def recent_query(policy: Policy, release: str, deployed_at: int) -> Query:
    """The history the judge would learn from at this deploy."""
    canary_scope, baseline_scope = group_scopes(policy, release)
    return Query(tuple(policy.metrics), canary_scope, baseline_scope, deployed_at - policy.history,
                 deployed_at - policy.interval, policy.interval)


def read_recent(policy: Policy, source: MetricSource, release: str, deployed_at: int,
                asked: str | None = None) -> Frame:
    """The history the judge would learn from at this deploy (one request): the baseline's, or a
    history-only canary's own (`asked`: the option or field that gave the deploy moment)."""
    query = recent_query(policy, release, deployed_at)
    canary_scope, baseline_scope = query.canary, query.baseline
    counts = {m.name for m in policy.metrics if m.summed}
    seen = source.fetch(query).cleaned(counts)
    frame = seen.baseline if seen.baseline is not None else seen.canary
    judged = [m.name for m in policy.metrics if m.judged]
    if not any(frame.reporting(n).any() for n in judged):
        raise no_history(f"the {policy.source.type} source returned no point of {', '.join(judged)} for "
                         f"{baseline_scope or canary_scope!r} between {iso(query.start)} and {iso(query.end)}", asked)
    return frame


@dataclass(frozen=True)
class Groups:
    """What a plan is made from."""

    baseline: Frame  # the history the judge learns from and compares with: the baseline's (or its side of it)
    canary_half: Frame | None  # split by host: the canary side's own hosts; None: the expected canary
    mode: str  # "split by host", "one group's history" or "history-only"
    why: str  # why this mode, for the plan
    group: Frame | None = None  # split by host: the whole group as read (its traffic: what the share is of)


def read_groups(policy: Policy, source: MetricSource, release: str, deployed_at: int,
                asked: str | None = None, share: float = DEFAULT_CANARY_SHARE) -> Groups:
    """The history, and with a baseline group its split by host as `gate backtest` splits it
    (`backtest.split_by_host`: the history read again, host by host): the sides judged against
    each other show the divergence a paired canary will have, the canary side as many hosts as a
    canary of `share` of the group's traffic runs, as the backtest's. Where it cannot
    split, one group's history and the reason, for the plan to say so."""
    history = read_recent(policy, source, release, deployed_at, asked)
    _check_recent(policy, history, deployed_at, asked)
    if policy.history_only:
        return Groups(history, None, "history-only", "the policy has no baseline group: the canary is judged "
                      "against its own history")
    query = replace(recent_query(policy, release, deployed_at), baseline_only=True)
    judged = [m.name for m in policy.metrics if m.judged]
    moments = (query.end - query.start) // policy.interval + 1

    def covered(frame: Frame) -> float:
        return covered_share(frame, judged, moments)

    counts = {m.name for m in policy.metrics if m.summed}
    split = split_by_host(policy, source, query, counts, covered(history), covered, share)
    if not isinstance(split, str):
        one, other, why = split
        try:
            for name, side in (("the canary's", one), ("the baseline's", other)):
                _check_recent(policy, side, deployed_at)
        except GateError as e:
            split = f"{name} side of its hosts: {str(e).removeprefix('no history: ')}"
    if isinstance(split, str):
        return Groups(history, None, ONE_GROUP, (
            f"the baseline cannot be split by host ({split}): the canary is the baseline's own last day, the "
            "expected canary from one group's history, different from its baseline by nothing but the effect "
            "(real groups of hosts drift apart more: its times are a lower bound)"))
    one, other, why = split
    return Groups(other, one, SPLIT, why, history)


def _check_recent(policy: Policy, history: Frame, deployed_at: int, asked: str | None = None) -> None:
    """The canary window is drawn from the last day(s): a gap there would plan a canary that does
    not report (failed at once, as if caught): refused instead."""
    window = recent_window(history, deployed_at, policy.lifetime)
    judged = [m.name for m in policy.metrics if m.judged]
    points = max(1, policy.lifetime // policy.interval)
    for name in judged:
        share = float(window.reporting(name).sum()) / points
        if share < MIN_COVERAGE:
            raise no_history(f"{name} has points at {share:.0%} of the same hours of the last day "
                             f"({iso(int(window.timestamps[0]) if len(window) else deployed_at - DAY)} on), "
                             f"which the plan draws the canary window from (it needs {MIN_COVERAGE:.0%})", asked)


def plan(policy: Policy, source: MetricSource, release: str, *, share: float = DEFAULT_CANARY_SHARE, deployed_at: int,
         progress: Callable[[str, int, int | None], None] | None = None, options: Options = Options()) -> Plan:
    """`progress(stage, done, total)` is told what is being judged (total None: one step); a
    refusal names the setting as `options` calls it."""
    if not any(m.judged and m.tolerance for m in policy.metrics):
        raise PolicyError("metrics: no judged metric has a tolerance: a plan times the regressions at 2x each "
                        "metric's tolerance")
    if not 0 < share <= 1:
        raise InputError(f"{options.canary_share}: a share of the baseline's traffic in (0, 1], got {share:g}")
    if policy.history < DAY + policy.lifetime:
        raise PolicyError(f"history: {_human(policy.history)} is too short to plan a {_human(policy.lifetime)} "
                        "canary (needs a day more than the lifetime: the window is drawn from the last day)")
    if options.at is not None:
        asked_moment(deployed_at, options.at, int(time.time()))
    deployed_at -= deployed_at % policy.interval
    groups = read_groups(policy, source, release, deployed_at, options.at, share)
    tell = progress or (lambda stage, done=0, total=None: None)
    planner = Planner(policy, groups.baseline, deployed_at, share, tell, groups.canary_half, groups.group)
    tell("judging a canary as good as the baseline", 0, None)
    passed, _, whole = planner.judge(policy.lifetime, None, 0.0)
    planner.clean[policy.lifetime, share] = passed
    plans = []
    for m in (m for m in policy.metrics if m.judged):
        p = MetricPlan(m.name, m.tolerance, policy.lifetime)
        p.seconds_to_pass, p.pass_rule = passed.get(m.name, (None, None))
        if m.tolerance:
            tell(f"{m.name}: judging a {REGRESSION:g}x-tolerance regression", 0, None)
            p.seconds_to_fail, p.fail_rule = planner.caught_within(m, policy.lifetime) or (None, None)
            # What would do: judged at all for a metric too short; caught before the end for one at the end.
            enough = frozenset({OK}) if p.answer == AT_END else frozenset({OK, AT_END})
            if p.answer != OK:
                p.lifetime_needed = planner.lifetime_needed(m, enough)
            if m.name in scaled_by_share(policy) and not policy.history_only:
                p.share_needed = planner.share_needed(m, enough)  # below it, the count cannot be judged in the lifetime
        else:
            p.notes.append("no tolerance: judged only on a departure from its history, no regression size to plan for")
        plans.append(p)
    why = groups.why
    if groups.canary_half is not None:
        why += share_note(policy, traffic(policy, groups.canary_half), planner.group_traffic, share)
    return Plan(policy, release, deployed_at, share, groups.mode, whole, plans, why)
