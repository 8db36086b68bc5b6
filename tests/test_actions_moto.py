"""`gate promote` / `gate rollback` against real Auto Scaling groups and launch templates on a
moto server (moto has no instance refresh: the capacity swap is tested here, the refresh in
test_actions_stubbed.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from gate import actions
from gate.policy import load_policy
from gate.store import SqliteStore
from tests.conftest import run_gate
from tests.moto_server import moto_server  # noqa: F401  (fixture)

GROUP_NAMES = actions.Groups(canary="web-canary", baseline="web-baseline", production="web-prod")
GROUPS = ["--production-asg", "web-prod", "--canary-asg", "web-canary", "--baseline-asg", "web-baseline"]


@pytest.fixture
def fleet(moto_server):  # noqa: F811
    """web-prod (3 instances) and web-baseline (1) on template v1, web-canary (1) on v2."""
    moto_server.reset()
    ec2, autoscaling = moto_server.client("ec2"), moto_server.client("autoscaling")
    template = ec2.create_launch_template(
        LaunchTemplateName="web", LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"},
    )["LaunchTemplate"]["LaunchTemplateId"]
    ec2.create_launch_template_version(LaunchTemplateId=template, LaunchTemplateData={
        "ImageId": "ami-12c6146b", "InstanceType": "t3.small"})
    for name, version, size in (("web-prod", "1", 3), ("web-baseline", "1", 1), ("web-canary", "2", 1)):
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=name, MinSize=size, MaxSize=size + 1, DesiredCapacity=size,
            LaunchTemplate={"LaunchTemplateId": template, "Version": version},
            AvailabilityZones=["us-east-1a"])
    return moto_server, autoscaling, template


def moto_reports_the_release(server, template: str) -> None:
    """moto reports every group instance as running the template's default version, whatever
    it was launched with (AWS reports the version each was launched from). Once the swap has
    replaced the old instances, making the release the default lets moto report what AWS would."""
    server.client("ec2").modify_launch_template(LaunchTemplateId=template, DefaultVersion="2")


def state(autoscaling) -> dict:
    groups = autoscaling.describe_auto_scaling_groups(
        AutoScalingGroupNames=["web-prod", "web-canary", "web-baseline"])["AutoScalingGroups"]
    return {g["AutoScalingGroupName"]: {
        "template": g["LaunchTemplate"]["Version"], "min": g["MinSize"], "max": g["MaxSize"],
        "desired": g["DesiredCapacity"],
        "instances": sorted((i["InstanceId"], i["LaunchTemplate"]["Version"]) for i in g["Instances"]),
    } for g in groups}


def gate(server, tmp_path: Path, *args: str):
    result = run_gate(*args, "--store", tmp_path / "gate.sqlite", "--json", env=server.env, cwd=tmp_path,
                      timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_promote_swaps_production_to_the_canary_version(fleet, tmp_path):
    server, autoscaling, template = fleet
    before = state(autoscaling)

    plan = gate(server, tmp_path, "promote", "web-2", *GROUPS, "--strategy", "swap", "--dry-run")
    assert plan["dry_run"] and not plan["nothing_to_do"]
    assert [c["change"].split()[0] for c in plan["changes"]] == ["point", "scale", "once", "scale", "scale"]
    assert state(autoscaling) == before  # a dry run changes nothing

    done = gate(server, tmp_path, "promote", "web-2", *GROUPS, "--strategy", "swap")
    assert not done["dry_run"] and len(done["changes"]) == 5
    after = state(autoscaling)
    production = after["web-prod"]
    assert production["template"] == "2" and production["desired"] == 3 and production["max"] == 4
    old_ids = {i for i, _ in before["web-prod"]["instances"]}
    assert len(production["instances"]) == 3
    assert not old_ids & {i for i, _ in production["instances"]}  # every old instance replaced
    for group in ("web-canary", "web-baseline"):
        assert after[group]["desired"] == 0 and after[group]["min"] == 0 and after[group]["instances"] == []

    moto_reports_the_release(server, template)
    after = state(autoscaling)
    again = actions.promote("web-2", GROUP_NAMES, actions.clients(), strategy="swap",
                            store=SqliteStore(tmp_path / "gate.sqlite"))
    assert again.nothing_to_do and again.to_dict()["changes"] == []
    assert state(autoscaling) == after

    events = SqliteStore(tmp_path / "gate.sqlite").events("web-2")
    assert [e["kind"] for e in events] == ["promote", "promote"]  # the dry run is not recorded
    assert len(events[0]["detail"]["changes"]) == 5 and events[0]["detail"]["strategy"] == "swap"
    assert events[1]["detail"]["nothing_to_do"] is True


def test_rollback_scales_the_canary_away_and_leaves_production(fleet, tmp_path):
    server, autoscaling, _ = fleet
    before = state(autoscaling)
    policy = tmp_path / "policy.yaml"  # the groups from a policy: scopes are the ASG names
    policy.write_text(yaml.safe_dump({
        "name": "web", "source": {"type": "cloudwatch", "options": {"production_asg": "web-prod"}},
        "canary": {"scope": "web-canary"}, "baseline": {"scope": "web-baseline"},
        "metrics": [{"name": "cpu", "kind": "gauge", "queries": {"cloudwatch": {
            "namespace": "AWS/EC2", "metric": "CPUUtilization", "stat": "Average"}}}],
    }))

    groups = actions.resolve_groups("web-3", load_policy(policy))
    assert groups == GROUP_NAMES
    plan = actions.rollback("web-3", groups, actions.clients(), dry_run=True)
    assert [step.group for step in plan.steps] == ["web-canary", "web-baseline"]
    assert state(autoscaling) == before

    done = gate(server, tmp_path, "rollback", "web-3", "--policy", str(policy))
    after = state(autoscaling)
    assert after["web-prod"] == before["web-prod"]  # production untouched
    assert after["web-canary"]["desired"] == 0 and after["web-canary"]["instances"] == []
    assert after["web-baseline"]["desired"] == 0 and after["web-baseline"]["instances"] == []
    assert len(done["changes"]) == 2

    again = run_gate("rollback", "web-3", "--policy", policy, "--store", tmp_path / "gate.sqlite",
                     env=server.env, cwd=tmp_path, timeout=60)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert [e["kind"] for e in SqliteStore(tmp_path / "gate.sqlite").events("web-3")] == ["rollback", "rollback"]


def test_a_missing_group_changes_nothing(fleet):
    _, autoscaling, _ = fleet
    before = state(autoscaling)
    with pytest.raises(actions.ActionError, match="Auto Scaling group not found: web-canry"):
        actions.promote("web-2", actions.Groups("web-canry", "web-baseline", "web-prod"), actions.clients(),
                        strategy="swap")
    assert state(autoscaling) == before
