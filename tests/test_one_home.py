"""Rules the front doors (gate/cli.py, lambda/handler.py) used to repeat, each in one place now."""

from __future__ import annotations

from pathlib import Path

import pytest

from gate.errors import PolicyError
from gate.policy import load_policy
from gate.rollout import Look

ROOT = Path(__file__).resolve().parent.parent


def test_a_policy_without_a_rollout_section_is_refused_by_the_policy_itself():
    with_rollout = load_policy(ROOT / "examples" / "cloudwatch.yaml")
    assert with_rollout.rollout_or_refuse() is with_rollout.rollout
    without = load_policy(ROOT / "examples" / "simulate.yaml")
    with pytest.raises(PolicyError, match=r"^rollout: the policy has no rollout section \(listener_arn or rule_arn, "):
        without.rollout_or_refuse()


def test_the_aws_region_is_the_actions_then_the_load_balancers_then_the_sources_then_the_settings():
    policy = load_policy(ROOT / "examples" / "cloudwatch.yaml")
    assert policy.source_region == "us-east-1" and policy.aws_region == "us-east-1"
    moved = policy.model_copy(update={"actions": policy.actions.model_copy(update={"region": "eu-west-1"})})
    assert moved.aws_region == "eu-west-1" and moved.source_region == "us-east-1"
    assert load_policy(ROOT / "examples" / "simulate.yaml").aws_region is None  # make_client: the settings'


def test_the_groups_of_a_rollout_are_acted_on_in_its_load_balancers_region():
    """Review: a Datadog policy (no source region) whose listener is in eu-west-1 rolled the
    traffic back there and then acted on the groups of the settings' region (us-east-1)."""
    policy = load_policy(ROOT / "examples" / "cloudwatch.yaml")
    arn = policy.rollout.listener_arn.replace("us-east-1", "eu-west-1")
    elsewhere = policy.model_copy(update={
        "rollout": policy.rollout.model_copy(update={"listener_arn": arn}),
        "source": policy.source.model_copy(update={"options": {}})})
    assert elsewhere.source_region is None and elsewhere.aws_region == "eu-west-1"


def look(status: str, verdict: object = None, dry_run: bool = False) -> Look:
    return Look("web-1", status, 0, [10, 50, 100], 0, verdict=verdict, dry_run=dry_run)


@pytest.mark.parametrize("status,judged,dry_run,told", [
    ("complete", True, False, True),
    ("rolled_back", True, False, True),
    ("complete", False, False, False),  # read from the store: told when it was judged
    ("rolled_back", True, True, False),  # a dry run moves nothing and tells nobody
    ("passed", True, False, False),  # a step's pass is not the release's
    ("judging", True, False, False),
    ("undecided", True, False, False),
])
def test_a_finished_rollout_is_told_once_on_the_look_that_judged_it(status, judged, dry_run, told):
    assert look(status, object() if judged else None, dry_run).to_announce is told


def test_promote_and_rollback_are_the_registered_actions_beside_the_router():
    from gate import actions
    from gate.simulated_alb import SimulatedForward
    from gate.traffic import Forward, Router

    assert actions.ACTIONS == {"promote": actions.promote, "rollback": actions.rollback}
    policy = load_policy(ROOT / "examples" / "cloudwatch.yaml")
    assert isinstance(SimulatedForward(policy.rollout), Router)
    assert all(callable(getattr(Forward, call, None)) for call in ("weights", "set", "other_routes"))
