"""`gate plan`: before the canary is deployed, how long the judge will need at this traffic and noise.

From the baseline's recent history (read once, the history the judge learns from), the real
judge is replayed (the rule of `gate replay`) on the canary window it would see: the baseline at the same hours of the last
day(s), and a canary (a) exactly as good as the baseline, (b) 2x its tolerance worse, one metric
at a time, with `--canary-share` of the baseline's traffic. There is no formula of its own: the
judge's variance model (its noise prior per point, the counts' dispersion at the canary's volume,
the anytime fail boundaries, the pass checkpoints) decides, step by step as it will live. The
canary is the expected one, without noise of its own (the judge's variance never drops below its
prior), so the times are the typical ones, not the unlucky ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gate.analysis import group_scopes, replay_recorded
from gate.backtest import MIN_COVERAGE, WindowReferences
from gate.errors import GateError, InputError, PolicyError
from gate.policy import MAX_LIFETIME, Metric, Policy, _human
from gate.series import Frame
from gate.sources import MetricSource, Query
from gate.sources.replay import Case
from gate.release import iso

DAY = 86400
REGRESSION = 2.0  # the regression a plan must catch in time, in multiples of the tolerance
LIFETIME_STEPS = (1.5, 2, 3, 4, 6, 8, 12, 16, 24, 48)  # lifetimes tried when the policy's is too short
SHARE_RANGE = (1e-4, 1.0)  # canary shares searched for the smallest that judges a count
SHARE_ITERATIONS = 12


@dataclass
class MetricPlan:
    name: str
    tolerance: float | None
    seconds_to_pass: int | None = None  # when the judge passes the metric of a canary as good as the baseline
    pass_rule: str | None = None
    seconds_to_fail: int | None = None  # when it fails a 2x-tolerance regression; None: not in the lifetime
    fail_rule: str | None = None
    lifetime_needed: int | None = None  # too short: the lifetime at which the regression is caught
    share_needed: float | None = None  # counts with a denominator: the smallest canary share that catches it in time
    notes: list[str] = field(default_factory=list)

    @property
    def too_short(self) -> bool:
        return bool(self.tolerance) and self.seconds_to_fail is None

    def to_dict(self) -> dict:
        return {"name": self.name, "tolerance": self.tolerance, "seconds_to_pass": self.seconds_to_pass,
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

    @property
    def verdict(self) -> str:
        return "too short" if any(m.too_short for m in self.metrics) else "ok"

    def reason(self) -> str:
        at = "" if self.policy.history_only else f" at a {self.share:.1%} canary share"  # history-only: its own traffic
        if self.verdict == "ok":
            return (f"every judged metric catches a {REGRESSION:g}x-tolerance regression within the "
                    f"{_human(self.policy.lifetime)} lifetime{at}")
        parts = []
        for m in self.metrics:
            if not m.too_short:
                continue
            fixes = []
            if m.lifetime_needed is not None:
                fixes.append(f"a lifetime of {_human(m.lifetime_needed)}")
            if m.share_needed is not None:
                fixes.append(f"a canary share of {m.share_needed:.1%}")
            fix = " or ".join(fixes) if fixes else f"no lifetime up to {_human(MAX_LIFETIME)}"
            parts.append(f"{m.name} cannot be judged: a {REGRESSION:g}x-tolerance regression is not caught within "
                         f"{_human(self.policy.lifetime)}{at} (would suffice: {fix})")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return {"release": self.release, "policy": self.policy.name, "verdict": self.verdict, "reason": self.reason(),
                "deployed_at": iso(self.deployed_at), "lifetime": self.policy.lifetime, "canary_share": self.share,
                "mode": self.mode, "seconds_to_pass": self.seconds_to_pass,
                "metrics": [m.to_dict() for m in self.metrics]}


# ------------------------------------------------------------------------ the expected canary


def scaled_by_share(policy: Policy) -> set[str]:
    """The counts that follow the canary's traffic: judged as a ratio, or the ratio's denominator.
    (A count without a denominator is compared as it is, group against group of the same size.)"""
    names = {m.name for m in policy.metrics if m.kind == "count" and m.denominator}
    return names | {m.denominator for m in policy.metrics if m.denominator}


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
    def __init__(self, policy: Policy, history: Frame, deployed_at: int, share: float):
        self.policy, self.history, self.deployed_at, self.share = policy, history, deployed_at, share
        self.references = WindowReferences()  # learned once: every run shares the deploy's history

    def judge(self, lifetime: int, metric: Metric | None, effect: float,
              share: float | None = None) -> tuple[dict, dict, int | None]:
        """Replay the expected canary as `gate replay` does (`replay_recorded`, until the first
        decisive verdict): each metric's first pass and first fail (seconds after the deploy,
        rule), and when the whole canary passed."""
        policy = self.policy.model_copy(update={"lifetime": lifetime})
        d = self.deployed_at
        window = recent_window(self.history, d, lifetime)
        canary = expected_canary(policy, window, self.share if share is None else share, metric, effect)
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

    def caught_within(self, metric: Metric, lifetime: int, share: float | None = None) -> tuple[int, str] | None:
        _, failed, _ = self.judge(lifetime, metric, REGRESSION * float(metric.tolerance), share)
        hit = failed.get(metric.name)
        # Failed for the regression itself: a gap in the day the window is drawn from is no catch.
        return hit if hit is not None and hit[1] != "canary-not-reporting" else None

    def lifetime_needed(self, metric: Metric) -> int | None:
        longest = min(MAX_LIFETIME, self.policy.history - DAY)  # the window is drawn from the history's last days
        for factor in LIFETIME_STEPS:
            life = int(self.policy.lifetime * factor) // self.policy.interval * self.policy.interval
            if life > longest:
                return None
            if self.caught_within(metric, life) is not None:
                return life
        return None

    def share_needed(self, metric: Metric) -> float | None:
        """The smallest canary share at which the regression is caught within the lifetime (log
        bisection: more traffic, more evidence)."""
        lo, hi = SHARE_RANGE
        if self.caught_within(metric, self.policy.lifetime, hi) is None:
            return None
        for _ in range(SHARE_ITERATIONS):
            mid = math.sqrt(lo * hi)
            if self.caught_within(metric, self.policy.lifetime, mid) is not None:
                hi = mid
            else:
                lo = mid
        return hi


def read_recent(policy: Policy, source: MetricSource, release: str, deployed_at: int) -> Frame:
    """The history the judge would learn from at this deploy (one request): the baseline's, or a
    history-only canary's own."""
    canary_scope, baseline_scope = group_scopes(policy, release)
    query = Query(tuple(policy.metrics), canary_scope, baseline_scope, deployed_at - policy.history,
                  deployed_at - policy.interval, policy.interval)
    counts = {m.name for m in policy.metrics if m.kind == "count"}
    seen = source.fetch(query).cleaned(counts)
    frame = seen.baseline if seen.baseline is not None else seen.canary
    judged = [m.name for m in policy.metrics if m.judged]
    if not any(frame.reporting(n).any() for n in judged):
        raise GateError(f"no history: the {policy.source.type} source returned no point of {', '.join(judged)} "
                        f"for {baseline_scope or canary_scope!r} between {iso(query.start)} and {iso(query.end)}")
    return frame


def _check_recent(policy: Policy, history: Frame, deployed_at: int) -> None:
    """The canary window is drawn from the last day(s): a gap there would plan a canary that does
    not report (failed at once, as if caught): refused instead."""
    window = recent_window(history, deployed_at, policy.lifetime)
    judged = [m.name for m in policy.metrics if m.judged]
    points = max(1, policy.lifetime // policy.interval)
    for name in judged:
        share = float(window.reporting(name).sum()) / points
        if share < MIN_COVERAGE:
            raise GateError(f"no history: {name} has points at {share:.0%} of the same hours of the last day "
                            f"({iso(int(window.timestamps[0]) if len(window) else deployed_at - DAY)} on), "
                            f"which the plan draws the canary window from (it needs {MIN_COVERAGE:.0%})")


def plan(policy: Policy, source: MetricSource, release: str, *, share: float = 0.05, deployed_at: int) -> Plan:
    if not any(m.judged and m.tolerance for m in policy.metrics):
        raise PolicyError("metrics: no judged metric has a tolerance: a plan times the regressions at 2x each "
                        "metric's tolerance")
    if not 0 < share <= 1:
        raise InputError(f"--canary-share: a share of the baseline's traffic in (0, 1], got {share:g}")
    if policy.history < DAY + policy.lifetime:
        raise PolicyError(f"history: {_human(policy.history)} is too short to plan a {_human(policy.lifetime)} "
                        "canary (needs a day more than the lifetime: the window is drawn from the last day)")
    deployed_at -= deployed_at % policy.interval
    history = read_recent(policy, source, release, deployed_at)
    _check_recent(policy, history, deployed_at)
    planner = Planner(policy, history, deployed_at, share)
    passed, _, whole = planner.judge(policy.lifetime, None, 0.0)
    plans = []
    for m in (m for m in policy.metrics if m.judged):
        p = MetricPlan(m.name, m.tolerance)
        p.seconds_to_pass, p.pass_rule = passed.get(m.name, (None, None))
        if m.tolerance:
            p.seconds_to_fail, p.fail_rule = planner.caught_within(m, policy.lifetime) or (None, None)
            if p.too_short:
                p.lifetime_needed = planner.lifetime_needed(m)
            if m.name in scaled_by_share(policy) and not policy.history_only:
                p.share_needed = planner.share_needed(m)  # below it, the count cannot be judged in the lifetime
        else:
            p.notes.append("no tolerance: judged against its history only, no regression size to plan for")
        plans.append(p)
    mode = "history-only" if policy.history_only else "canary vs baseline"
    return Plan(policy, release, deployed_at, share, mode, whole, plans)


# ------------------------------------------------------------------------------ the terminal


def print_plan(data: dict, console) -> None:
    from rich.markup import escape
    from rich.table import Table

    def when(seconds):
        return "-" if seconds is None else _human(int(seconds)) if seconds % 60 == 0 else f"{seconds}s"

    style = "bold green" if data["verdict"] == "ok" else "bold red"
    console.print(f"[{style}]{data['verdict']}[/]: {escape(data['reason'])}", highlight=False, soft_wrap=True)
    table = Table(box=None, pad_edge=False, header_style="bold", title_justify="left",
                  title=f"release {escape(data['release'])}, lifetime {_human(data['lifetime'])}, canary share "
                        f"{data['canary_share']:.1%} ({data['mode']}); a canary as good as the baseline passes "
                        f"after {when(data['seconds_to_pass'])}")
    for column in ("metric", "tol", "passes after", f"fails at {REGRESSION:g}x after", "needs"):
        table.add_column(column, no_wrap=True)
    for m in data["metrics"]:
        fixes = [f"lifetime {_human(m['lifetime_needed'])}" if m["lifetime_needed"] else "",
                 f"share >= {m['share_needed']:.1%}" if m["share_needed"] else ""]
        table.add_row(m["name"], "-" if m["tolerance"] is None else f"{m['tolerance']:g}",
                      f"{when(m['seconds_to_pass'])} {m['pass_rule'] or ''}".strip(),
                      "not within the lifetime" if m["tolerance"] and m["seconds_to_fail_2x"] is None
                      else when(m["seconds_to_fail_2x"]),
                      " or ".join(f for f in fixes if f))
    console.print(table, highlight=False)
