"""A simulated load balancer: the router of a rollout on a demo source, no AWS account needed.

`gate rollout` steers one weighted forward action of an ALB (gate.traffic.Forward). On a demo
policy (a simulated or recorded service) there is no ALB to steer: `SimulatedForward` answers
the same two calls, `weights()` and `set(weights)`, from memory, starting where the store's last
traffic change of the release left it (the store is the rollout's record anyway), so a rollout
on simulated data runs through the real step machine (gate.rollout) run after run (`gate demo
--rollout`, `gate rollout --simulated-alb` on a demo policy), with no AWS credentials.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gate.errors import PolicyError
from gate.policy import Rollout
from gate.sources import DEMO_SOURCES
from gate.traffic import Weights, step_weights


class SimulatedForward:
    """The weighted forward action of a load balancer that exists only in this process."""

    def __init__(self, rollout: Rollout, weights: Weights | None = None,
                 on_set: Callable[[Weights], None] | None = None):
        self.rollout = rollout
        self.is_rule = rollout.rule_arn is not None
        self._weights = dict(weights) if weights is not None else step_weights(rollout, 0)
        self.on_set = on_set

    def weights(self) -> Weights:
        return dict(self._weights)

    def other_routes(self) -> list[str]:
        """A simulated load balancer has the one steered action and no other listener or rule."""
        return []

    def canary_targets(self, at: int) -> None:
        """A simulated load balancer has no targets to check: not known."""
        return None

    def set(self, weights: Weights) -> None:
        """Every target group of the action gets its weight in `weights` (any other: 0)."""
        self._weights = {arn: weights.get(arn, 0) for arn in dict.fromkeys([*self._weights, *weights])}
        if self.on_set is not None:
            self.on_set(self.weights())


def recorded_forward(rollout: Rollout, store: Any, release: str) -> SimulatedForward:
    """The simulated action as the store's last traffic change of the release set it."""
    changes = store.traffic(release) if store is not None else []
    return SimulatedForward(rollout, changes[-1]["weights"] if changes else None)


def router_for(policy: Any, store: Any, release: str, *, simulated: bool = False) -> Any:
    """The forward action a rollout of this policy steers: the ALB's (gate.traffic), or with
    `simulated` the simulated load balancer, on a demo source only (simulated or recorded data):
    a live canary's traffic is the ALB's, never a pretence of it."""
    if not simulated:
        from gate.traffic import forward_of

        return forward_of(policy)
    if policy.source.type not in DEMO_SOURCES:
        raise PolicyError(f"--simulated-alb: only on a demo source ({', '.join(sorted(DEMO_SOURCES))}), not "
                          f"{policy.source.type}: a live canary's traffic is the load balancer's")
    return recorded_forward(policy.rollout, store, release)
