"""Traffic steps (`gate rollout`) on the simulated service, time compressed: a 5/25/50 rollout on
an ALB listener (moto, in-process) for each seed, healthy and with each simulated fault injected
the moment the rollout reaches the 25% step. Prints, per run, how the rollout ended and how many
evaluations of the 25% step it took to roll back (or to pass it).

    .venv/bin/python -m bench.rollout_steps [--seeds 7 8 9] [--step-lifetime 20m]

The clock is virtual (one look per interval, as `gate rollout --watch` looks); the step machine,
the judge, the store (SQLite in a temporary folder) and the elbv2 calls are the real ones.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

SCENARIOS = ("healthy", "payment_failures", "bad_version", "db_connections", "gateway_killed")


def listener(elbv2, ec2) -> tuple[str, dict, dict]:
    """The listener, its target groups and the instance registered in each."""
    from tests.alb import weighted_listener, with_instances

    arn, groups = weighted_listener(ec2, elbv2, production=100, canary=0)
    return arn, groups, with_instances(ec2, elbv2, groups)


def one(scenario: str, seed: int, step_lifetime: str, folder: Path) -> dict:
    import boto3

    from gate.analysis import Analysis
    from gate.demo import DEMO_POLICY, SIMULATED_WEEK
    from gate.policy import parse_policy
    from gate.rollout import Rollout
    from gate.sources.simulate import ONSET, SimulateSource
    from gate.store import SqliteStore
    from gate.traffic import Forward

    from gate.sources.simulate import GATEWAY_DIES_AFTER

    elbv2, ec2 = boto3.client("elbv2"), boto3.client("ec2")
    arn, groups, instances = listener(elbv2, ec2)
    policy = parse_policy({**DEMO_POLICY, "rollout": {
        "listener_arn": arn, "canary_target_group": groups["canary"],
        "production_target_group": groups["production"], "steps": [5, 25, 50], "step_lifetime": step_lifetime}})
    deployed_at = SIMULATED_WEEK + (seed % 7) * 86400 + 12 * 3600
    source = SimulateSource("healthy", seed)
    store = SqliteStore(folder / f"{scenario}-{seed}.sqlite")
    clock = [deployed_at]
    looks = []
    dies_at = None
    while True:
        if dies_at is not None and clock[0] >= dies_at:
            # The killed gateway fails the load balancer's health checks: moto has none, and
            # reports a stopped instance out of service (unused, Target.InvalidState).
            ec2.stop_instances(InstanceIds=[instances["canary"]])
            dies_at = None
        release = Analysis(policy, source, f"shop-{seed}", deployed_at, store=store)
        look = Rollout(release, Forward(elbv2, policy.rollout), clock=lambda: clock[0]).tick(clock[0])
        looks.append(look)
        if look.status == "advanced" and look.step == 2 and scenario != "healthy":
            source.scenario, source.deployed_at = scenario, clock[0] - ONSET  # the fault starts now
            if scenario == "gateway_killed":
                dies_at = source.deployed_at + GATEWAY_DIES_AFTER
        if look.final:
            break
        clock[0] += policy.interval
    changes = store.traffic(f"shop-{seed}")
    second = next((c for c in changes if c["step"] == 2), None)
    at_25 = [e for e in store.evaluations(f"shop-{seed}") if second and e["evaluated_at"] > second["set_at"]
             and (len(changes) < 3 or e["evaluated_at"] <= changes[2]["set_at"])]
    weights = Forward(elbv2, policy.rollout).weights()
    return {"scenario": scenario, "seed": seed, "status": look.status, "exit": look.exit_code,
            "steps": [c["percent"] for c in changes], "evaluations_at_25": len(at_25),
            "minutes_at_25": (at_25[-1]["evaluated_at"] - second["set_at"]) // 60 if at_25 else None,
            "canary_weight_after": weights[groups["canary"]], "looks": len(looks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9])
    parser.add_argument("--step-lifetime", default="20m")
    args = parser.parse_args()
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    os.environ.pop("AWS_ENDPOINT_URL", None)
    from moto import mock_aws

    with tempfile.TemporaryDirectory() as folder:
        print("scenario          seed  ended        exit  steps         25% step: evaluations (minutes)  "
              "canary weight after")
        for scenario in SCENARIOS:
            for seed in args.seeds:
                with mock_aws():
                    r = one(scenario, seed, args.step_lifetime, Path(folder))
                print(f"{r['scenario']:<17} {r['seed']:>4}  {r['status']:<12} {r['exit']:>4}  "
                      f"{str(r['steps']):<13} {r['evaluations_at_25']:>3} ({r['minutes_at_25']} min)"
                      f"{'':<20} {r['canary_weight_after']}", flush=True)


if __name__ == "__main__":
    main()
