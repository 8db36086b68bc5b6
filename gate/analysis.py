"""One release under judgement: fetch -> reference (once) -> judge -> record.

The CLI, the Lambda handler and the Jenkins step are thin adapters over this module: each one
opens the release with `open_release` (scopes checked, source opened, deploy registered), asks
the `Analysis` for an `Evaluation` at `current_moment` (or a given one), and has a decisive one
announced (`announce`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from gate import judge as default_judge
from gate.errors import CrashError, GateError, PolicyError, StoreError, quoted
from gate.lifecycle import CLI, Deploy, Names, belongs, register
from gate.policy import Policy, with_overrides
from gate.request_budget import BudgetSpent
from gate.series import Frame, Observations, TargetHealth, TargetHealthUnread
from gate.settings import current_settings
from gate.sources import DEMO_SOURCES, MetricSource, Query, fixed_filters, look
from gate.sources.replay import Case, ReplaySource, load_case
from gate.release import iso
from gate.verdict import Verdict

# A judged metric (and its denominator) needs this many pairs of neighbouring points of history,
# as the judge's noise model asks: fewer, or none (a new group, renamed tags), and the canary is
# never passed.
MIN_HISTORY_PAIRS = 30

if TYPE_CHECKING:
    from gate.cache import Cache
    from gate.store import Store


class Judge(Protocol):
    """What an evaluation needs of a judge (`gate.judge` is the one): a model of the history,
    learned once, and a verdict on a window against it. (The report also asks the judge for its
    `expected_band(policy, reference, timestamps, scales)` where it has one: gate.report.snapshot.)"""

    def learn(self, policy: Policy, history: Observations, deployed_at: int) -> Any: ...

    def evaluate(self, policy: Policy, reference: Any, window: Observations, deployed_at: int,
                 now: int) -> Verdict: ...


def scope_filters(scope: str) -> frozenset[str]:
    """A scope as the filters a host must match, all of them: Datadog tags joined by commas
    (`env:prod,version:2`), compared as Datadog compares tags, without regard to case. A
    CloudWatch scope (an Auto Scaling group name) is one filter, compared the same way."""
    return frozenset(f.strip().casefold() for f in scope.split(","))


def check_scopes(canary: str, baseline: str | None, fixed: dict[str, tuple[str, ...]] | None = None) -> None:
    """Refuses a canary compared with itself: the same scope, or one group's scope containing the
    other's (its filters are a subset of the other's, so it matches every host of the other: a
    baseline `env:prod` holds the canary `env:prod,version:2`). Either way a bad canary is
    diluted in, or compared with, its own data, and passes. `fixed`: per metric, the filters its
    query adds to both scopes (`sources.fixed_filters`): `--canary service:web` against a query
    `{service:web,$scope}` selects the whole service, the baseline's hosts included."""
    if baseline is None:
        return
    canary_filters, baseline_filters = scope_filters(canary), scope_filters(baseline)
    problem = _overlap(canary_filters, baseline_filters)
    if problem:
        raise PolicyError(f"canary scope {quoted(canary)} and baseline scope {quoted(baseline)} {problem}; "
                          "give each group its own scope")
    for metric, tags in (fixed or {}).items():
        added = scope_filters(",".join(tags))
        problem = _overlap(canary_filters | added, baseline_filters | added)
        if problem:
            raise PolicyError(f"canary scope {quoted(canary)} and baseline scope {quoted(baseline)} {problem} once "
                              f"the query of metric {metric!r} adds its own filter ({', '.join(tags)}); give each "
                              "group a tag of its own that the queries do not fix")


def _overlap(canary_filters: frozenset[str], baseline_filters: frozenset[str]) -> str | None:
    """How two groups' filters select the same hosts, or None if neither contains the other."""
    if canary_filters == baseline_filters:
        return "are the same group: the canary would be compared with itself"
    if baseline_filters <= canary_filters:
        return "overlap: the baseline's scope contains the canary's (every canary host is a baseline host)"
    if canary_filters <= baseline_filters:
        return "overlap: the canary's scope contains the baseline's (every baseline host is a canary host)"
    return None


def group_scopes(policy: Policy, release: str, canary: str | None = None,
                 baseline: str | None = None) -> tuple[str, str | None]:
    """The canary's and the baseline's scopes for this release (the overrides, or the policy's,
    with `{release}` replaced), refused when they are one group or overlap (`check_scopes`), also
    through the filters the metrics' queries fix.
    The front doors call it before they register a deploy: nothing is written for a canary that
    would be compared with itself."""
    canary_scope, baseline_scope = policy.scopes(release, canary, baseline)
    check_scopes(canary_scope, baseline_scope, fixed_filters(policy))
    return canary_scope, baseline_scope


@dataclass(frozen=True)
class Evaluation:
    """One look at a release: the verdict, and what it was reached on. The report is drawn from
    `window` and `reference`, so it shows the data the verdict judged, not a later read of it."""

    verdict: Verdict
    window: Observations | None  # the data judged: from the deploy to the moment of the verdict
    reference: Any  # the judge's model of the history the window was judged against
    # A final verdict reached at an earlier look, answered again (`Analysis.recorded_final`): not
    # judged, recorded nor told again (no window: its report was drawn when it was reached).
    recorded: bool = False


class Analysis:
    """Evaluates one release at any moment of its lifetime.

    The reference (the seasonal model of the history) is learned on the first evaluation and
    reused by the later ones; each evaluation reads the window from the deploy to `now` only.
    """

    def __init__(
        self,
        policy: Policy,
        source: MetricSource,
        release: str,
        deployed_at: int,
        *,
        canary: str | None = None,
        baseline: str | None = None,
        store: Store | None = None,
        judge: Judge = default_judge,
        cache: Cache | None = None,
        rollout_step: int | None = None,
        deploy: Deploy | None = None,
        targets: Callable[[int], TargetHealth | None] | None = None,
    ):
        self.policy = policy
        # A rollout step's reader of the canary target group's health at a look (None: none).
        self.targets = targets
        self.deploy = deploy  # the registered deploy judged (its number marks every verdict); None: unregistered
        self.rollout_step = rollout_step  # a traffic step judged on its own window (gate rollout)
        self.source = source
        self.release = release
        self.deployed_at = int(deployed_at)
        self.canary, self.baseline = group_scopes(policy, release, canary, baseline)  # before any fetch
        self.store = store
        self.judge = judge
        self.cache = cache
        self._reference: Any = None
        self._learned = False
        # Why the reference was learned from too little (a judged metric or its denominator with
        # fewer than MIN_HISTORY_PAIRS neighbouring points before the deploy); None: it had history.
        # Such a reference never passes.
        self.history_missing: str | None = None

    @property
    def end_at(self) -> int:
        return self.deployed_at + self.policy.lifetime

    def _query(self, start: int, end: int) -> Query:
        return Query(
            metrics=tuple(self.policy.metrics),
            canary=self.canary,
            baseline=self.baseline,
            start=start,
            end=end,
            step=self.policy.interval,
        )

    def reference(self) -> Any:
        """The judge's model of the history before the deploy, learned once per release."""
        if self._learned:
            return self._reference
        self._reference = None  # one learned from nothing at an earlier look is not kept
        key = None
        if self.cache is not None:
            key = self.cache.key(self.release, self.deployed_at, self.policy.model_dump_json(),
                                 (self.canary, self.baseline))
            self._reference = self.cache.load(key)
            # A cache standing for the deploy's own analysis (a rollout step's) says whether the
            # deploy's history was missing; a stored entry never is (nothing learned from nothing
            # is stored).
            self.history_missing = getattr(self.cache, "history_missing", None)
        if self._reference is None:
            history = self._history()
            self._reference = self.judge.learn(self.policy, history, self.deployed_at)
            if key is not None and self.history_missing is None:
                self.cache.save(key, self._reference)
        # A reference learned from nothing is neither cached nor kept: a source that was only late
        # (or a group whose tags were fixed) gives the next look its history.
        self._learned = self.history_missing is None
        return self._reference

    def window(self, now: int) -> Observations:
        return self._fetch(self.deployed_at, now)

    def _history(self) -> Observations:
        """The history before the deploy, of the group the judge learns from only (a judge that
        does not say which, both): the new canary group's empty history costs no request. A
        baseline group without history (new, or its tags renamed) leaves the canary group's, which
        ran the previous version: fetched then only (one more request), and learned from (the
        judge's `learn` falls back to it). Neither: `history_missing` says so."""
        learns_from = getattr(self.judge, "learns_from", None)
        baseline_only = self.baseline is not None and learns_from is not None and learns_from(self.policy) == "baseline"
        start, end = self.deployed_at - self.policy.history, self.deployed_at - 1
        history = self._fetch(start, end, baseline_only=baseline_only)
        if baseline_only and self._unreported(history.baseline):
            canary = self._fetch(start, end, canary_only=True).canary
            if len(self._unreported(canary)) < len(self._unreported(history.baseline)):
                history = Observations(canary=canary)
        # The frame the judge learns from (judge.learn's rule); a judge that does not say, the better.
        frames = ([history.baseline or history.canary] if baseline_only
                  else [f for f in (history.canary, history.baseline) if f is not None] or [None])
        missing = min((self._unreported(f) for f in frames), key=len)
        if not missing:
            self.history_missing = None
        else:
            metrics = ", ".join(missing)
            who = (f"neither the baseline group {quoted(self.baseline)} nor the canary group {quoted(self.canary)} "
                   f"reported {metrics}" if self.baseline is not None
                   else f"the canary group {quoted(self.canary)} did not report {metrics}")
            self.history_missing = (
                f"no history to learn from: {who} (at least {MIN_HISTORY_PAIRS} pairs of neighbouring points) "
                f"between {iso(start)} and {iso(end)} (a new group, or renamed tags?); without a model of its "
                "noise the judge cannot show a canary good: never passed")
        return history

    def _unreported(self, frame: Frame | None) -> list[str]:
        """The judged metrics (and their denominators) of which the group reported fewer than
        MIN_HISTORY_PAIRS pairs of neighbouring points: what the judge learns a noise model from
        (30 points, or 10 000 every second minute, teach it nothing)."""
        judged = [m for m in self.policy.metrics if m.judged]
        needed = dict.fromkeys([m.name for m in judged] + [m.denominator for m in judged if m.denominator])
        return [name for name in needed if frame is None or frame.neighbouring_pairs(name) < MIN_HISTORY_PAIRS]

    def _fetch(self, start: int, end: int, baseline_only: bool = False, canary_only: bool = False) -> Observations:
        counts = {m.name for m in self.policy.metrics if m.summed}
        query = replace(self._query(start, end), baseline_only=baseline_only)
        if canary_only:
            query = replace(query, baseline=None)
        return self.source.fetch(query).cleaned(counts)

    def evaluate(self, now: int) -> Verdict:
        return self.evaluation(now).verdict

    def evaluation(self, now: int) -> Evaluation:
        """The verdict at `now`, recorded in the store (a failure to judge as an error), with the
        window and reference it was reached on."""
        final = self.recorded_final()
        if final is not None:
            return Evaluation(final, None, None, recorded=True)
        # After the lifetime there is nothing more to learn: the verdict is the one at its end.
        current = int(now) <= self.end_at
        now = min(int(now), self.end_at)
        try:
            with look(self.source):  # the history and the window: one look, one deadline
                reference = self.reference()
                window = self.window(now)
                unread = None
                if self.targets is not None and current:  # health read now is not the health at a past end
                    try:
                        window = replace(window, canary_targets=self.targets(now))
                    except TargetHealthUnread as e:
                        unread = e
            verdict = self.judge.evaluate(self.policy, reference, window, self.deployed_at, now)
            if unread is not None:
                # Judged without it, but a person must know the dead-canary-by-health rule was not
                # applied: a canary its load balancer took out of service fails by its silence, later.
                verdict = replace(verdict, notes=[*verdict.notes, (
                    f"the canary target group's health could not be read ({unread}): the rule that fails a canary "
                    "its load balancer takes out of service was not applied at this look (a silent canary still "
                    "fails by the canary-down rule, later)")])
            demo = self.policy.source.type if self.policy.source.type in DEMO_SOURCES else None
            verdict = replace(verdict, release=self.release, demo=demo, rollout_step=self.rollout_step,
                              deploy=self.deploy.number if self.deploy is not None else None)
            verdict = self._with_links(verdict)
            if self.history_missing is not None:
                verdict = self._without_history(verdict)
            if now >= self.end_at and not verdict.decisive:
                verdict = self._at_end_of_lifetime(verdict)
        except GateError as e:
            if self.store is not None:
                self.store.record_error(self.release, now, str(e))
            raise
        except Exception as e:  # noqa: BLE001 - a crash is a could-not-judge, recorded like one
            crash = CrashError(f"could not judge: the gate failed at this look ({type(e).__name__}: {e})")
            if self.store is not None:
                self.store.record_error(self.release, now, str(crash))
            raise crash from e
        if self.store is not None:
            self.store.record(verdict)
        return Evaluation(verdict, window, reference)

    def recorded_final(self) -> Verdict | None:
        """The deploy's first final verdict in the order recorded, if it has one: every look of the
        deploy (at any moment, before it too) answers it again and never judges anew. Judged
        again, a window one minute longer is a new question to a sequential test: a canary passed
        at minute 30 was inconclusive at 31 and passed again at 45; and a look at an earlier
        moment than a final fail (a Lambda `now`, a retry) could pass and, recorded, answer every
        later look (review). A rollout's step verdicts are the rollout's to read
        (`Rollout.step_outcome`); a verdict that names another deploy is not this deploy's. A
        record whose row and payload disagree is a StoreError naming it, never answered."""
        if self.store is None or self.rollout_step is not None:
            return None
        finals = [e for e in self.store.evaluations(self.release) if _says_final(e)]
        for e in sorted(finals, key=lambda e: e.get("recorded_at") or 0.0):  # stable: ties keep their order
            payload = e["payload"] if isinstance(e["payload"], dict) else {}
            if payload.get("rollout_step") is not None:
                continue
            if payload.get("deployed_at") != iso(self.deployed_at):
                if not isinstance(payload.get("deployed_at"), str):
                    raise self._damaged(e, "its payload names no deploy time")
                continue  # an earlier deploy's
            if self.deploy is not None and not belongs(payload, self.deploy):
                continue
            try:
                verdict = Verdict.from_dict(payload)
            except (KeyError, TypeError, ValueError) as damage:
                raise self._damaged(e, f"{type(damage).__name__}: {str(damage)[:100]}") from None
            row = (e["verdict"], bool(e["final"]), self.release, int(e["evaluated_at"]), self.deployed_at)
            recorded = (verdict.verdict, verdict.final, verdict.release, verdict.evaluated_at, verdict.deployed_at)
            if row != recorded or (self.deploy is not None and verdict.deploy != self.deploy.number):
                raise self._damaged(e, f"the record says {e['verdict']}{' final' if e['final'] else ''} of "
                                       f"{self.release!r} at {iso(e['evaluated_at'])}, its payload "
                                       f"{verdict.verdict}{' final' if verdict.final else ''} of {verdict.release!r} "
                                       f"at {iso(verdict.evaluated_at)} (deploy {verdict.deploy})")
            note = (f"the deploy's final verdict, reached at {iso(verdict.evaluated_at)}, answered again: "
                    "a final verdict is never judged anew")
            return replace(verdict, notes=[*verdict.notes, note])
        return None

    def _damaged(self, record: dict, why: str) -> StoreError:
        return StoreError(f"the final verdict of {self.release!r} recorded at {iso(record['evaluated_at'])} is "
                          f"damaged ({why}); repair or remove that record")

    def _with_links(self, verdict: Verdict) -> Verdict:
        """Each failing metric's links to the canary's traces, logs and the metric (gate.links)."""
        from gate.evidence import with_links

        settings = current_settings()
        region = self.policy.source_region or settings.region
        return with_links(verdict, self.policy, self.source, self.canary, self.baseline,
                          site=settings.datadog_site or "datadoghq.com", region=region)

    def _without_history(self, verdict: Verdict) -> Verdict:
        """A verdict reached on a reference learned from nothing: never a pass (inconclusive, until
        on_undecided decides at the end); whatever it is, its reason says the history is missing."""
        if verdict.verdict == "pass":
            return replace(verdict, verdict="inconclusive", final=False,
                           reason=f"{self.history_missing}. The window alone: {verdict.reason}")
        return replace(verdict, reason=f"{verdict.reason} ({self.history_missing})")

    def _at_end_of_lifetime(self, verdict: Verdict) -> Verdict:
        outcome = self.policy.on_undecided
        reason = (
            f"still undecided at the end of the lifetime ({iso(self.end_at)}): "
            f"the policy makes an undecided canary {outcome} (on_undecided). {verdict.reason}"
        )
        return replace(verdict, verdict=outcome, reason=reason, final=True)

    def steps(self, start: int | None = None) -> Iterator[int]:
        """The evaluation moments from `start` (default: one interval after the deploy) to the
        end of the lifetime, the last one exactly at the end."""
        step = self.policy.interval
        t = self.deployed_at + step if start is None else start
        while t < self.end_at:
            yield t
            t += step
        yield self.end_at

    def run(self, *args: Any, **kwargs: Any) -> tuple[Verdict, int]:
        """`watch`, for who needs only the verdict and the number of evaluations."""
        evaluation, evaluations = self.watch(*args, **kwargs)
        return evaluation.verdict, evaluations

    def watch(
        self,
        wait: Callable[[int], None] | None = None,
        on_verdict: Callable[[Verdict], None] | None = None,
        start: int | None = None,
    ) -> tuple[Evaluation, int]:
        """Evaluate every interval until a decisive verdict or the end of the lifetime; the last
        evaluation and how many were made.

        `wait(t)` is called before the evaluation at moment t: it sleeps until t in a live
        watch, and only moves the replay clock when replaying.
        """
        evaluations, evaluation = 0, None
        for t in self.steps(start):
            if wait is not None:
                wait(t)
            try:
                evaluation = self.evaluation(t)
            except BudgetSpent:
                # The organisation's requests free by themselves: this look is recorded as could
                # not judge and the next one asks again (as the Step Functions loop does); only
                # the last look's could-not-judge ends the watch.
                if t >= self.end_at:
                    raise
                continue
            evaluations += 1
            if on_verdict is not None:
                on_verdict(evaluation.verdict)
            if evaluation.verdict.decisive or evaluation.verdict.final:
                break
        assert evaluation is not None
        return evaluation, evaluations


def current_moment(policy: Policy, clock: Callable[[], float] = time.time) -> int:
    """The moment judged when none is asked for: the start of the policy's current interval. Every
    front door asks at the same moments (a retry in the same interval asks the same question, and
    `--watch` looks on the grid the Step Functions loop looks on)."""
    return int(clock()) // policy.interval * policy.interval


def open_release(
    policy: Policy,
    release: str,
    now: int,
    *,
    open_source: Callable[[Policy], MetricSource],
    store: Any,
    requested: int | None = None,
    canary: str | None = None,
    baseline: str | None = None,
    examine_past: bool = False,
    recorded_deploy: bool = True,
    names: Names = CLI,
    clock: Callable[[], float] = time.time,
    cache: Any = None,
) -> Analysis:
    """The release's analysis, as every front door opens it before judging at `now`: its scopes
    checked (nothing is written for a canary compared with itself), its source opened, its deploy
    registered (`lifecycle.register_deploy`: `requested`, or the first check). With
    `recorded_deploy`, a recorded case's source gives its own deploy time and its past may be
    examined (`gate check` on a replay policy; the Lambda judges live sources only). A source
    that cannot be opened is recorded as an error of the release at `now` (as `Analysis` records
    the faults after it), and raised."""
    group_scopes(policy, release, canary, baseline)
    try:
        source = open_source(policy)
    except GateError as e:
        store.record_error(release, now, str(e))
        raise
    recorded = getattr(source, "known_deployed_at", None) if recorded_deploy else None
    if recorded is not None:
        # A recorded case is the past by definition, and knows when its canary started.
        # (Simulated data is made up at any moment, like a live source: the rule holds there.)
        examine_past = True
        requested = recorded if requested is None else requested
    deploy = register_release(policy, release, now, store=store, requested=requested, canary=canary,
                              baseline=baseline, examine_past=examine_past, names=names, clock=clock)
    return Analysis(policy, source, release, deploy.deployed_at, canary=canary, baseline=baseline, store=store,
                    cache=cache, deploy=deploy)


def register_release(policy: Policy, release: str, now: int, *, store: Any, requested: int | None = None,
                     canary: str | None = None, baseline: str | None = None, examine_past: bool = False,
                     names: Names = CLI, clock: Callable[[], float] = time.time) -> Deploy:
    """The deploy of `release` judged at `now`, registered (`lifecycle.register`) once its scopes
    are checked: what a front door keys its records on before it judges (the Lambda's idempotency)."""
    group_scopes(policy, release, canary, baseline)
    return register(store, release, requested, now, policy, deploy_info(policy, canary, baseline),
                    examine_past=examine_past, names=names, clock=clock)


def deploy_info(policy: Policy, canary: str | None = None, baseline: str | None = None) -> dict:
    """What a deploy is registered with besides its policy's digest and lifetime: the policy's
    name and the groups' scopes (as given, `{release}` unfilled)."""
    canary_scope, baseline_scope = policy.scopes(canary=canary, baseline=baseline)
    return {"policy": policy.name, "canary": canary_scope, "baseline": baseline_scope}


def announce(analysis: Analysis, evaluation: Evaluation, *, report: bool = True,
             build_url: str | None = None) -> str | None:
    """A decisive verdict told, as every front door tells it: the HTML report of what it judged
    (unless `report` is False: a Lambda without a report bucket has nowhere to keep one), then
    every notifier of gate.notify.NOTIFIERS (Slack, the Datadog event, the webhook). None of them
    can change the verdict: each logs and records its own failure (in the analysis' store).
    Returns where the report is, or None."""
    if not evaluation.verdict.decisive or evaluation.recorded:  # a verdict that waits, or told already
        return None
    from gate.notify import News, tell
    from gate.report import report_for

    store = analysis.store
    location = report_for(analysis, evaluation, store) if report else None
    tell(News(evaluation.verdict, analysis.policy, analysis.canary, analysis.baseline, store=store,
              report_url=location, build_url=build_url))  # every notifier of gate.notify.NOTIFIERS
    return location


@dataclass
class ReplayResult:
    case: str
    verdict: Verdict
    evaluations: int
    seconds: float
    policy: Policy | None = None  # the policy the case was judged with

    def to_dict(self) -> dict:
        return {
            "case": self.case,
            "verdict": self.verdict.verdict,
            "decided_at": iso(self.verdict.evaluated_at),
            "evaluations": self.evaluations,
            "reason": self.verdict.reason,
            "metrics": [m.to_dict() for m in self.verdict.metrics],
            "notes": list(self.verdict.notes),  # caveats (held-out moments...): part of the judgement
        }


def replay_case(
    case_dir: str | Path, policy: Policy | None = None, judge: Any = default_judge, *, alpha: float | None = None
) -> ReplayResult:
    """Replay a recorded case step by step as the live loop would, seeing only the past.

    `alpha` replaces the policy's false-alarm budget (the bench's calibration check); it is
    validated as the policy field is (PolicyError)."""
    started = time.perf_counter()
    analysis, evaluation, evaluations = _replay(case_dir, policy, judge, alpha)
    return ReplayResult(analysis.release, evaluation.verdict, evaluations, time.perf_counter() - started,
                        analysis.policy)


def replayed(case_dir: str | Path, policy: Policy | None = None) -> tuple[Verdict, Observations, dict | None, Policy]:
    """Everything a report of a recorded case needs: its replayed verdict, the window it judged
    and the judge's expectation over it (for docs, benchmarks and tests)."""
    from gate.report.snapshot import expected_band

    analysis, evaluation, _ = _replay(case_dir, policy)
    band = expected_band(analysis.judge, evaluation.reference, analysis.policy, evaluation.window)
    return evaluation.verdict, evaluation.window, band, analysis.policy


def _replay(case_dir: str | Path, policy: Policy | None, judge: Any = default_judge,
            alpha: float | None = None) -> tuple[Analysis, Evaluation, int]:
    case = load_case(case_dir)
    policy = policy or case.policy()
    if alpha is not None:
        policy = with_overrides(policy, f"{case_dir} (alpha override)", alpha=alpha)
    # The lifetime is the case's: the recorded data ends there.
    policy = policy.model_copy(update={"lifetime": case.end_at - case.deployed_at})
    return replay_recorded(case, policy, judge)


def replay_recorded(case: Case, policy: Policy, judge: Any = default_judge, cache: Any = None,
                    on_verdict: Callable[[Verdict], None] | None = None) -> tuple[Analysis, Evaluation, int]:
    """The replay rule, for a case on disk or one made from a history (`gate backtest`, `gate
    plan`): the live loop, with a clock that only moves the source's horizon one interval at a time."""
    source = ReplaySource(case)
    analysis = Analysis(
        policy, source, case.id, case.deployed_at,
        canary="canary", baseline="baseline" if policy.baseline else None, judge=judge, cache=cache,
    )

    def advance_clock(t: int) -> None:
        source.visible_until = t

    evaluation, evaluations = analysis.watch(wait=advance_clock, on_verdict=on_verdict)
    return analysis, evaluation, evaluations


def _says_final(record: dict) -> bool:
    """A record whose row or payload says it is a final verdict: both are compared (`recorded_final`),
    so a row damaged to say not final (or error) cannot hide its payload's final fail (review)."""
    payload = record["payload"] if isinstance(record["payload"], dict) else {}
    return bool(record["final"] and record["verdict"] != "error"
                or payload.get("final") is True and payload.get("verdict") not in (None, "error"))
