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


def scaled_down(stub):
    """Canary and baseline scaled to zero, in that order."""
    for name in ("web-canary", "web-baseline"):
        stub.add_response("update_auto_scaling_group", {},
                          {"AutoScalingGroupName": name, "MinSize": 0, "DesiredCapacity": 0})


def refreshed_then_scaled_down(stub, refresh_id):
    """Production on the release, its refresh `refresh_id` Successful: promote scales down."""
    describe(stub, group("web-prod", "2", 2, ["2", "2"]), group("web-canary", "2", 1, ["2"]),
             group("web-baseline", "1", 1, ["1"]))
    stub.add_response("describe_instance_refreshes", {"InstanceRefreshes": [
        {"InstanceRefreshId": refresh_id, "Status": "Successful", "PercentageComplete": 100}]},
        {"AutoScalingGroupName": "web-prod"})
    scaled_down(stub)


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
                             "is Successful: run promote again then (or promote --wait)"]
    assert store.events[0][:2] == ("web-2", "promote") and store.events[0][2]["strategy"] == "refresh"
    assert "error" not in store.events[0][2]
    assert store.events[0][2]["changes"][1]["instance_refresh_id"] == "r-1"  # which refresh, recorded


@pytest.mark.parametrize("status", ["InProgress", "Baking"])
def test_no_scale_down_while_the_refresh_is_not_over(aws, status):
    scaling, asg_stub, _ = aws  # every instance replaced, but the last checkpoint is not over
    describe(asg_stub, group("web-prod", "2", 2, ["2", "2"]), group("web-canary", "2", 1, ["2"]),
             group("web-baseline", "1", 1, ["1"]))
    asg_stub.add_response("describe_instance_refreshes", {"InstanceRefreshes": [
        {"InstanceRefreshId": "r-1", "Status": status, "PercentageComplete": 100}]},
        {"AutoScalingGroupName": "web-prod"})
    outcome = actions.promote("web-2", GROUPS, scaling)
    # Not "nothing to do": promote is not over, and says so.
    assert not outcome.nothing_to_do and outcome.in_progress and outcome.steps == []
    assert outcome.refresh == {"id": "r-1", "status": status, "percent": 100}
    assert actions.describe(outcome) == [
        "promote web-2: instance refresh r-1 in progress (100%): canary and baseline are scaled down once it "
        "succeeds; run promote again"]


def test_the_rerun_after_a_successful_refresh_scales_the_canary_down(aws):
    scaling, asg_stub, _ = aws
    refreshed_then_scaled_down(asg_stub, "r-1")
    store = Events()
    outcome = actions.promote("web-2", GROUPS, scaling, store=store)
    assert [s.group for s in outcome.steps] == ["web-canary", "web-baseline"] and outcome.notes == []
    assert len(store.events[0][2]["changes"]) == 2


@pytest.mark.parametrize("canary_size", [1, 0])
def test_promote_again_during_the_refresh_says_it_is_in_progress(aws, canary_size):
    scaling, asg_stub, ec2_stub = aws
    describe(asg_stub, group("web-prod", "2", 2, ["2", "1"]), group("web-canary", "2", canary_size, ["2"] * canary_size),
             group("web-baseline", "1", canary_size, ["1"] * canary_size))
    asg_stub.add_response("describe_instance_refreshes", {"InstanceRefreshes": [
        {"InstanceRefreshId": "r-1", "Status": "InProgress", "PercentageComplete": 50}]},
        {"AutoScalingGroupName": "web-prod"})
    store = Events()
    outcome = actions.promote("web-2", GROUPS, scaling, store=store)
    assert not outcome.nothing_to_do and outcome.in_progress and outcome.steps == []
    detail = store.events[0][2]
    assert detail["nothing_to_do"] is False and detail["in_progress"] is True
    assert detail["refresh"] == {"id": "r-1", "status": "InProgress", "percent": 50}
    assert actions.describe(outcome)[0] == (
        "promote web-2: instance refresh r-1 in progress (50%): canary and baseline are scaled down once it "
        "succeeds; run promote again")


def test_a_refresh_being_cancelled_is_not_called_in_progress(aws):
    scaling, asg_stub, _ = aws
    describe(asg_stub, group("web-prod", "2", 2, ["2", "1"]), group("web-canary", "2", 1, ["2"]),
             group("web-baseline", "1", 1, ["1"]))
    asg_stub.add_response("describe_instance_refreshes", {"InstanceRefreshes": [
        {"InstanceRefreshId": "r-1", "Status": "Cancelling", "PercentageComplete": 50}]},
        {"AutoScalingGroupName": "web-prod"})
    outcome = actions.promote("web-2", GROUPS, scaling)
    assert outcome.in_progress and not outcome.nothing_to_do
    line = actions.describe(outcome)[0]
    assert "r-1 is Cancelling (50%): it will not succeed" in line and "in progress" not in line


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
                         "is Successful: run promote again then (or promote --wait)")


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

    message = str(actions.action_error("update_auto_scaling_group", NoRegionError()))
    assert "AWS_DEFAULT_REGION" in message and "AWS_REGION " not in message


def test_aws_region_is_taken_when_botocore_finds_none(monkeypatch, tmp_path):
    from gate.errors import SourceError
    from gate.aws import make_client

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


# -- a refresh that did not succeed, and --wait ------------------------------------------------------


def failed_refresh(asg_stub, status, refresh_id="r-1"):
    asg_stub.add_response("describe_instance_refreshes", {"InstanceRefreshes": [
        {"InstanceRefreshId": refresh_id, "Status": status, "StatusReason": "instances failed health checks",
         "PercentageComplete": 40},
        {"InstanceRefreshId": "r-0", "Status": "Successful", "PercentageComplete": 100}]},
        {"AutoScalingGroupName": "web-prod"})


@pytest.mark.parametrize("status", ["Failed", "Cancelled", "RollbackSuccessful"])
def test_after_a_refresh_that_did_not_succeed_promote_refuses_unless_forced(aws, status):
    scaling, asg_stub, _ = aws  # a rolled-back refresh puts production back on its old version
    describe(asg_stub, group("web-prod", "1", 2, ["1", "1"]), group("web-canary", "2", 1, ["2"]),
             group("web-baseline", "1", 1, ["1"]))
    failed_refresh(asg_stub, status)
    store = Events()  # no update queued: the refusal changes nothing
    with pytest.raises(actions.RefreshFailed, match=rf"instance refresh of web-prod, r-1, ended {status} "
                                                    r"\(instances failed health checks\).*promote --force"):
        actions.promote("web-2", GROUPS, scaling, store=store)
    assert store.events == []
    # --force: a person looked; a new refresh starts, and the plan says which one it replaces.
    describe(asg_stub, group("web-prod", "1", 2, ["1", "1"]), group("web-canary", "2", 1, ["2"]),
             group("web-baseline", "1", 1, ["1"]))
    failed_refresh(asg_stub, status)
    asg_stub.add_response("update_auto_scaling_group", {})
    asg_stub.add_response("start_instance_refresh", {"InstanceRefreshId": "r-2"})
    outcome = actions.promote("web-2", GROUPS, scaling, store=store, force=True)
    assert [s.change.split()[0] for s in outcome.steps] == ["point", "start"]
    assert f"--force: a new instance refresh replaces r-1, which ended {status}" in outcome.notes


def test_a_failed_refresh_of_production_already_on_the_release_does_not_block(aws):
    scaling, asg_stub, _ = aws  # an old failure, then production was rolled out: nothing to refuse
    describe(asg_stub, group("web-prod", "2", 2, ["2", "2"]), group("web-canary", "2", 1, ["2"]),
             group("web-baseline", "1", 1, ["1"]))
    failed_refresh(asg_stub, "Failed")
    scaled_down(asg_stub)
    assert [s.group for s in actions.promote("web-2", GROUPS, scaling).steps] == ["web-canary", "web-baseline"]


class Clock:
    def __init__(self):
        self.now, self.slept = 0.0, []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def poll(asg_stub, refresh_id, *states):
    for status, percent in states:
        asg_stub.add_response("describe_instance_refreshes", {"InstanceRefreshes": [
            {"InstanceRefreshId": refresh_id, "Status": status, "PercentageComplete": percent,
             **({"StatusReason": "the refresh was rolled back"} if status.startswith("Rollback") else {})}]},
            {"AutoScalingGroupName": "web-prod", "InstanceRefreshIds": [refresh_id]})


def start_refresh(asg_stub):
    describe(asg_stub, group("web-prod", "1", 2, ["1", "1"]), group("web-canary", "2", 1, ["2"]),
             group("web-baseline", "1", 1, ["1"]))
    asg_stub.add_response("describe_instance_refreshes", {"InstanceRefreshes": []}, {"AutoScalingGroupName": "web-prod"})
    asg_stub.add_response("update_auto_scaling_group", {})
    asg_stub.add_response("start_instance_refresh", {"InstanceRefreshId": "r-2"})


def waiting(scaling):
    clock = Clock()
    scaling.clock, scaling.sleep = clock, clock.sleep
    return clock


def test_promote_wait_polls_the_refresh_then_scales_down(aws):
    scaling, asg_stub, _ = aws
    clock = waiting(scaling)
    start_refresh(asg_stub)
    poll(asg_stub, "r-2", ("Pending", 0), ("InProgress", 50), ("InProgress", 50), ("Successful", 100))
    # Then promote plans again: production on the release, the refresh over: scale down.
    refreshed_then_scaled_down(asg_stub, "r-2")
    store, seen = Events(), []
    outcome = actions.promote("web-2", GROUPS, scaling, store=store, wait=True, timeout=3600, on_progress=seen.append)
    assert [s.change.split()[0] for s in outcome.steps] == ["point", "start", "scale", "scale"]
    assert not outcome.in_progress and not outcome.nothing_to_do
    assert outcome.notes == ["instance refresh r-2 of web-prod: Successful"]
    assert [p["status"] for p in seen] == ["Pending", "InProgress", "Successful"]  # each change once
    assert clock.slept == [30, 30, 30]
    [(_, kind, detail)] = store.events  # one run, one record, with everything it did
    assert kind == "promote" and "error" not in detail and len(detail["changes"]) == 4


def test_promote_wait_on_a_refresh_going_on_finishes_it(aws):
    scaling, asg_stub, _ = aws
    waiting(scaling)
    describe(asg_stub, group("web-prod", "2", 2, ["2", "1"]), group("web-canary", "2", 1, ["2"]),
             group("web-baseline", "1", 1, ["1"]))
    asg_stub.add_response("describe_instance_refreshes", {"InstanceRefreshes": [
        {"InstanceRefreshId": "r-1", "Status": "InProgress", "PercentageComplete": 50}]},
        {"AutoScalingGroupName": "web-prod"})
    poll(asg_stub, "r-1", ("InProgress", 50), ("Successful", 100))
    refreshed_then_scaled_down(asg_stub, "r-1")
    outcome = actions.promote("web-2", GROUPS, scaling, wait=True)
    assert [s.group for s in outcome.steps] == ["web-canary", "web-baseline"] and not outcome.in_progress


@pytest.mark.parametrize("status", ["Failed", "Cancelled", "RollbackSuccessful"])
def test_promote_wait_on_a_refresh_that_does_not_succeed_fails_with_what_it_applied(aws, status):
    scaling, asg_stub, _ = aws
    waiting(scaling)
    start_refresh(asg_stub)
    poll(asg_stub, "r-2", ("InProgress", 20), (status, 40))  # no scale-down queued: any would fail the test
    store = Events()
    with pytest.raises(actions.RefreshFailed, match=rf"instance refresh r-2 of web-prod ended {status}.*"
                                                    "web-canary, web-baseline left up"):
        actions.promote("web-2", GROUPS, scaling, store=store, wait=True)
    [(_, kind, detail)] = store.events
    assert detail["error"].startswith(f"instance refresh r-2 of web-prod ended {status}")
    assert [s["change"].split()[0] for s in detail["applied"]] == ["point", "start"]
    assert detail["applied"][1]["instance_refresh_id"] == "r-2"
    assert detail["refresh"]["status"] == status


def test_promote_wait_gives_up_after_its_timeout(aws):
    scaling, asg_stub, _ = aws
    clock = waiting(scaling)
    start_refresh(asg_stub)
    poll(asg_stub, "r-2", ("InProgress", 10), ("InProgress", 20), ("InProgress", 30))
    store = Events()
    with pytest.raises(actions.ActionError, match=r"r-2 of web-prod still InProgress \(30%\) after 60s: "
                                                  "canary and baseline left up; run promote --wait again"):
        actions.promote("web-2", GROUPS, scaling, store=store, wait=True, timeout=60)
    assert clock.slept == [30, 30] and clock.now == 60
    assert [s["change"].split()[0] for s in store.events[0][2]["applied"]] == ["point", "start"]


def run_cli(monkeypatch, capsys, scaling, *args):
    from gate import cli

    monkeypatch.setattr(cli, "_groups_and_aws", lambda release, policy, **names: (GROUPS, scaling))
    monkeypatch.setattr("sys.argv", ["gate", *args])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    captured = capsys.readouterr()
    return exit_.value.code, captured.out, captured.err


def test_cli_promote_refuses_after_a_failed_refresh_with_exit_4(aws, monkeypatch, capsys, tmp_path):
    scaling, asg_stub, _ = aws
    describe(asg_stub, group("web-prod", "1", 2, ["1", "1"]), group("web-canary", "2", 1, ["2"]),
             group("web-baseline", "1", 1, ["1"]))
    failed_refresh(asg_stub, "RollbackSuccessful")
    code, out, err = run_cli(monkeypatch, capsys, scaling, "promote", "web-2", "--store", str(tmp_path / "g.sqlite"))
    assert code == 4 and out == ""
    assert "r-1, ended RollbackSuccessful" in err and "--force" in err


def test_cli_promote_wait_takes_a_timeout_and_says_the_refresh_is_in_progress(aws, monkeypatch, capsys, tmp_path):
    scaling, asg_stub, _ = aws
    waiting(scaling)
    describe(asg_stub, group("web-prod", "2", 2, ["2", "1"]), group("web-canary", "2", 1, ["2"]),
             group("web-baseline", "1", 1, ["1"]))
    asg_stub.add_response("describe_instance_refreshes", {"InstanceRefreshes": [
        {"InstanceRefreshId": "r-1", "Status": "InProgress", "PercentageComplete": 50}]},
        {"AutoScalingGroupName": "web-prod"})
    poll(asg_stub, "r-1", ("InProgress", 50), ("InProgress", 60))
    code, out, err = run_cli(monkeypatch, capsys, scaling, "promote", "web-2", "--wait", "--timeout", "30s",
                             "--store", str(tmp_path / "g.sqlite"))
    assert code == 4 and "still InProgress (60%) after 30s" in err
    assert "instance refresh r-1 of web-prod: InProgress (50%)" in err  # progress on stderr
    # Without --wait: the state, exit 0, not "nothing to do".
    describe(asg_stub, group("web-prod", "2", 2, ["2", "1"]), group("web-canary", "2", 1, ["2"]),
             group("web-baseline", "1", 1, ["1"]))
    asg_stub.add_response("describe_instance_refreshes", {"InstanceRefreshes": [
        {"InstanceRefreshId": "r-1", "Status": "InProgress", "PercentageComplete": 70}]},
        {"AutoScalingGroupName": "web-prod"})
    code, out, err = run_cli(monkeypatch, capsys, scaling, "promote", "web-2", "--json",
                             "--store", str(tmp_path / "g.sqlite"))
    import json

    answer = json.loads(out)
    assert code == 0 and answer["nothing_to_do"] is False and answer["in_progress"] is True
    assert answer["refresh"] == {"id": "r-1", "status": "InProgress", "percent": 70}
