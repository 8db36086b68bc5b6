"""Acting on a verdict: promote the canary's release to production, or roll the canary back.

* promote: point the production Auto Scaling group at the canary's launch template version and
  roll it out, either with an instance refresh (rolling, with checkpoints; the default) or with a
  capacity swap (launch as many new instances as there are old ones, wait until they are in
  service, terminate the old ones), then scale the canary and baseline groups to zero: with a
  refresh, only once it is over and Successful (a later run does it, or the same run with
  `wait`), so the canary stays up to roll back to. While the refresh runs, a run says so (not
  "nothing to do"); after a refresh that failed, was cancelled or rolled back, promote refuses
  (a person looks first) unless `force`.
* rollback: scale the canary (and baseline) groups to zero; production is left untouched.

Both read the groups' current state and plan only what is still missing, so running them again
is safe (the second run plans nothing). `dry_run` returns the plan without applying it. Every
run that applies something is recorded in the store, a failed one with its error and the steps
it had applied.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import ValidationError

from gate.aws import denied, error_code, error_message, make_client
from gate.errors import GateError, validation_problems
from gate.policy import Actions, render_scope

Strategy = Literal["refresh", "swap"]
ACTIVE_REFRESH = {"Pending", "InProgress", "Cancelling", "RollbackInProgress", "Baking"}
RUNNING_REFRESH = {"Pending", "InProgress", "Baking"}  # going on towards Successful
FAILED_REFRESH = {"Failed", "Cancelled", "RollbackSuccessful", "RollbackFailed"}
GONE = {"Terminating", "Terminating:Wait", "Terminating:Proceed", "Terminated", "Detaching", "Detached"}


class ActionError(GateError):
    """An action could not be planned or applied (missing group, refused call...)."""


class RefreshFailed(ActionError):
    """The production group's last instance refresh failed, was cancelled or rolled back: promote
    does not start another one by itself (`force`)."""


@dataclass(frozen=True)
class Groups:
    canary: str
    baseline: str | None = None
    production: str | None = None

    def to_dict(self) -> dict:
        return {"production": self.production, "canary": self.canary, "baseline": self.baseline}


@dataclass(frozen=True)
class Refresh:
    """Instance refresh preferences: checkpoints pause the rollout so alarms can stop it."""

    checkpoints: tuple[int, ...] = (20, 50, 100)
    checkpoint_delay: int = 600
    min_healthy: int = 90

    def preferences(self) -> dict:
        return {"MinHealthyPercentage": self.min_healthy, "SkipMatching": True,
                "CheckpointPercentages": list(self.checkpoints), "CheckpointDelay": self.checkpoint_delay}


@dataclass
class Step:
    group: str
    change: str  # what the step does, for people
    detail: dict
    apply: Callable[[], None] = field(repr=False, compare=False)

    def to_dict(self) -> dict:
        return {"group": self.group, "change": self.change, **self.detail}


@dataclass
class ActionResult:
    """What a promote or rollback did, or with `dry_run` would do: its steps, notes and the
    production group's refresh still going on."""

    release: str
    action: str
    dry_run: bool
    groups: Groups
    steps: list[Step]
    notes: list[str] = field(default_factory=list)
    # The production group's instance refresh still going on (promote left the canary and the
    # baseline up until it succeeds): {"id", "status", "percent"}; None when there is none.
    refresh: dict | None = None

    @property
    def in_progress(self) -> bool:
        return self.refresh is not None

    @property
    def nothing_to_do(self) -> bool:
        return not self.steps and not self.in_progress

    def to_dict(self) -> dict:
        return {"release": self.release, "action": self.action, "dry_run": self.dry_run,
                "nothing_to_do": self.nothing_to_do, "in_progress": self.in_progress,
                "refresh": self.refresh, "groups": self.groups.to_dict(),
                "changes": [s.to_dict() for s in self.steps], "notes": list(self.notes)}


def action_error(call: str, error: Exception) -> ActionError:
    """An AWS call that failed, as one line naming the call (and what to fix when it says)."""
    from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError

    if isinstance(error, ClientError):
        if denied(error):
            return ActionError(f"AWS refused {call} ({error_code(error)}): the credentials need permission for it")
        return ActionError(f"{call} failed ({error_code(error)}): {error_message(error)}")
    if isinstance(error, NoCredentialsError):
        return ActionError("no AWS credentials found (environment, profile or role)")
    if isinstance(error, NoRegionError):
        return ActionError("no AWS region: set AWS_DEFAULT_REGION (or actions.region)")
    return ActionError(f"{call} failed: {error}")


class AutoScaling:
    """The few Auto Scaling and EC2 calls the actions need, with one-line errors."""

    def __init__(self, autoscaling: Any, ec2: Any, sleep: Callable[[float], None] = time.sleep,
                 poll_seconds: float = 15.0, timeout: float = 900.0,
                 clock: Callable[[], float] = time.monotonic, refresh_poll_seconds: float = 30.0):
        self.autoscaling = autoscaling
        self.ec2 = ec2
        self.sleep = sleep
        self.clock = clock
        self.refresh_poll_seconds = refresh_poll_seconds
        self.poll_seconds = poll_seconds
        self.timeout = timeout
        self._versions: dict[tuple[str, str], int] = {}

    def call(self, client: Any, operation: str, **kwargs) -> dict:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(client, operation)(**kwargs)
        except (ClientError, BotoCoreError) as e:
            raise action_error(operation, e) from None

    def groups(self, names: list[str]) -> dict[str, dict]:
        found = {}
        pages = self.autoscaling.get_paginator("describe_auto_scaling_groups")
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            for page in pages.paginate(AutoScalingGroupNames=names):
                for g in page["AutoScalingGroups"]:
                    found[g["AutoScalingGroupName"]] = g
        except (ClientError, BotoCoreError) as e:
            raise action_error("describe_auto_scaling_groups", e) from None
        missing = [n for n in names if n not in found]
        if missing:
            raise ActionError(f"Auto Scaling group not found: {', '.join(missing)}")
        return found

    def group(self, name: str) -> dict:
        return self.groups([name])[name]

    def version_number(self, template_id: str, version: str) -> int:
        """'3', '$Latest' or '$Default' -> 3 (a group must never follow '$Latest' blindly)."""
        if version.isdigit():
            return int(version)
        key = (template_id, version)
        if key not in self._versions:
            answer = self.call(self.ec2, "describe_launch_template_versions",
                               LaunchTemplateId=template_id, Versions=[version])
            versions = answer.get("LaunchTemplateVersions", [])
            if not versions:
                raise ActionError(f"launch template {template_id} has no version {version}")
            self._versions[key] = int(versions[0]["VersionNumber"])
        return self._versions[key]

    def template(self, group: dict) -> tuple[str, int] | None:
        """The group's launch template id and concrete version; None if it has none."""
        spec = group.get("LaunchTemplate") or (
            (group.get("MixedInstancesPolicy") or {}).get("LaunchTemplate", {}).get("LaunchTemplateSpecification")
        )
        if not spec:
            return None
        template_id = spec.get("LaunchTemplateId")
        if not template_id:
            answer = self.call(self.ec2, "describe_launch_templates",
                               LaunchTemplateNames=[spec["LaunchTemplateName"]])
            template_id = answer["LaunchTemplates"][0]["LaunchTemplateId"]
        return template_id, self.version_number(template_id, spec.get("Version") or "$Default")

    def instance_on(self, instance: dict, target: tuple[str, int]) -> bool:
        spec = instance.get("LaunchTemplate") or {}
        if spec.get("LaunchTemplateId") != target[0]:
            return False
        return self.version_number(target[0], spec.get("Version") or "$Default") == target[1]

    def last_refresh(self, name: str) -> dict | None:
        """The group's latest instance refresh (AWS lists the newest first), None if it never had one."""
        answer = self.call(self.autoscaling, "describe_instance_refreshes", AutoScalingGroupName=name)
        refreshes = answer.get("InstanceRefreshes", [])
        if refreshes and all(r.get("StartTime") for r in refreshes):
            refreshes = sorted(refreshes, key=lambda r: r["StartTime"], reverse=True)
        active = [r for r in refreshes if r.get("Status") in ACTIVE_REFRESH]
        return (active or refreshes or [None])[0]

    def refresh(self, name: str, refresh_id: str) -> dict:
        answer = self.call(self.autoscaling, "describe_instance_refreshes", AutoScalingGroupName=name,
                           InstanceRefreshIds=[refresh_id])
        found = [r for r in answer.get("InstanceRefreshes", []) if r.get("InstanceRefreshId") == refresh_id]
        if not found:
            raise ActionError(f"instance refresh {refresh_id} of {name} not found")
        return found[0]


def refresh_state(refresh: dict) -> dict:
    return {"id": refresh.get("InstanceRefreshId"), "status": refresh.get("Status"),
            "percent": refresh.get("PercentageComplete", 0)}


# -- planning ------------------------------------------------------------------------------


def _scale_to_zero(aws: AutoScaling, name: str, group: dict) -> list[Step]:
    if group["DesiredCapacity"] == 0 and group["MinSize"] == 0:
        return []
    detail = {"before": {"min": group["MinSize"], "desired": group["DesiredCapacity"]},
              "after": {"min": 0, "desired": 0}}
    return [Step(name, f"scale {name} to zero (desired {group['DesiredCapacity']} -> 0)", detail,
                 lambda: aws.call(aws.autoscaling, "update_auto_scaling_group",
                                  AutoScalingGroupName=name, MinSize=0, DesiredCapacity=0))]


def _set_template(aws: AutoScaling, name: str, group: dict, target: tuple[str, int]) -> list[Step]:
    current = aws.template(group)
    if current == target:
        return []
    spec = {"LaunchTemplateId": target[0], "Version": str(target[1])}
    if group.get("MixedInstancesPolicy"):
        kwargs = {"MixedInstancesPolicy": {"LaunchTemplate": {"LaunchTemplateSpecification": spec}}}
    else:
        kwargs = {"LaunchTemplate": spec}
    before = f"{current[0]} v{current[1]}" if current else "a launch configuration"
    return [Step(name, f"point {name} at {target[0]} v{target[1]} (was {before})",
                 {"before": before, "after": f"{target[0]} v{target[1]}"},
                 lambda: aws.call(aws.autoscaling, "update_auto_scaling_group",
                                  AutoScalingGroupName=name, **kwargs))]


def _live(group: dict) -> list[dict]:
    return [i for i in group.get("Instances", []) if i.get("LifecycleState") not in GONE]


class _Refreshes:
    """The production group's latest instance refresh, read once per plan (and only if needed)."""

    def __init__(self, aws: AutoScaling, name: str):
        self.aws, self.name = aws, name
        self._last: dict | None = None
        self._read = False

    @property
    def last(self) -> dict | None:
        if not self._read:
            self._last, self._read = self.aws.last_refresh(self.name), True
        return self._last

    @property
    def known(self) -> bool:
        """Read already (the plan needed it): a plan never reads it only to report it."""
        return self._read

    @property
    def active(self) -> dict | None:
        last = self.last
        return last if last is not None and last.get("Status") in ACTIVE_REFRESH else None


def _refresh(aws: AutoScaling, name: str, group: dict, target: tuple[str, int], refresh: Refresh,
             notes: list[str], refreshes: _Refreshes, force: bool) -> list[Step]:
    old = [i for i in _live(group) if not aws.instance_on(i, target)]
    if not old:
        return []
    if refreshes.active is not None:
        return []  # the plan reports it (ActionResult.refresh)
    last = refreshes.last
    if last is not None and last.get("Status") in FAILED_REFRESH:
        # A refresh of this group failed, was cancelled or rolled back, and production does not
        # run the release: starting another one by itself would hide that. A person looks first.
        reason = f" ({last['StatusReason']})" if last.get("StatusReason") else ""
        if not force:
            raise RefreshFailed(
                f"the last instance refresh of {name}, {last.get('InstanceRefreshId')}, ended "
                f"{last['Status']}{reason}; {len(old)} instance(s) still run the old version. Find out why, "
                f"then promote --force to start a new refresh (or roll back)")
        notes.append(f"--force: a new instance refresh replaces {last.get('InstanceRefreshId')}, "
                     f"which ended {last['Status']}")
    preferences = refresh.preferences()
    detail = {"old_instances": len(old), "preferences": preferences}

    def start() -> None:
        answer = aws.call(aws.autoscaling, "start_instance_refresh", AutoScalingGroupName=name,
                          Strategy="Rolling", Preferences=preferences)
        detail["instance_refresh_id"] = answer.get("InstanceRefreshId")

    return [Step(name, f"start an instance refresh of {name} ({len(old)} old instances, "
                       f"checkpoints at {', '.join(map(str, refresh.checkpoints))}%)", detail, start)]


def _rolled_out(aws: AutoScaling, group: dict, target: tuple[str, int], planned: list[Step],
                refreshes: _Refreshes) -> bool:
    """Production runs the release: nothing left to change, no old instance, no refresh going on
    (one at its last checkpoint or baking has no old instance left but is not over)."""
    return (not planned and not any(not aws.instance_on(i, target) for i in _live(group))
            and refreshes.active is None)


def _swap(aws: AutoScaling, name: str, group: dict, target: tuple[str, int]) -> list[Step]:
    live = _live(group)
    old = [i for i in live if not aws.instance_on(i, target)]
    if not old:
        return []
    new = len(live) - len(old)
    missing = max(0, len(old) - new)
    steps = []
    if missing:
        desired = group["DesiredCapacity"] + missing
        max_size = max(group["MaxSize"], desired)
        steps.append(Step(name, f"scale {name} out by {missing} (desired {group['DesiredCapacity']} -> {desired}) "
                                f"to launch {target[0]} v{target[1]} instances",
                          {"before": {"desired": group["DesiredCapacity"], "max": group["MaxSize"]},
                           "after": {"desired": desired, "max": max_size}},
                          lambda: aws.call(aws.autoscaling, "update_auto_scaling_group",
                                           AutoScalingGroupName=name, MaxSize=max_size, DesiredCapacity=desired)))
    steps.append(Step(name, f"once {len(old)} new instances are in service, terminate the {len(old)} old ones "
                            f"of {name} (capacity back to {group['DesiredCapacity'] + missing - len(old)})",
                      {"old_instances": sorted(i["InstanceId"] for i in old)},
                      lambda: _replace_old(aws, name, {i["InstanceId"] for i in old}, group["MaxSize"])))
    return steps


def _replace_old(aws: AutoScaling, name: str, old: set[str], max_size: int) -> None:
    """Wait until as many instances as there are old ones are in service besides them (the group
    launches new ones from its new template), then terminate the old ones."""
    deadline = time.monotonic() + aws.timeout
    while True:
        group = aws.group(name)
        ready = [i for i in _live(group) if i["InstanceId"] not in old
                 and i.get("LifecycleState") == "InService" and i.get("HealthStatus", "Healthy") == "Healthy"]
        if len(ready) >= len(old):
            break
        if time.monotonic() >= deadline:
            raise ActionError(f"{name}: only {len(ready)} of {len(old)} new instances in service after "
                              f"{aws.timeout:g}s; run the promote again to continue")
        aws.sleep(aws.poll_seconds)
    for instance in _live(group):
        if instance["InstanceId"] in old:
            aws.call(aws.autoscaling, "terminate_instance_in_auto_scaling_group",
                     InstanceId=instance["InstanceId"], ShouldDecrementDesiredCapacity=True)
    group = aws.group(name)
    if group["MaxSize"] > max_size and group["DesiredCapacity"] <= max_size:
        aws.call(aws.autoscaling, "update_auto_scaling_group", AutoScalingGroupName=name, MaxSize=max_size)


def plan_promote(aws: AutoScaling, groups: Groups, strategy: Strategy = "refresh",
                 refresh: Refresh = Refresh(), notes: list[str] | None = None, *, force: bool = False,
                 state: dict | None = None, traffic: Callable[[], list[Step]] | None = None) -> list[Step]:
    """The steps still missing. `state["refresh"]` is set to the production group's refresh when
    one is going on (the canary and baseline wait for it). `traffic()`: the steps that send a
    rollout's traffic back to production (gate.rollout), planned once production runs the release
    and before the canary and baseline scale down (an empty target group would answer 503s)."""
    notes = notes if notes is not None else []
    state = state if state is not None else {}
    if not groups.production:
        raise ActionError("promote needs the production group (--production-asg or "
                          "actions.production_asg)")
    if groups.production in (groups.canary, groups.baseline):
        raise ActionError(f"the production group {groups.production!r} is also the canary or baseline group")
    names = [n for n in (groups.production, groups.canary, groups.baseline) if n]
    found = aws.groups(names)
    target = aws.template(found[groups.canary])
    if target is None:
        raise ActionError(f"the canary group {groups.canary!r} has no launch template to promote")
    production = found[groups.production]
    steps = _set_template(aws, groups.production, production, target)
    refreshes = _Refreshes(aws, groups.production)
    if strategy == "refresh":
        steps += _refresh(aws, groups.production, production, target, refresh, notes, refreshes, force)
    else:
        steps += _swap(aws, groups.production, production, target)
    scale_down = [step for name in (groups.canary, groups.baseline) if name
                  for step in _scale_to_zero(aws, name, found[name])]
    waiting = scale_down and strategy == "refresh" and not _rolled_out(aws, production, target, steps, refreshes)
    if strategy == "refresh" and not steps and refreshes.known and refreshes.active is not None:
        state["refresh"] = refresh_state(refreshes.active)  # promote is not over: say so
    if waiting:
        # The refresh goes on in AWS and may fail or be cancelled: keep the canary (and the
        # baseline) until production runs the release, the rerun after the refresh scales them.
        if "refresh" not in state:
            notes.append(f"{', '.join(s.group for s in scale_down)} scaled to zero once the instance refresh "
                         f"of {groups.production} is Successful: run promote again then (or promote --wait)")
        scale_down = []
    moved = traffic() if traffic is not None and not waiting else []
    return steps + moved + scale_down


def plan_rollback(aws: AutoScaling, groups: Groups, traffic: list[Step] = ()) -> list[Step]:
    """`traffic`: a rollout's traffic sent back to production first (gate.rollout), then the scaling."""
    names = [n for n in (groups.canary, groups.baseline) if n]
    state = aws.groups(names)
    return [*traffic, *(step for name in names for step in _scale_to_zero(aws, name, state[name]))]


def run(release: str, action: str, groups: Groups, steps: list[Step], *, dry_run: bool,
        store: Any = None, notes: list[str] | None = None, strategy: str | None = None,
        refresh: dict | None = None) -> ActionResult:
    """Apply the planned steps in order (unless dry_run) and record what was done."""
    outcome = ActionResult(release, action, dry_run, groups, steps, list(notes or []), refresh)
    if dry_run:
        return outcome
    applied: list[Step] = []
    with _recorded(outcome, store, strategy, applied):
        _apply(steps, applied)
    return outcome


def _apply(steps: list[Step], applied: list[Step]) -> None:
    for step in steps:
        step.apply()
        applied.append(step)


class _recorded:
    """Records the run in the store when it ends; a run that stopped half-way with its error and
    the steps it had applied (it changed some groups: say which, and why it stopped)."""

    def __init__(self, outcome: ActionResult, store: Any, strategy: str | None, applied: list[Step]):
        self.outcome, self.store, self.strategy, self.applied = outcome, store, strategy, applied

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> bool:
        if self.store is None or (kind is not None and not issubclass(kind, Exception)):
            return False
        detail = self.outcome.to_dict()
        detail.pop("release")
        if self.strategy:
            detail["strategy"] = self.strategy
        if error is not None:
            detail.update(error=str(error) or kind.__name__, applied=[s.to_dict() for s in self.applied])
        self.store.record_event(self.outcome.release, self.outcome.action, detail)
        return False


def promote_settings(policy: Any = None, **given: str | None) -> Actions:
    """How promote rolls out: the policy's `actions:` (or their defaults), the command line's
    `strategy`, `checkpoints` ("20,50,100") and `checkpoint_delay` ("10m") over them, validated
    as the policy's are."""
    settings = policy.actions if policy is not None else Actions()
    chosen = {k: v for k, v in given.items() if v is not None}
    if "checkpoints" in chosen:
        try:
            chosen["checkpoints"] = tuple(int(p) for p in chosen["checkpoints"].split(","))
        except ValueError:
            raise ActionError(f"--checkpoints: increasing percentages ending at 100 (got {given['checkpoints']!r})") from None
    try:
        return Actions.model_validate({**settings.model_dump(), **chosen})
    except ValidationError as e:
        raise ActionError(validation_problems(e, root="promote")) from None


def clients(policy: Any = None) -> AutoScaling:
    """Auto Scaling and EC2 clients, in the policy's region (`actions.region`, else a CloudWatch
    source's `region`) if it names one."""
    region = policy.aws_region if policy is not None else None
    try:
        return AutoScaling(make_client("autoscaling", region), make_client("ec2", region))
    except GateError as e:
        raise ActionError(str(e)) from None


def resolve_groups(release: str, policy: Any = None, *, production: str | None = None,
                   canary: str | None = None, baseline: str | None = None) -> Groups:
    """The groups to act on: explicit names first, then the policy's `actions:` (`production_asg`,
    `canary_asg`, `baseline_asg`), then, for a CloudWatch policy, its canary and baseline scopes
    (there they are the Auto Scaling group names). `{release}` is filled."""
    named = policy.actions if policy is not None else Actions()
    scopes = policy.scopes() if policy is not None and policy.source.type == "cloudwatch" else (None, None)
    canary = canary or named.canary_asg or scopes[0]
    if baseline is None:
        baseline = named.baseline_asg or scopes[1]
    production = production or named.production_asg
    if not canary:
        raise ActionError("which group is the canary? give --canary-asg (or --policy with "
                          "actions.canary_asg)")
    names = {}
    for role, name in (("production", production), ("canary", canary), ("baseline", baseline)):
        if name is None:
            continue
        name = render_scope(str(name), release)
        if not name.strip() or len(name) > 255 or any(ord(c) < 32 for c in name):
            raise ActionError(f"{role} group: {name!r} is not an Auto Scaling group name")
        names[role] = name
    return Groups(canary=names["canary"], baseline=names.get("baseline"), production=names.get("production"))


def promote(release: str, groups: Groups, aws: AutoScaling, *, strategy: Strategy = "refresh",
            refresh: Refresh = Refresh(), dry_run: bool = False, store: Any = None, force: bool = False,
            wait: bool = False, timeout: float = 7200.0,
            on_progress: Callable[[dict], None] | None = None,
            traffic: Callable[[], list[Step]] | None = None) -> ActionResult:
    """Plan and apply what promote still misses. With `wait` (and a refresh), also wait for the
    production group's instance refresh to end (at most `timeout` seconds), then scale the canary
    and baseline down: a refresh that does not succeed, or does not end in time, is an
    ActionError (recorded with the steps applied), and the canary and baseline stay up."""
    notes: list[str] = []
    state: dict = {}
    steps = plan_promote(aws, groups, strategy, refresh, notes, force=force, state=state, traffic=traffic)
    if not wait or dry_run or strategy != "refresh":
        return run(release, "promote", groups, steps, dry_run=dry_run, store=store, notes=notes,
                   strategy=strategy, refresh=state.get("refresh"))
    outcome = ActionResult(release, "promote", False, groups, list(steps), notes, state.get("refresh"))
    applied: list[Step] = []
    with _recorded(outcome, store, strategy, applied):
        _apply(steps, applied)
        started = [s.detail["instance_refresh_id"] for s in steps if "instance_refresh_id" in s.detail]
        refresh_id = started[-1] if started else (outcome.refresh or {}).get("id")
        if refresh_id is None:
            return outcome  # nothing to wait for: promote is over (or was already)
        ended = wait_for_refresh(aws, groups.production, refresh_id, timeout, on_progress)
        outcome.refresh = None
        if ended.get("Status") != "Successful":
            reason = f" ({ended['StatusReason']})" if ended.get("StatusReason") else ""
            outcome.refresh = refresh_state(ended)
            raise RefreshFailed(
                f"instance refresh {refresh_id} of {groups.production} ended {ended.get('Status')}{reason}: "
                f"{', '.join(n for n in (groups.canary, groups.baseline) if n)} left up. Find out why, then "
                "roll back, or promote --force to start a new refresh")
        later_notes: list[str] = []
        later_state: dict = {}
        later = plan_promote(aws, groups, strategy, refresh, later_notes, state=later_state, traffic=traffic)
        outcome.steps += later
        outcome.notes = [n for n in notes if "scaled to zero once" not in n]
        outcome.notes.append(f"instance refresh {refresh_id} of {groups.production}: Successful")
        outcome.notes += later_notes
        outcome.refresh = later_state.get("refresh")
        _apply(later, applied)
    return outcome


def wait_for_refresh(aws: AutoScaling, name: str, refresh_id: str, timeout: float,
                     on_progress: Callable[[dict], None] | None = None) -> dict:
    """Poll the instance refresh until it is no longer going on; its last description. An
    ActionError if it still is after `timeout` seconds."""
    deadline = aws.clock() + timeout
    seen = None
    while True:
        current = aws.refresh(name, refresh_id)
        state = refresh_state(current)
        if on_progress is not None and state != seen:
            on_progress(state)
        seen = state
        if current.get("Status") not in ACTIVE_REFRESH:
            return current
        if aws.clock() >= deadline:
            raise ActionError(
                f"instance refresh {refresh_id} of {name} still {state['status']} ({state['percent']}%) "
                f"after {timeout:g}s: canary and baseline left up; run promote --wait again to finish")
        aws.sleep(min(aws.refresh_poll_seconds, max(0.0, deadline - aws.clock())))


def rollback(release: str, groups: Groups, aws: AutoScaling, *, dry_run: bool = False,
             store: Any = None, traffic: list[Step] = ()) -> ActionResult:
    """Send a rollout's traffic back to production, then scale the canary and baseline to zero.
    The traffic step failing (the listener cannot be read or written, or is not seen at 0 after
    the write: gate.rollout.rollback_traffic) stops it before any scaling: a group scaled down
    while its target group still has weight would answer the load balancer's share with 503s."""
    steps = plan_rollback(aws, groups, traffic)
    return run(release, "rollback", groups, steps, dry_run=dry_run, store=store)


class Action(Protocol):
    """An action on a verdict (as Flagger's canary controller: Promote, ScaleToZero), beside the
    traffic router (gate.traffic.Router): it reads the groups' state through `aws`, plans only
    the Steps still missing (so a second run plans nothing), and `run`s them: applied in order
    unless `dry_run`, recorded in `store` with the steps applied and any error. `traffic`: a
    rollout's traffic change that comes first (gate.rollout.rollback_traffic)."""

    def __call__(self, release: str, groups: Groups, aws: AutoScaling, *, dry_run: bool = False,
                 store: Any = None, traffic: Any = ...) -> ActionResult:
        ...


# The commands' actions (`gate promote`, `gate rollback`): name -> the Action (each may take
# options of its own after these: promote's strategy, refresh, wait...).
ACTIONS: dict[str, Callable[..., ActionResult]] = {"promote": promote, "rollback": rollback}


def describe(outcome: ActionResult) -> list[str]:
    """The outcome for people, one line each."""
    head = f"{outcome.action} {outcome.release}"
    if outcome.nothing_to_do:
        lines = [f"{head}: nothing to do (the groups are already as {outcome.action} leaves them)"]
    elif outcome.in_progress and not outcome.steps:
        lines = [f"{head}: {refresh_line(outcome.refresh)}"]
    else:
        verb = "would" if outcome.dry_run else "done:"
        lines = [f"{head}{' (dry run, nothing changed)' if outcome.dry_run else ''}:"]
        lines += [f"  {verb} {step.change}" for step in outcome.steps]
    lines += [f"  note: {note}" for note in outcome.notes]
    return lines


def refresh_line(refresh: dict) -> str:
    """A refresh still going on, for people."""
    if refresh["status"] not in RUNNING_REFRESH:  # Cancelling, RollbackInProgress: it will not succeed
        return (f"instance refresh {refresh['id']} is {refresh['status']} ({refresh['percent']}%): it will not "
                "succeed; canary and baseline stay up, and promote refuses once it ends (find out why, then "
                "roll back or promote --force)")
    return (f"instance refresh {refresh['id']} in progress ({refresh['percent']}%): canary and baseline are "
            "scaled down once it succeeds; run promote again")
