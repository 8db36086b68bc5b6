"""The instance-refresh promote (moto has no instance refresh), with botocore's Stubber checking
every Auto Scaling and EC2 request, in order."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from gate import actions

LT = "lt-0123456789abcdef0"
GROUPS = actions.Groups(canary="web-canary", baseline="web-baseline", production="web-prod")


def group(name, version, desired, instances=(), min_size=None):
    return {
        "AutoScalingGroupName": name, "MinSize": desired if min_size is None else min_size,
        "MaxSize": max(desired, 1) + 1, "DesiredCapacity": desired, "DefaultCooldown": 300,
        "AvailabilityZones": ["us-east-1a"], "HealthCheckType": "EC2", "CreatedTime": "2026-01-01T00:00:00Z",
        "LaunchTemplate": {"LaunchTemplateId": LT, "LaunchTemplateName": "web", "Version": version},
        "Instances": [{"InstanceId": f"i-{name}-{k}", "AvailabilityZone": "us-east-1a", "LifecycleState": "InService",
                       "HealthStatus": "Healthy", "ProtectedFromScaleIn": False,
                       "LaunchTemplate": {"LaunchTemplateId": LT, "LaunchTemplateName": "web", "Version": v}}
                      for k, v in enumerate(instances)],
    }


@pytest.fixture
def aws():
    def client(service):
        return boto3.client(service, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    autoscaling, ec2 = client("autoscaling"), client("ec2")
    with Stubber(autoscaling) as asg_stub, Stubber(ec2) as ec2_stub:
        yield actions.AutoScaling(autoscaling, ec2), asg_stub, ec2_stub
        asg_stub.assert_no_pending_responses()
        ec2_stub.assert_no_pending_responses()


def describe(stub, *groups):
    stub.add_response("describe_auto_scaling_groups", {"AutoScalingGroups": list(groups)},
                      {"AutoScalingGroupNames": [g["AutoScalingGroupName"] for g in groups]})


def latest_is(ec2_stub, number):
    ec2_stub.add_response("describe_launch_template_versions", {"LaunchTemplateVersions": [
        {"LaunchTemplateId": LT, "VersionNumber": number}]}, {"LaunchTemplateId": LT, "Versions": ["$Latest"]})


class Events:
    def __init__(self):
        self.events = []

    def record_event(self, release, kind, detail):
        self.events.append((release, kind, detail))


def test_promote_refreshes_production_with_checkpoints(aws):
    scaling, asg_stub, ec2_stub = aws
    describe(asg_stub, group("web-prod", "1", 2, ["1", "1"]), group("web-canary", "$Latest", 1, ["2"]),
             group("web-baseline", "1", 1, ["1"]))
    latest_is(ec2_stub, 2)  # the canary follows $Latest: production gets the number, never $Latest
    asg_stub.add_response("describe_instance_refreshes", {"InstanceRefreshes": [
        {"InstanceRefreshId": "old", "Status": "Successful"}]}, {"AutoScalingGroupName": "web-prod"})
    asg_stub.add_response("update_auto_scaling_group", {}, {
        "AutoScalingGroupName": "web-prod", "LaunchTemplate": {"LaunchTemplateId": LT, "Version": "2"}})
    asg_stub.add_response("start_instance_refresh", {"InstanceRefreshId": "r-1"}, {
        "AutoScalingGroupName": "web-prod", "Strategy": "Rolling",
        "Preferences": {"MinHealthyPercentage": 90, "SkipMatching": True,
                        "CheckpointPercentages": [25, 100], "CheckpointDelay": 300}})
    store = Events()
    outcome = actions.promote("web-2", GROUPS, scaling, refresh=actions.Refresh((25, 100), 300), store=store)
    # The canary and baseline stay up while the refresh runs (it may fail): no scale-down yet.
    assert [s.change.split()[0] for s in outcome.steps] == ["point", "start"]
    assert outcome.notes == ["web-canary, web-baseline scaled to zero once the instance refresh of web-prod "
                             "is Successful: run promote again then"]
    assert store.events[0][:2] == ("web-2", "promote") and store.events[0][2]["strategy"] == "refresh"
    assert "error" not in store.events[0][2]


@pytest.mark.parametrize("status", ["InProgress", "Baking"])
def test_no_scale_down_while_the_refresh_is_not_over(aws, status):
    scaling, asg_stub, _ = aws  # every instance replaced, but the last checkpoint is not over
    describe(asg_stub, group("web-prod", "2", 2, ["2", "2"]), group("web-canary", "2", 1, ["2"]),
             group("web-baseline", "1", 1, ["1"]))
    asg_stub.add_response("describe_instance_refreshes", {"InstanceRefreshes": [
        {"InstanceRefreshId": "r-1", "Status": status, "PercentageComplete": 100}]},
        {"AutoScalingGroupName": "web-prod"})
    outcome = actions.promote("web-2", GROUPS, scaling)
    assert outcome.nothing_to_do and "once the instance refresh of web-prod is Successful" in outcome.notes[-1]


def test_the_rerun_after_a_successful_refresh_scales_the_canary_down(aws):
    scaling, asg_stub, _ = aws
    describe(asg_stub, group("web-prod", "2", 2, ["2", "2"]), group("web-canary", "2", 1, ["2"]),
             group("web-baseline", "1", 1, ["1"]))
    asg_stub.add_response("describe_instance_refreshes", {"InstanceRefreshes": [
        {"InstanceRefreshId": "r-1", "Status": "Successful", "PercentageComplete": 100}]},
        {"AutoScalingGroupName": "web-prod"})
    for name in ("web-canary", "web-baseline"):
        asg_stub.add_response("update_auto_scaling_group", {},
                              {"AutoScalingGroupName": name, "MinSize": 0, "DesiredCapacity": 0})
    store = Events()
    outcome = actions.promote("web-2", GROUPS, scaling, store=store)
    assert [s.group for s in outcome.steps] == ["web-canary", "web-baseline"] and outcome.notes == []
    assert len(store.events[0][2]["changes"]) == 2


def test_promote_again_during_the_refresh_has_nothing_to_do(aws):
    scaling, asg_stub, ec2_stub = aws
    describe(asg_stub, group("web-prod", "2", 2, ["2", "1"]), group("web-canary", "2", 0),
             group("web-baseline", "1", 0))
    asg_stub.add_response("describe_instance_refreshes", {"InstanceRefreshes": [
        {"InstanceRefreshId": "r-1", "Status": "InProgress", "PercentageComplete": 50}]},
        {"AutoScalingGroupName": "web-prod"})
    store = Events()
    outcome = actions.promote("web-2", GROUPS, scaling, store=store)
    assert outcome.nothing_to_do
    assert outcome.notes == ["instance refresh r-1 of web-prod is InProgress (50% done)"]
    assert store.events[0][2]["nothing_to_do"] is True
    assert "nothing to do" in actions.describe(outcome)[0]


def test_promote_after_the_refresh_asks_nothing_more(aws):
    scaling, asg_stub, _ = aws
    describe(asg_stub, group("web-prod", "2", 2, ["2", "2"]), group("web-canary", "2", 0),
             group("web-baseline", "1", 0))
    assert actions.promote("web-2", GROUPS, scaling).nothing_to_do


def test_a_refresh_that_fails_to_start_after_the_template_is_set_is_finished_by_a_rerun(aws):
    scaling, asg_stub, _ = aws
    describe(asg_stub, group("web-prod", "1", 2, ["1", "1"]), group("web-canary", "2", 1, ["2"]),
             group("web-baseline", "1", 1, ["1"]))
    asg_stub.add_response("describe_instance_refreshes", {"InstanceRefreshes": []}, {"AutoScalingGroupName": "web-prod"})
    asg_stub.add_response("update_auto_scaling_group", {})
    asg_stub.add_client_error("start_instance_refresh", "AccessDenied", "not authorized", 403)
    store = Events()
    with pytest.raises(actions.ActionError, match=r"AWS refused start_instance_refresh \(AccessDenied\)"):
        actions.promote("web-2", GROUPS, scaling, store=store)
    # The half-done run is recorded: its error and the step it had applied.
    [(release, kind, detail)] = store.events
    assert (release, kind) == ("web-2", "promote")
    assert "AWS refused start_instance_refresh (AccessDenied)" in detail["error"]
    assert [s["change"].split()[0] for s in detail["applied"]] == ["point"]
    assert [s["change"].split()[0] for s in detail["changes"]] == ["point", "start"]
    # The rerun sees the template already set and only starts the refresh (the scale-down waits
    # for the refresh to succeed).
    describe(asg_stub, group("web-prod", "2", 2, ["1", "1"]), group("web-canary", "2", 1, ["2"]),
             group("web-baseline", "1", 1, ["1"]))
    asg_stub.add_response("describe_instance_refreshes", {"InstanceRefreshes": []}, {"AutoScalingGroupName": "web-prod"})
    asg_stub.add_response("start_instance_refresh", {"InstanceRefreshId": "r-2"})
    outcome = actions.promote("web-2", GROUPS, scaling, store=store)
    assert [s.change.split()[0] for s in outcome.steps] == ["start"]
    assert "error" not in store.events[-1][2]


def test_dry_run_only_reads(aws):
    scaling, asg_stub, _ = aws  # no update queued: any change would fail the test
    describe(asg_stub, group("web-prod", "1", 2, ["1", "1"]), group("web-canary", "2", 1, ["2"]),
             group("web-baseline", "1", 1, ["1"]))
    asg_stub.add_response("describe_instance_refreshes", {"InstanceRefreshes": []}, {"AutoScalingGroupName": "web-prod"})
    store = Events()
    outcome = actions.promote("web-2", GROUPS, scaling, dry_run=True, store=store)
    assert len(outcome.steps) == 2 and outcome.dry_run and store.events == []
    lines = actions.describe(outcome)
    assert lines[1].startswith("  would point web-prod at") and lines[2].startswith("  would start an instance refresh")
    # The plan says when the canary and baseline go.
    assert lines[-1] == ("  note: web-canary, web-baseline scaled to zero once the instance refresh of web-prod "
                         "is Successful: run promote again then")


def test_rollback_leaves_production_alone(aws):
    scaling, asg_stub, _ = aws
    describe(asg_stub, group("web-canary", "2", 1, ["2"]), group("web-baseline", "1", 1, ["1"]))
    asg_stub.add_response("update_auto_scaling_group", {},
                          {"AutoScalingGroupName": "web-canary", "MinSize": 0, "DesiredCapacity": 0})
    asg_stub.add_response("update_auto_scaling_group", {},
                          {"AutoScalingGroupName": "web-baseline", "MinSize": 0, "DesiredCapacity": 0})
    outcome = actions.rollback("web-2", GROUPS, scaling)
    assert [s.group for s in outcome.steps] == ["web-canary", "web-baseline"]


def test_a_group_cannot_be_both_production_and_canary(aws):
    scaling, _, _ = aws
    with pytest.raises(actions.ActionError, match="also the canary"):
        actions.promote("web-2", actions.Groups("web", None, "web"), scaling)
    with pytest.raises(actions.ActionError, match="needs the production group"):
        actions.promote("web-2", actions.Groups("web-canary"), scaling)


def test_group_names_from_options_and_release():
    from gate.policy import parse_policy

    policy = parse_policy({
        "name": "web", "source": {"type": "datadog", "options": {
            "production_asg": "web-prod", "canary_asg": "web-canary-{release}"}},
        "canary": {"scope": "asg:web-canary"}, "baseline": {"scope": "asg:web-baseline"},
        "metrics": [{"name": "cpu", "kind": "gauge"}]})
    groups = actions.resolve_groups("r7", policy)
    # A Datadog scope is a tag filter, not a group name: only the named options are used.
    assert groups == actions.Groups(canary="web-canary-r7", baseline=None, production="web-prod")
    assert actions.resolve_groups("r7", policy, baseline="b").baseline == "b"
    with pytest.raises(actions.ActionError, match="not an Auto Scaling group name"):
        actions.resolve_groups("r7", None, canary="bad\nname")


def test_a_datadog_policy_names_the_groups_to_promote(aws, monkeypatch):
    """A Datadog scope is a tag filter: the groups come from source.options, which the Datadog
    source accepts (and ignores), as `gate promote --policy datadog.yaml --dry-run` reads them."""
    from pathlib import Path

    import yaml

    from gate.policy import parse_policy
    from gate.sources import open_source

    data = yaml.safe_load((Path(__file__).parents[1] / "examples" / "datadog.yaml").read_text())
    data["source"]["options"].update(production_asg="web-prod", canary_asg="web-canary",
                                     baseline_asg="web-{release}-baseline")
    policy = parse_policy(data)
    monkeypatch.setenv("DD_API_KEY", "k" * 32)
    monkeypatch.setenv("DD_APP_KEY", "a" * 40)
    open_source(policy)  # the source's own options check: no "Extra inputs"
    groups = actions.resolve_groups("2", policy)
    assert groups == actions.Groups(canary="web-canary", baseline="web-2-baseline", production="web-prod")
    scaling, asg_stub, _ = aws
    describe(asg_stub, group("web-prod", "1", 2, ["1", "1"]), group("web-canary", "2", 1, ["2"]),
             group("web-2-baseline", "1", 1, ["1"]))
    asg_stub.add_response("describe_instance_refreshes", {"InstanceRefreshes": []}, {"AutoScalingGroupName": "web-prod"})
    outcome = actions.promote("2", groups, scaling, dry_run=True)
    assert [s.group for s in outcome.steps] == ["web-prod", "web-prod"]


def test_no_region_says_aws_default_region(monkeypatch):
    from botocore.exceptions import NoRegionError

    message = str(actions._fail("update_auto_scaling_group", NoRegionError()))
    assert "AWS_DEFAULT_REGION" in message and "AWS_REGION " not in message


def test_aws_region_is_taken_when_botocore_finds_none(monkeypatch, tmp_path):
    from gate.errors import SourceError
    from gate.sources.cloudwatch import make_client

    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))  # no profile region either
    with pytest.raises(SourceError, match="set source.options.region or AWS_DEFAULT_REGION"):
        make_client("autoscaling", None)
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    assert make_client("autoscaling", None).meta.region_name == "eu-west-3"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")  # botocore's own variable wins
    assert make_client("autoscaling", None).meta.region_name == "us-west-2"
    assert make_client("autoscaling", "ap-south-1").meta.region_name == "ap-south-1"
