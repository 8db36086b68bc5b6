"""When an evaluation may decide, and with what share of the false-alarm budget: the looks
(anytime fail tests, two pass checkpoints, the end of the lifetime) and what every metric of one
evaluation is judged with (`Setting`)."""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

from gate.policy import Policy


@dataclass(frozen=True)
class Budget:
    fail: float  # per test: chance of failing a canary that is within tolerance, at any look
    checkpoint: float  # per metric and checkpoint: chance of passing one at the tolerance

    @property
    def final_z(self) -> float:
        """The last look spends one more share of alpha, as a fixed-sample test."""
        return NormalDist().inv_cdf(1 - self.fail)


@dataclass(frozen=True)
class Look:
    """What this evaluation may decide. Failing is allowed at every look (anytime-valid tests).
    Passing is a planned decision: at two checkpoints (the minimum duration, and halfway from
    there to the end) by fixed-sample tests, which are far sharper than anytime ones; and at
    the end of the lifetime, where the gate must answer, on the estimate itself."""

    checkpoint: bool
    final: bool


PASS_CHECKPOINTS = 2
# The fail boundaries are tightest a quarter into the lifetime: regressions should be caught early.
TUNED_AT = 4


def minimum_duration(policy: Policy) -> int:
    """How long a canary runs before it may pass: the policy's min_duration, or half the lifetime."""
    return policy.min_duration if policy.min_duration is not None else policy.lifetime // 2


def look_at(policy: Policy, deployed_at: int, now: int) -> Look:
    min_duration = minimum_duration(policy)
    first = deployed_at + min_duration
    second = first + (policy.lifetime - min_duration) // 2
    checkpoint = any(now - policy.interval < c <= now for c in (first, second))
    return Look(checkpoint=checkpoint, final=now >= deployed_at + policy.lifetime)


# A target still registering with its load balancer serves nothing for its first minutes (the
# health checks' HealthyThresholdCount x interval: 5 x 30 s by default on an ALB, 2.5 min), and
# a clean canary's requests read 0 over its first 3-5 minutes (review). Allowed from the deploy:
# STARTUP_MAX seconds, whatever the lifetime (registering takes as long in a 20-minute lifetime as
# in a day's), less the warm-up, whose points are not compared anyway (second review: a 1-minute
# warm-up took the whole allowance away, and 10% of a 30-minute lifetime failed a 4-minute
# registration); a longer run from the deploy is held (count._volume_reads_zero).
STARTUP_MAX = 300


@dataclass(frozen=True)
class Setting:
    """What every metric of one evaluation is judged with."""

    budget: Budget
    look: Look
    lifetime_points: int
    remaining_points: int  # steps left until the end of the lifetime
    # A count's denominator may read 0 from the deploy over this many points (a target still
    # registering) without count._volume_reads_zero holding it; 0 with a warm-up (not compared).
    startup_points: int = 0
