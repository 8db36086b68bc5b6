"""`gate rollout`: traffic steps on an ALB, each judged by the same judge as `gate check`.

A step raises the canary's share of one weighted forward action (gate.traffic) to the next
percentage of `rollout.steps` and judges the canary from that moment on, as a canary of its own
whose lifetime is `rollout.step_lifetime` (the window restarts at each step; the reference, the
seasonal model of the history before the deploy, stays the deploy's). A pass moves to the next
step; a pass at the last step ends the rollout (exit 0: the pipeline promotes); a fail at any step
sends the canary's share back to 0 at once (exit 1).

Every weight change is recorded in the store (`record_traffic`) *after* the load balancer took
it, with the step, the verdict that allowed it and the deploy it belongs to (gate.lifecycle.Deploy:
a rollout reads only its own deploy's changes, never a predecessor's). All the state is there and
on the listener: each look starts by reconciling the two (`Rollout.position`), so a run can stop
anywhere and the next one resumes at the recorded step. A crash between "weights set" and
"recorded" leaves the listener one change ahead of the store, which the next look recognises (the
weights of the next step after a recorded pass of this one, or the canary at 0 after a recorded
fail) and records as observed: a step's window starts when its weights were seen set, never
earlier (they may have been set by hand long after the pass). The canary found at 0 is a rollback
whatever the store says (a failed step whose verdict or change the store refused, or a rollback
by hand): recorded as observed, the rollout is over (fail). Any other difference is someone
else's change: the rollout stops (RolloutError, exit 4), never passes; so does a rollout that has
not started while the canary already takes traffic, or whose canary target group is forwarded to
by another rule or listener (its share there would not follow the steps).

One look (`look`) judges; moving to the next step (`advance`) is a separate call, so that the
Step Functions loop makes it an explicit state; `tick` is both, for the command line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from gate.analysis import Analysis, Evaluation
from gate.actions import ActionError
from gate.errors import GateError, StoreError
from gate.lifecycle import DEPLOY, FUTURE_SKEW, Deploy, belongs, deploy_of, register
from gate.traffic import Router, Weights, canary_share, describe_split, same_split, step_weights
from gate.release import iso
from gate.sources import DEMO_SOURCES
from gate.verdict import EXIT_CODES, Verdict

Status = Literal["ready", "started", "judging", "advanced", "passed", "complete", "rolled_back", "undecided"]
OUT = 0  # the step number of "the canary gets no traffic" (before a rollout, after a rollback)


class RolloutError(GateError):
    """The rollout cannot go on as recorded: the load balancer's weights were changed by someone
    else, or a step was asked for that the store does not allow. Could not judge (exit 4)."""


class StepRecords:
    """A step's store, as its Analysis writes to it: a verdict the store refuses is kept here
    (`refused`) instead of raised, so that a failed step's rollback never waits on a record; the
    look raises the store's error once it has acted on the verdict. Everything else is the store's."""

    def __init__(self, store: Any):
        self.store = store
        self.refused: StoreError | None = None

    def record(self, verdict: Verdict) -> None:
        try:
            self.store.record(verdict)
        except StoreError as e:
            self.refused = e

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


class KnownReference:
    """A reference cache that always answers the deploy's reference: a step's Analysis judges its
    own window against the model learned once for the release, never relearns it. Asked for it
    only when the step's look needs it, so that the deploy's history is fetched within that look
    (its one deadline) and a failure to fetch it is recorded as the look's error."""

    def __init__(self, deploy: Any):
        self.deploy = deploy  # the deploy's Analysis

    def key(self, *parts: Any) -> str:
        return "deploy"

    def load(self, key: str) -> Any:
        return self.deploy.reference()

    @property
    def history_missing(self) -> str | None:
        """Why the deploy's history taught nothing (then no step is passed either), or None."""
        return self.deploy.history_missing

    def save(self, key: str, reference: Any) -> None:
        return None


@dataclass
class Position:
    """Where the rollout stands, as the store and the listener agree."""

    change: dict | None  # the last traffic change of this deploy; None: not started
    outcome: dict | None  # the decisive (or final) evaluation of the current step, from the store
    notes: list[str] = field(default_factory=list)  # what the reconciliation found and did

    @property
    def step(self) -> int:
        return self.change["step"] if self.change else OUT

    @property
    def started(self) -> bool:
        return self.change is not None


@dataclass
class Look:
    """What one look at the rollout found and did."""

    release: str
    status: Status
    step: int  # the step the canary is at after this look (0: no traffic)
    steps: list[int]
    percent: int
    verdict: Verdict | None = None  # the step's verdict judged by this look
    recorded: dict | None = None  # the step's deciding evaluation, read from the store
    next_step: int | None = None  # a passed step's successor, for `advance`
    notes: list[str] = field(default_factory=list)
    at: int | None = None  # the moment of the look
    deployed_at: int | None = None  # the release's deploy
    deploy: int | None = None  # the deploy's number (gate.lifecycle.Deploy)
    demo: str | None = None  # the release's policy's demo source (simulate, replay): every answer says so
    dry_run: bool = False  # nothing was recorded or moved: never a pass

    @property
    def outcome(self) -> str:
        """The rollout's verdict: pass only once the last step passed; fail once rolled back;
        undecided (inconclusive) while steps remain."""
        if self.status == "complete":
            # A dry run records nothing and moves no weight: it never says "complete" to a pipeline.
            return "inconclusive" if self.dry_run else "pass"
        if self.status == "rolled_back":
            return "fail"
        return "inconclusive"

    @property
    def final(self) -> bool:
        return self.status in ("complete", "rolled_back", "undecided")

    @property
    def to_announce(self) -> bool:
        """Whether this look is told (gate.analysis.announce, from either front door): the rollout
        ended (complete or rolled back) on the step verdict this look judged, for real. A look that
        read the deciding verdict from the store (it was told when judged), a step change, which
        judges nothing, and a dry run are not."""
        return self.status in ("complete", "rolled_back") and self.verdict is not None and not self.dry_run

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.outcome]

    def summary(self) -> str:
        of = len(self.steps)
        where = f"step {self.step} of {of} ({self.percent}%)" if self.step else "canary at 0%"
        said = {"ready": "not started: step 1 next",
                "started": f"started: {where}",
                "judging": f"{where}: judging",
                "advanced": f"advanced to {where}",
                "passed": f"{where} passed: step {self.next_step} ({self.steps[(self.next_step or 1) - 1]}%) next",
                "complete": f"complete: every step passed, the canary takes {self.percent}%",
                "rolled_back": "rolled back: the canary's traffic is 0",
                "undecided": f"{where}: undecided at the end of the step"}[self.status]
        return said

    def to_dict(self) -> dict:
        """`gate check --json`'s verdict with the rollout's outcome as `verdict` (a step's pass is
        not the release's: a client that reads only `verdict` or `exit_code` never promotes a
        half-done rollout) and the step's own in `rollout.step_verdict`."""
        base = self.verdict.to_dict() if self.verdict is not None else {
            "release": self.release, "deployed_at": iso(self.deployed_at) if self.deployed_at is not None else None,
            "evaluated_at": iso(self.at) if self.at is not None else None, "metrics": [], "notes": []}
        # Marked from the release's policy, whatever this look judged (an answer read from the
        # store judged nothing): a demo's pass never reads as a live one.
        marks = {"demo": self.demo} if self.demo is not None else {}
        if self.deploy is not None:
            marks["deploy"] = self.deploy
        step_verdict = self.verdict.verdict if self.verdict is not None else (self.recorded or {}).get("verdict")
        reason = base.get("reason") or (self.recorded or {}).get("reason") or ""
        return {**base, **marks, "verdict": self.outcome, "exit_code": self.exit_code, "final": self.final,
                "reason": f"rollout {self.summary()}" + (f". {reason}" if reason else ""),
                "rollout": {"status": self.status, "step": self.step, "of": len(self.steps), "percent": self.percent,
                            "steps": list(self.steps), "step_verdict": step_verdict, "next_step": self.next_step,
                            "notes": list(self.notes)}}


class Rollout:
    """The step machine of one release. `release` is the release's Analysis (its policy with a
    `rollout` section, its source, store and deploy time); `forward` the listener's action."""

    def __init__(self, release: Analysis, forward: Router, *, clock: Callable[[], float] = time.time,
                 dry_run: bool = False):
        spec = release.policy.rollout_or_refuse()
        if release.store is None:
            raise RolloutError("a rollout needs the store: it records every traffic change")
        self.release = release
        self.spec = spec
        self.step_policy = release.policy.step_policy()
        self.forward = forward
        self.store = release.store
        self.clock = clock
        self.dry_run = dry_run
        self.judged: Analysis | None = None  # the step's analysis of the last verdict judged (its report)
        self.evaluation: Evaluation | None = None  # what it judged then (the report draws it)
        self.deploy = release.deploy or self._register()

    def _register(self) -> Deploy:
        """An analysis opened without a registration (the bench, a test): its deploy registered
        as a front door would, so that every traffic change names it."""
        from gate.analysis import deploy_info

        r = self.release
        return register(self.store, r.release, r.deployed_at, int(self.clock()), r.policy, deploy_info(r.policy),
                        clock=self.clock)

    @property
    def name(self) -> str:
        return self.release.release

    def percent(self, step: int) -> int:
        return self.spec.steps[step - 1] if step else 0

    def weights(self, step: int) -> Weights:
        return step_weights(self.spec, self.percent(step))

    # -- the state, reconciled --------------------------------------------------------------

    def changes(self) -> list[dict]:
        """This deploy's traffic changes: those that name it (a re-deploy starts a new rollout)."""
        return self.store.deploy_traffic(self.deploy)

    def step_outcome(self, change: dict | None) -> dict | None:
        """The evaluation that decided the step `change` started (pass, fail, or a final
        inconclusive), from the store: that step's own judgement (its step, its window's start),
        within the step's lifetime. Never another verdict of the release that falls in the same
        minutes: a whole-release `gate check`, or a slow runner's verdict of the previous step
        recorded after this one started, judged other windows."""
        if change is None or change["step"] == OUT:
            return None
        start, end = change["set_at"], change["set_at"] + self.spec.step_lifetime
        for e in self.store.evaluations(self.name):
            payload = e["payload"] if isinstance(e["payload"], dict) else {}
            mine = (payload.get("rollout_step") == change["step"] and payload.get("deployed_at") == iso(start)
                    and belongs(payload, self.deploy))
            if mine and start < e["evaluated_at"] <= end and (e["verdict"] in ("pass", "fail") or e["final"]):
                return {"verdict": e["verdict"], "evaluated_at": e["evaluated_at"], "reason": e["reason"],
                        "final": e["final"]}
        return None

    def position(self) -> Position:
        """The store's last change, checked against the listener: a crash after a change reached
        the listener and before it was recorded is recognised and recorded; any other difference
        is someone else's change (RolloutError)."""
        changes = self.changes()
        for recorded in changes:
            self._set_by_these_steps(recorded)
        change = changes[-1] if changes else None
        outcome = self.step_outcome(change)
        if change is None:
            self._not_started()
            return Position(None, None)
        if change["step"] == OUT or self._complete(change, outcome):
            return Position(change, outcome)  # over: the listener is no longer the rollout's
        found = self.forward.weights()
        if same_split(change["weights"], found):
            return Position(change, outcome)
        for step in self._next_steps(change, outcome):
            if same_split(self.weights(step), found):
                return self._observed(step, change, outcome)
        if same_split(self.weights(OUT), found):
            # The safe state, whoever set it: a failed step whose verdict (or change to 0) the
            # store refused after the traffic went back, or a rollback by hand. Never judged on.
            return self._observed(OUT, change, {"verdict": "fail", "reason": (
                f"the canary was found at 0 with no recorded rollback of step {change['step']} (a failed step whose "
                "records the store refused, or a rollback by hand): the rollout is over")})
        raise RolloutError(
            f"rollout of {self.name!r}: the weights of {self.spec.forward_arn} were changed by someone else: "
            f"{describe_split(self.spec, found)}, where this rollout set {describe_split(self.spec, change['weights'])} "
            f"(step {change['step']}, {iso(change['set_at'])}). The rollout stops: find out who changed them, then "
            "`gate rollback` (or set them back and run again)")

    def _set_by_these_steps(self, change: dict) -> None:
        """A recorded change is this policy's: its steps are `rollout.steps`, its weights this
        policy's weights of its step. Another policy's changes (steps edited mid-rollout: P1's step
        1 at 5% judged as P2's step 1 of [45] would answer "complete, 45%" with the canary at 5%)
        are never read as this one's. A change to 0 (a rollback, maybe run with another policy
        file) is one whatever its steps, on these target groups."""
        step, steps = change["step"], change.get("steps")
        mine = step == OUT or (steps == list(self.spec.steps) and step <= len(steps))
        if mine and same_split(self.weights(step), change["weights"]):
            return
        raise RolloutError(
            f"rollout of {self.name!r}: deploy {self.deploy.number}'s traffic change of {iso(change['set_at'])} "
            f"(step {step} of rollout.steps {steps}: {describe_split(self.spec, change['weights'])}) was not made "
            f"by this policy's rollout (rollout.steps {list(self.spec.steps)} on these target groups): run the "
            "rollout with the policy it started with, or `gate rollback` and roll out a new deploy")

    def _not_started(self) -> None:
        """A deploy that set no traffic yet finds the canary at 0; any share it has is someone
        else's (a previous deploy's rollout still running, a change by hand): never adopted."""
        found = self.forward.weights()
        if same_split(self.weights(OUT), found):
            return
        raise RolloutError(
            f"rollout of {self.name!r}: deploy {self.deploy.number} (deployed at {iso(self.deploy.deployed_at)}) has "
            f"set no traffic yet, but {self.spec.forward_arn} sends {describe_split(self.spec, found)}: a previous "
            "deploy's rollout (a loop still running?) or a change by hand. The rollout does not start: stop the "
            "other rollout, `gate rollback` (the canary's traffic to 0), then run again")

    def _observed(self, step: int, change: dict, outcome: dict | None) -> Position:
        """The listener holds the next change this rollout would make, unrecorded (a run stopped
        after setting it, or someone set it by hand): recorded as observed now. The step's window
        starts at this observation, never earlier: when the weights were really set is unknown,
        and the minutes before could be the previous step's, healthy."""
        now = int(self.clock())
        what = "the canary at 0" if step == OUT else f"step {step}'s weights ({self.percent(step)}%)"
        note = (f"found {what} on the listener with no record of this rollout setting them (a run stopped "
                f"after setting them, or a change by hand): recorded as observed at {iso(now)}"
                + ("" if step == OUT else "; the step is judged from then"))
        if self.dry_run:
            return Position(self._change(step, outcome, before=change["weights"], set_at=now, recovered=True),
                            None, [note])
        return Position(self._record(step, outcome, before=change["weights"], recovered=True, set_at=now), None,
                        [note])

    def _complete(self, change: dict, outcome: dict | None) -> bool:
        return change["step"] == len(self.spec.steps) and (outcome or {}).get("verdict") == "pass"

    def _next_steps(self, change: dict, outcome: dict | None) -> list[int]:
        """The changes this rollout would have made after `change`, given the step's outcome."""
        verdict = (outcome or {}).get("verdict")
        if verdict == "fail":
            return [OUT]
        if verdict == "pass" and change["step"] < len(self.spec.steps):
            return [change["step"] + 1]
        return []

    # -- changes ---------------------------------------------------------------------------

    def _change(self, step: int, allowed_by: dict | None, *, before: Weights, recovered: bool = False,
                set_at: int | None = None, by: str = "rollout") -> dict:
        change = {"step": step, "percent": self.percent(step), "steps": list(self.spec.steps),
                  "weights": self.weights(step), "before": before,
                  "set_at": int(set_at if set_at is not None else self.clock()), "by": by,
                  "allowed_by": allowed_by or {"verdict": "start", "reason": "the rollout starts"},
                  "forward": self.spec.forward_arn, DEPLOY: self.deploy.number}
        if recovered:
            change["recovered"] = True  # the listener had it, the store did not: set_at is when it was seen
        return change

    def _record(self, step: int, allowed_by: dict | None, **options: Any) -> dict:
        change = self._change(step, allowed_by, **options)
        self.store.record_traffic(self.name, change)
        return change

    def _set(self, step: int, allowed_by: dict | None, before: Weights) -> dict | None:
        """Set the weights of `step`, then record the change (after the listener took it)."""
        if self.dry_run:
            return None
        self.forward.set(self.weights(step))
        return self._record(step, allowed_by, before=before)

    def _look(self, status: Status, step: int, **kwargs: Any) -> Look:
        source = self.release.policy.source.type
        return Look(self.name, status, step, list(self.spec.steps), self.percent(step),
                    at=int(self.clock()), deployed_at=self.release.deployed_at, deploy=self.deploy.number,
                    demo=source if source in DEMO_SOURCES else None, dry_run=self.dry_run, **kwargs)

    def advance(self, step: int) -> Look:
        """Move to `step` (1: start), if the store allows it: the rollout is not started (step 1),
        or the current step passed (its successor). Asking again for the step already taken
        changes nothing (a retried call)."""
        at = self.position()
        if at.step == step and at.started:
            return self._look("advanced", step, recorded=at.outcome, notes=["already at this step"])
        allowed = (not at.started and step == 1) or (at.step + 1 == step and (at.outcome or {}).get("verdict") == "pass")
        if not allowed or not 1 <= step <= len(self.spec.steps):
            held = ("over (the canary's traffic was sent back to production)" if at.started and at.step == OUT
                    else f"at step {at.step}" + (f" ({at.outcome['verdict']})" if at.outcome else ", undecided"))
            raise RolloutError(f"rollout of {self.name!r}: step {step} is not allowed now: the rollout is {held}; "
                               "only a passed step moves to the next one")
        self._only_route()
        before = self.forward.weights() if not at.started else at.change["weights"]
        self._set(step, at.outcome, before)
        return self._look("started" if step == 1 else "advanced", step, recorded=at.outcome,
                          notes=at.notes + (["dry run: nothing changed"] if self.dry_run else []))

    def _only_route(self) -> None:
        """A canary target group also forwarded to elsewhere would keep its traffic there whatever
        the steps (and after a rollback): such a set-up is refused before any step."""
        elsewhere = self.forward.other_routes()
        if elsewhere:
            raise RolloutError(
                f"rollout of {self.name!r}: rollout.canary_target_group (or rollout.baseline_target_group) is also "
                f"forwarded to by {', '.join(elsewhere[:3])}, besides {self.spec.forward_arn}: its traffic there would "
                "not follow the steps, and a rollback would leave it serving. Forward to it from the steered action "
                "only, then run again")

    def roll_back(self, allowed_by: dict) -> dict | None:
        """The canary's share to 0 at once (and the baseline's), production to 100."""
        before = self.forward.weights()
        return self._set(OUT, allowed_by, before)

    # -- judging ---------------------------------------------------------------------------

    def step_analysis(self, change: dict, *, live: bool = False) -> Analysis:
        """The step judged as a canary of its own: its window from the change, its lifetime
        step_lifetime, the deploy's reference. `live`: the look is now, so the canary target
        group's health read now is its health at the look (a look at a past moment has none)."""
        r = self.release
        return Analysis(self.step_policy, r.source, r.release, change["set_at"], canary=r.canary,
                        baseline=r.baseline, store=None if self.dry_run else StepRecords(r.store), judge=r.judge,
                        cache=KnownReference(r), rollout_step=change["step"], deploy=self.deploy,
                        targets=self.forward.canary_targets if live else None)

    def look(self, now: int) -> Look:
        """Judge the current step at `now`; a fail sends the canary's share to 0 at once. Starts
        nothing and advances nothing (`advance`): a passed step answers its successor."""
        at = self.position()
        if not at.started:
            return self._look("ready", OUT, next_step=1)
        if at.change.get("by") == "promote":
            return self._look("complete", at.step, notes=["promoted"])
        if at.step == OUT:
            return self._look("rolled_back", OUT, recorded=at.change.get("allowed_by"), notes=at.notes)
        verdict = None
        outcome = at.outcome
        if outcome is None and int(now) > at.change["set_at"]:
            if now > self.clock() + FUTURE_SKEW:
                # A look ahead of the clock would judge minutes not yet lived and record a verdict
                # dated in the next step's window (a direct Lambda invoke may carry any `now`).
                raise RolloutError(f"rollout of {self.name!r}: now {iso(int(now))} is in the future "
                                   f"(the clock says {iso(int(self.clock()))})")
            live = now >= self.clock() - self.step_policy.interval
            self.judged = self.step_analysis(at.change, live=live)
            self.evaluation = self.judged.evaluation(now)
            verdict = self.evaluation.verdict
            if verdict.decisive or verdict.final:
                outcome = {"verdict": verdict.verdict, "evaluated_at": verdict.evaluated_at,
                           "reason": verdict.reason, "final": verdict.final}
            refused = getattr(self.judged.store, "refused", None)
            if refused is not None:
                self._unrecorded(at.step, outcome, refused)
        seen = self._after(at, outcome, verdict)
        seen.notes[:0] = at.notes
        return seen

    def _after(self, at: Position, outcome: dict | None, verdict: Verdict | None) -> Look:
        step = at.step
        decided = (outcome or {}).get("verdict")
        if decided == "fail":
            self._send_back(step, outcome)
            return self._look("rolled_back", OUT, verdict=verdict, recorded=outcome,
                              notes=["dry run: the weights were left as they are"] if self.dry_run else [])
        if decided == "pass" and step == len(self.spec.steps):
            return self._look("complete", step, verdict=verdict, recorded=outcome)
        if decided == "pass":
            return self._look("passed", step, verdict=verdict, recorded=outcome, next_step=step + 1)
        if outcome is not None:  # a final inconclusive (on_undecided: inconclusive): hold, a person decides
            return self._look("undecided", step, verdict=verdict, recorded=outcome)
        return self._look("judging", step, verdict=verdict)

    def _unrecorded(self, step: int, outcome: dict | None, refused: StoreError) -> None:
        """The store refused the step's verdict: a fail still sends the traffic back first (the
        safety action never waits on a record), then the store's error is raised (could not
        judge, exit 4). The next look finds the canary at 0 and records the rollback as observed
        (`position`) if the change to 0 could not be recorded either."""
        if (outcome or {}).get("verdict") != "fail":
            raise refused
        unrecorded = ""
        try:
            self._send_back(step, outcome)
        except RolloutError as e:  # the load balancer refused too: the canary keeps its share
            raise RolloutError(f"{e} (the store could not record the step's verdict either: {refused})") from None
        except StoreError as e:
            unrecorded = f", nor the change to 0 ({e})"
        raise StoreError(
            f"rollout of {self.name!r}: step {step} FAILED ({outcome.get('reason', '')[:200]}) and the canary's "
            f"traffic was sent back to 0, but the store could not record the verdict ({refused}){unrecorded}. "
            "The next look finds the canary at 0 and records the rollback") from None

    def _send_back(self, step: int, outcome: dict) -> None:
        """A failed step's rollback; one the load balancer refuses says what happened and what is
        left: the step FAILED, the canary still takes its share (could not judge, exit 4: the
        pipeline stops; the next look sends it back again)."""
        try:
            self.roll_back(outcome)
        except ActionError as e:
            share = canary_share(self.spec, self.weights(step))
            raise RolloutError(
                f"rollout of {self.name!r}: step {step} FAILED ({outcome.get('reason', '')[:200]}), but sending the "
                f"canary's traffic back to 0 failed: {e}. The canary still takes {share:g}% of the traffic: run "
                f"`gate rollback {self.name} --policy <this policy>` (or set {self.spec.forward_arn}'s weights by "
                "hand) now") from None

    def tick(self, now: int) -> Look:
        """One look, then the next step if it allows one: the command line's unit of work."""
        seen = self.look(now)
        if seen.next_step is None:
            return seen
        moved = self.advance(seen.next_step)
        moved.verdict, moved.recorded = seen.verdict, seen.recorded
        return moved


def rollback_traffic(policy: Any, release: str, store: Any, *, by: str = "rollback") -> list:
    """`gate rollback` / `gate promote` of a policy with a rollout: the step (gate.actions.Step)
    that sends the canary's (and the baseline's) traffic back to production, recorded in the store
    as the current deploy's change to 0. When the listener already sends them nothing, the step
    only records that change (unless the deploy's last one is already at 0): the deploy's rollout
    is over, so a loop still running (a Step Functions SetStep) can never start it again.

    The step reads the listener back after writing it: it succeeds only when the canary's and
    baseline's target groups are seen at weight 0, so the groups behind them (scaled down after
    it, gate.actions) never leave the load balancer forwarding to an empty group (503s). A write
    that fails or cannot be confirmed stops the action there, nothing scaled, saying the shares."""
    from gate.actions import Step
    from gate.traffic import ForwardFault, forward_of

    spec = policy.rollout
    forward = forward_of(policy)
    target = step_weights(spec, 0)
    try:
        found: Weights | None = forward.weights()
        unread = ""
    except ForwardFault as e:
        if by != "rollback":  # a promotion waits for a listener it can read
            raise
        # The safety action does not stop at an AWS fault on this first read (denied, throttled, a
        # 5xx, unreachable): the step reads the listener again when it applies. A listener read
        # fine that does not hold the policy's target groups is refused here (ActionError), as is
        # any fault that has not cleared by then.
        found, unread = None, str(e)
    registered = store.release(release) if store is not None else None
    deploy = deploy_of(registered) if registered is not None else None  # None: the change is no deploy's
    moved = found is None or not same_split(target, found)
    if not moved and (deploy is None or _over(store.deploy_traffic(deploy))):
        return []
    before = describe_split(spec, found) if found is not None else f"unknown: the listener could not be read ({unread})"
    detail = {"before": before, "after": describe_split(spec, target)}

    def stopped(what: str, weights: Weights | None) -> ActionError:
        if weights is None:
            shares = "the canary's and baseline's shares of the traffic are unknown"
        else:
            shares = f"the canary takes {canary_share(spec, weights):g}% of the traffic"
            if spec.baseline_target_group:
                baseline = weights.get(spec.baseline_target_group, 0)
                total = sum(weights.values())
                shares += f" and the baseline {100.0 * baseline / total if total else 0.0:g}%"
        return ActionError(f"{what}: {shares}; nothing was scaled down (their target groups would answer 503s): run "
                           f"`gate {by}` again or set {spec.forward_arn}'s weights by hand")

    def apply() -> None:
        if moved:
            try:
                current = forward.weights() if found is None else found
            except ForwardFault as e:
                raise stopped(f"the listener still could not be read ({e})", None) from None
            try:
                forward.set(target)
            except ForwardFault as e:
                raise stopped(f"could not send the canary's traffic back to production ({e})", current) from None
            try:
                now = forward.weights()
            except ForwardFault as e:
                raise stopped(f"the canary's traffic was sent back to production but could not be confirmed ({e})",
                              None) from None
            if not same_split(target, now):
                raise stopped(f"the listener was written but reads {describe_split(spec, now)}", now)
        if store is not None:
            owner = {DEPLOY: deploy.number} if deploy is not None else {}
            store.record_traffic(release, {"step": OUT, "percent": 0, "steps": list(spec.steps), "weights": target,
                                           "before": found, "set_at": int(time.time()), "by": by,
                                           "allowed_by": {"verdict": by, "reason": f"gate {by}"},
                                           "forward": spec.forward_arn, **owner})

    change = (f"send the canary's traffic back to production ({detail['before']} -> {detail['after']})" if moved
              else f"record that deploy {deploy.number}'s rollout is over (the canary already takes no traffic)")
    return [Step(spec.forward_arn.split(":")[-1], change, detail, apply)]


def rollback_traffic_planner(policy: Any, release: str, store: Any, *, by: str) -> Callable[[], list] | None:
    """A policy with a rollout section: the planner of the step that sends its traffic back to
    production (before the canary scales down, which would leave the ALB forwarding to nothing).
    None without a policy or its rollout section."""
    if policy is None or policy.rollout is None:
        return None
    return lambda: rollback_traffic(policy, release, store, by=by)


def _over(changes: list[dict]) -> bool:
    """Whether a deploy's last traffic change sent the canary's traffic back to production."""
    return bool(changes) and changes[-1]["step"] == OUT


def watch(machine: Rollout, wait: Callable[[int], None], on_look: Callable[[Look], None] | None = None) -> Look:
    """Look (and advance) every interval until the rollout is over: complete, rolled back, or
    undecided at the end of a step. `wait(t)` sleeps until the moment t."""
    interval = machine.step_policy.interval
    while True:
        now = int(machine.clock())
        seen = machine.tick(now)
        if on_look is not None:
            on_look(seen)
        if seen.final or machine.dry_run:
            return seen
        wait(now + interval)
