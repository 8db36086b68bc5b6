"""The canary's share of an Application Load Balancer's traffic: one weighted forward action.

The forward action of a listener (its default action) or of a listener rule sends each of its
target groups a weight. A rollout names the canary's, production's and optionally the baseline's
target group; at a step of `p` percent the canary (and the baseline) get `p` and production the
rest, out of 100. Everything else in the action (other actions, stickiness) is left as it is.

Reads and writes go through boto3 `elbv2` (`describe_listeners`/`describe_rules`,
`modify_listener`/`modify_rule`), with one-line errors. Before each step, the rollout checks that no
other listener or rule of the load balancers forwards to the canary's or baseline's target group
(`other_routes`). There is no conditional write on an ALB:
the rollout reads the weights before every change and compares them with what it last set.
"""

from __future__ import annotations

import copy
from typing import Any, Protocol, runtime_checkable

from gate.actions import ActionError, action_error
from gate.policy import Rollout
from gate.series import TargetHealth, TargetHealthUnread

Weights = dict[str, int]  # target group ARN -> weight


class ForwardFault(ActionError):
    """AWS could not answer a call on the forward action for now or for these credentials
    (refused, throttled, a 5xx, unreachable): not an answer about the listener itself. A listener
    that is gone, or does not forward to the policy's target groups, is a plain ActionError."""


@runtime_checkable
class Router(Protocol):
    """What a rollout steers (gate.rollout.Rollout): one weighted forward action. `Forward` (an
    ALB's listener or rule, through elbv2) and gate.simulated_alb.SimulatedForward implement it;
    the actions on the groups (gate.actions.Action) sit beside it."""

    def weights(self) -> Weights:
        """The action's target groups and their weights now."""
        ...

    def set(self, weights: Weights) -> None:
        """Every target group of the action gets its weight in `weights` (any other: 0)."""
        ...

    def other_routes(self) -> list[str]:
        """Other listeners or rules forwarding to the canary's or baseline's group (a rollout
        refuses to start while any does: its steps would not be the canary's share)."""
        ...

    def canary_targets(self, at: int) -> TargetHealth | None:
        """The canary target group's targets as the load balancer sees them now (None: nothing to
        read, a simulated load balancer); TargetHealthUnread when they could not be read."""
        ...


def step_weights(rollout: Rollout, percent: int) -> Weights:
    """The weights that give the canary (and the baseline, if named) `percent` of the traffic."""
    weights = {rollout.canary_target_group: percent}
    if rollout.baseline_target_group:
        weights[rollout.baseline_target_group] = percent
    weights[rollout.production_target_group] = 100 - sum(weights.values())
    return weights


def canary_share(rollout: Rollout, weights: Weights) -> float:
    """The canary's percentage of the traffic under `weights` (0 when nothing is weighted)."""
    total = sum(weights.values())
    return 100.0 * weights.get(rollout.canary_target_group, 0) / total if total else 0.0


def same_split(expected: Weights, found: Weights) -> bool:
    """Whether the action sends the traffic as `expected` says: the named groups at their weights,
    and no other group with any weight."""
    return all(found.get(arn, 0) == w for arn, w in expected.items()) and \
        all(w == 0 for arn, w in found.items() if arn not in expected)


def describe_split(rollout: Rollout, weights: Weights) -> str:
    """`canary 25, baseline 25, production 50` (and any other group by its name), for people."""
    names = {rollout.canary_target_group: "canary"}
    if rollout.baseline_target_group:
        names[rollout.baseline_target_group] = "baseline"
    names[rollout.production_target_group] = "production"
    parts = [f"{names[arn]} {weights.get(arn, 0)}" for arn in names]
    parts += [f"{_short(arn)} {w}" for arn, w in weights.items() if arn not in names and w]
    return ", ".join(parts)


def _short(arn: str) -> str:
    return arn.split(":")[-1]


class Forward:
    """The weighted forward action the rollout steers, read and written whole."""

    def __init__(self, elbv2: Any, rollout: Rollout):
        self.elbv2 = elbv2
        self.rollout = rollout
        self.is_rule = rollout.rule_arn is not None

    def _call(self, operation: str, **kwargs) -> dict:
        from botocore.exceptions import BotoCoreError, ClientError

        from gate.aws import denied, transient

        try:
            return getattr(self.elbv2, operation)(**kwargs)
        except (ClientError, BotoCoreError) as e:
            error = action_error(operation, e)
            if denied(e) or transient(e):
                raise ForwardFault(str(error)) from None
            raise error from None

    def _actions(self) -> list[dict]:
        arn = self.rollout.forward_arn
        if self.is_rule:
            rules = self._call("describe_rules", RuleArns=[arn]).get("Rules", [])
            return rules[0]["Actions"] if rules else []
        listeners = self._call("describe_listeners", ListenerArns=[arn]).get("Listeners", [])
        return listeners[0]["DefaultActions"] if listeners else []

    def _forward(self, actions: list[dict]) -> dict:
        forwards = [a for a in actions if a.get("Type") == "forward"]
        where = f"{'rule' if self.is_rule else 'listener'} {self.rollout.forward_arn}"
        if len(forwards) != 1:
            raise ActionError(f"rollout: {where} has {len(forwards)} forward actions; the rollout steers exactly one "
                              "(a weighted forward to the canary and production target groups)")
        return forwards[0]

    @staticmethod
    def _groups(forward: dict) -> Weights:
        config = forward.get("ForwardConfig") or {}
        groups = config.get("TargetGroups") or []
        if groups:
            return {g["TargetGroupArn"]: int(g.get("Weight", 1)) for g in groups}
        return {forward["TargetGroupArn"]: 1} if forward.get("TargetGroupArn") else {}

    def weights(self) -> Weights:
        """The weights the action gives its target groups now; an ActionError if the action does
        not hold the canary and production target groups."""
        found = self._groups(self._forward(self._actions()))
        self._check_holds(found)
        return found

    def _check_holds(self, found: Weights) -> None:
        """An ActionError unless the action forwards to every target group the policy names: one
        that does not is not the policy's (production moved to another group, say), and weights
        written to it would send the traffic to the wrong groups."""
        named = {"canary_target_group": self.rollout.canary_target_group,
                 "production_target_group": self.rollout.production_target_group,
                 "baseline_target_group": self.rollout.baseline_target_group}
        missing = [field for field, arn in named.items() if arn and arn not in found]
        if missing:
            raise ActionError(f"rollout: the forward action of {self.rollout.forward_arn} does not hold "
                              f"{', '.join('rollout.' + m for m in missing)} (it forwards to "
                              f"{', '.join(map(_short, found)) or 'nothing'}): put the target groups in one weighted "
                              "forward action (docs/cloudwatch.md)")

    def other_routes(self) -> list[str]:
        """Where else the canary's (or the baseline's) target group is forwarded to: by another
        listener or rule of its load balancers (`rule ARN`, `listener ARN`), for who refuses that
        set-up (the traffic there would not follow the steps)."""
        steered = {g for g in (self.rollout.canary_target_group, self.rollout.baseline_target_group) if g}
        return [where for where, actions in self._other_actions()
                if any(steered & set(self._groups(a)) for a in actions if a.get("Type") == "forward")]

    def _other_actions(self):
        """(where, actions) of every listener and rule of the load balancers of the steered groups,
        but the steered action itself."""
        groups = [g for g in (self.rollout.canary_target_group, self.rollout.baseline_target_group) if g]
        described = self._call("describe_target_groups", TargetGroupArns=groups).get("TargetGroups", [])
        balancers = sorted({arn for g in described for arn in g.get("LoadBalancerArns", [])})
        for balancer in balancers:
            for listener in self._pages("describe_listeners", "Listeners", LoadBalancerArn=balancer):
                steered_listener = listener["ListenerArn"] == self.rollout.listener_arn
                if not steered_listener:
                    yield f"listener {listener['ListenerArn']}", listener.get("DefaultActions", [])
                for rule in self._pages("describe_rules", "Rules", ListenerArn=listener["ListenerArn"]):
                    if rule.get("IsDefault") or rule["RuleArn"] == self.rollout.rule_arn:
                        continue  # a listener's default rule is its default actions
                    yield f"rule {rule['RuleArn']}", rule.get("Actions", [])

    def canary_targets(self, at: int) -> TargetHealth | None:
        """The canary target group's targets and their health (describe_target_health): the load
        balancer's own health checks, which tell a dead canary from one whose metrics are late.
        TargetHealthUnread when it cannot be read (a role without
        elasticloadbalancing:DescribeTargetHealth): it is extra evidence, and without it a silent
        canary still fails by the canary-down rule, later; the verdict says it was not read."""
        try:
            found = self._call("describe_target_health", TargetGroupArn=self.rollout.canary_target_group)
        except ActionError as e:
            raise TargetHealthUnread(str(e)) from None
        targets = tuple((t.get("TargetHealth", {}).get("State", ""), t.get("TargetHealth", {}).get("Reason", ""))
                        for t in found.get("TargetHealthDescriptions", []))
        return TargetHealth(_short(self.rollout.canary_target_group), int(at), targets)

    def _pages(self, operation: str, key: str, **kwargs) -> list[dict]:
        items, marker = [], None
        while True:
            page = self._call(operation, **kwargs, **({"Marker": marker} if marker else {}))
            items += page.get(key, [])
            marker = page.get("NextMarker")
            if not marker:
                return items

    def set(self, weights: Weights) -> None:
        """Give the named target groups these weights (any other group of the action: 0); an
        ActionError, nothing written, when the action does not hold the policy's target groups."""
        actions = copy.deepcopy(self._actions())
        forward = self._forward(actions)
        current = self._groups(forward)
        self._check_holds(current)  # never write the policy's weights over another set-up (review)
        config = forward.setdefault("ForwardConfig", {})
        config["TargetGroups"] = [{"TargetGroupArn": arn, "Weight": weights.get(arn, 0)}
                                  for arn in dict.fromkeys([*current, *weights])]
        forward.pop("TargetGroupArn", None)  # a weighted forward names its groups in ForwardConfig only
        actions = [_writable(a) for a in actions]
        if self.is_rule:
            self._call("modify_rule", RuleArn=self.rollout.rule_arn, Actions=actions)
        else:
            self._call("modify_listener", ListenerArn=self.rollout.listener_arn, DefaultActions=actions)


def _writable(action: dict) -> dict:
    """An action as describe returns it, as modify takes it (describe adds nothing modify refuses,
    but an empty stickiness block is better left out)."""
    config = action.get("ForwardConfig")
    if config and config.get("TargetGroupStickinessConfig") == {}:
        config.pop("TargetGroupStickinessConfig")
    return action


def forward_of(policy: Any) -> Forward:
    """The forward action of the policy's rollout, through an elbv2 client in its load balancer's
    region (its ARN's: a Datadog policy names no region, and the boto3 chain's default may be
    another, where the listener does not exist and a rollback would be refused)."""
    from gate.aws import make_client
    from gate.errors import GateError

    try:
        return Forward(make_client("elbv2", policy.rollout.region), policy.rollout)
    except GateError as e:
        raise ActionError(str(e)) from None
