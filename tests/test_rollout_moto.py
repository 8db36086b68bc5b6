"""`gate rollout`: traffic steps on an ALB listener of a moto server (weighted forward actions),
judged on the simulated service. The step machine runs on a virtual clock (the simulated service
answers any moment); the command line runs for real (one look per run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from gate.analysis import Analysis
from gate.demo import DEMO_POLICY, SIMULATED_WEEK
from gate.actions import ActionError
from gate.errors import PolicyError
from gate.policy import json_schema, parse_policy
from gate.rollout import Rollout, RolloutError
from gate.sources.simulate import ONSET, SimulateSource
from gate.store import SqliteStore
from gate.traffic import Forward
from tests.alb import forward, weighted_listener
from tests.conftest import run_gate
from tests.moto_server import moto_server  # noqa: F401  (fixture)

DEPLOYED_AT = SIMULATED_WEEK + 12 * 3600  # noon of the simulated Monday
STEP_LIFETIME = 1200  # 20 min: the demo policy's interval is 1 min


@pytest.fixture
def alb(moto_server):  # noqa: F811
    """An ALB whose listener forwards production 100, canary 0, baseline 0 (one weighted action)."""
    moto_server.reset()
    ec2, elbv2 = moto_server.client("ec2"), moto_server.client("elbv2")
    listener, groups = weighted_listener(ec2, elbv2, production=100, canary=0, baseline=0)
    return {"elbv2": elbv2, "listener": listener, "groups": groups, "server": moto_server}


def split(alb) -> dict:
    """The listener's weights by group name."""
    action = alb["elbv2"].describe_listeners(ListenerArns=[alb["listener"]])["Listeners"][0]["DefaultActions"][0]
    names = {arn: name for name, arn in alb["groups"].items()}
    return {names[g["TargetGroupArn"]]: g["Weight"] for g in action["ForwardConfig"]["TargetGroups"]}


def rollout_section(alb, **changes) -> dict:
    return {"listener_arn": alb["listener"], "canary_target_group": alb["groups"]["canary"],
            "production_target_group": alb["groups"]["production"],
            "baseline_target_group": alb["groups"]["baseline"], "steps": [5, 25, 45],
            "step_lifetime": STEP_LIFETIME, **changes}


def policy_for(alb, **changes):
    return parse_policy({**DEMO_POLICY, "rollout": rollout_section(alb, **changes)})


class Clock:
    def __init__(self, at: int):
        self.at = at

    def __call__(self) -> float:
        return self.at


def machine(alb, store, source, clock, policy=None) -> Rollout:
    policy = policy or policy_for(alb)
    release = Analysis(policy, source, "web-2", DEPLOYED_AT, store=store)
    return Rollout(release, Forward(alb["elbv2"], policy.rollout), clock=clock)


def run(make, clock, on_look=None, limit: int = 200):
    """Looks every interval (a fresh machine each time, as separate runs would be) until the
    rollout is over; the looks."""
    looks = []
    for _ in range(limit):
        look = make().tick(int(clock.at))
        looks.append(look)
        if on_look is not None:
            on_look(look)
        if look.final:
            return looks
        clock.at += 60
    raise AssertionError(f"not over after {limit} looks: {looks[-1].summary()}")


def test_a_full_rollout_passes_every_step_then_exits_0(alb, tmp_path):
    store, clock, source = SqliteStore(tmp_path / "gate.sqlite"), Clock(DEPLOYED_AT), SimulateSource("healthy", 7)
    seen = {}

    def weights_at_each_step(look):
        seen.setdefault(look.step, split(alb))

    looks = run(lambda: machine(alb, store, source, clock), clock, weights_at_each_step)
    assert [look.status for look in looks][0] == "started"
    assert [look.step for look in looks if look.status in ("started", "advanced")] == [1, 2, 3]
    assert looks[-1].status == "complete" and looks[-1].exit_code == 0
    assert looks[-1].to_dict()["verdict"] == "pass" and looks[-1].to_dict()["rollout"]["step_verdict"] == "pass"
    # A step's pass is not the release's: every look before the last says inconclusive (exit 3).
    assert all(look.exit_code == 3 and look.to_dict()["verdict"] == "inconclusive" for look in looks[:-1])
    assert seen == {1: {"production": 90, "canary": 5, "baseline": 5},
                    2: {"production": 50, "canary": 25, "baseline": 25},
                    3: {"production": 10, "canary": 45, "baseline": 45}}
    changes = store.traffic("web-2")
    assert [(c["step"], c["percent"], c["allowed_by"]["verdict"]) for c in changes] == \
        [(1, 5, "start"), (2, 25, "pass"), (3, 45, "pass")]
    # Each step was judged on its own window: its verdicts came after its weights were set.
    passes = [e for e in store.evaluations("web-2") if e["verdict"] == "pass"]
    assert [p["payload"]["deployed_at"] for p in passes] == [iso_of(c["set_at"]) for c in changes]
    # Run again once complete: still complete, nothing judged or changed.
    again = machine(alb, store, source, clock).tick(int(clock.at) + 600)
    assert again.status == "complete" and again.exit_code == 0 and len(store.traffic("web-2")) == 3


def iso_of(t: int) -> str:
    from gate.verdict import iso

    return iso(t)


def inject_at_step(source: SimulateSource, step: int, scenario: str, clock: Clock):
    """The fault starts the moment the rollout reaches `step` (the simulated canary misbehaves
    ONSET after its deploy time: that is moved back by ONSET)."""
    def on_look(look):
        if look.status == "advanced" and look.step == step and source.scenario == "healthy":
            source.scenario, source.deployed_at = scenario, int(clock.at) - ONSET
    return on_look


@pytest.mark.parametrize("scenario", ["payment_failures", "bad_version"])
def test_a_fail_at_the_second_step_sends_the_canary_back_to_0_at_once_and_exits_1(alb, tmp_path, scenario):
    store, clock, source = SqliteStore(tmp_path / "gate.sqlite"), Clock(DEPLOYED_AT), SimulateSource("healthy", 7)
    weights_after = []
    inject = inject_at_step(source, 2, scenario, clock)

    def on_look(look):
        inject(look)
        weights_after.append(split(alb))

    looks = run(lambda: machine(alb, store, source, clock), clock, on_look)
    last = looks[-1]
    assert (last.status, last.step, last.exit_code) == ("rolled_back", 0, 1)
    assert last.verdict is not None and last.verdict.verdict == "fail"
    assert last.to_dict()["verdict"] == "fail" and last.to_dict()["rollout"]["step_verdict"] == "fail"
    # The look that judged the fail set the weights back: no later look, no 25% left behind.
    assert weights_after[-1] == {"production": 100, "canary": 0, "baseline": 0}
    assert weights_after[-2] == {"production": 50, "canary": 25, "baseline": 25}
    changes = store.traffic("web-2")
    assert [(c["step"], c["allowed_by"]["verdict"]) for c in changes] == [(1, "start"), (2, "pass"), (0, "fail")]
    # Judged at the 25% step: the evaluations after it started, to the fail.
    at_step_two = [e for e in store.evaluations("web-2") if e["evaluated_at"] > changes[1]["set_at"]]
    print(f"\n{scenario} at the 25% step: failed at its evaluation {len(at_step_two)}")
    assert at_step_two[-1]["verdict"] == "fail" and len(at_step_two) <= 4  # 5 points: the judge's MIN_POINTS_TO_FAIL
    # Looked at again: rolled back, nothing judged, nothing changed.
    again = machine(alb, store, source, clock).tick(int(clock.at) + 60)
    assert (again.status, again.exit_code) == ("rolled_back", 1) and len(store.traffic("web-2")) == 3


class Crash(Exception):
    """The process dies here (the store write never happens)."""


def crash_when_recording(store, step: int):
    """The store's record_traffic dies for `step` (after the listener took the change)."""
    real = store.record_traffic

    def record(release, change):
        if change["step"] == step:
            raise Crash(f"killed before recording step {step}")
        real(release, change)
    return record


def test_a_crash_between_weights_set_and_recorded_resumes_at_the_listener_s_step(alb, tmp_path, monkeypatch):
    store, clock, source = SqliteStore(tmp_path / "gate.sqlite"), Clock(DEPLOYED_AT), SimulateSource("healthy", 7)
    monkeypatch.setattr(store, "record_traffic", crash_when_recording(store, 2))
    with pytest.raises(Crash):
        run(lambda: machine(alb, store, source, clock), clock)
    assert split(alb)["canary"] == 25  # the listener took step 2...
    assert [c["step"] for c in store.traffic("web-2")] == [1]  # ...the store did not
    monkeypatch.undo()

    # The next run recognises its own change (step 2's weights after a recorded pass of step 1),
    # records it, and goes on from there: step 2 is not set twice, nor step 3 skipped to.
    clock.at += 60
    resumed = machine(alb, store, source, clock).tick(int(clock.at))
    assert resumed.step == 2 and resumed.status == "judging"
    changes = store.traffic("web-2")
    assert [(c["step"], c.get("recovered", False)) for c in changes] == [(1, False), (2, True)]
    assert changes[1]["allowed_by"]["verdict"] == "pass"
    looks = run(lambda: machine(alb, store, source, clock), clock)
    assert looks[-1].status == "complete" and [c["step"] for c in store.traffic("web-2")] == [1, 2, 3]


def test_a_crash_between_the_rollback_and_its_record_is_a_rollback(alb, tmp_path, monkeypatch):
    store, clock, source = SqliteStore(tmp_path / "gate.sqlite"), Clock(DEPLOYED_AT), SimulateSource("healthy", 7)
    monkeypatch.setattr(store, "record_traffic", crash_when_recording(store, 0))
    with pytest.raises(Crash):
        run(lambda: machine(alb, store, source, clock), clock, inject_at_step(source, 2, "payment_failures", clock))
    assert split(alb)["canary"] == 0 and [c["step"] for c in store.traffic("web-2")] == [1, 2]
    monkeypatch.undo()
    again = machine(alb, store, source, clock).tick(int(clock.at) + 60)
    assert (again.status, again.exit_code) == ("rolled_back", 1)
    assert [(c["step"], c.get("recovered", False)) for c in store.traffic("web-2")][-1] == (0, True)


def test_weights_changed_by_someone_else_stop_the_rollout_never_pass(alb, tmp_path):
    store, clock, source = SqliteStore(tmp_path / "gate.sqlite"), Clock(DEPLOYED_AT), SimulateSource("healthy", 7)
    assert machine(alb, store, source, clock).tick(int(clock.at)).status == "started"
    # Someone sets the canary to 40 by hand mid-rollout.
    alb["elbv2"].modify_listener(ListenerArn=alb["listener"], DefaultActions=[forward(
        alb["groups"], production=20, canary=40, baseline=40)])
    clock.at += 600
    with pytest.raises(RolloutError, match="changed by someone else: canary 40, baseline 40, production 20, "
                                           "where this rollout set canary 5, baseline 5, production 90"):
        machine(alb, store, source, clock).tick(int(clock.at))
    assert split(alb)["canary"] == 40  # left as found: someone else is in charge
    # Even the next step's exact weights are someone else's without a recorded pass of this one.
    alb["elbv2"].modify_listener(ListenerArn=alb["listener"], DefaultActions=[forward(
        alb["groups"], production=50, canary=25, baseline=25)])
    with pytest.raises(RolloutError, match="changed by someone else"):
        machine(alb, store, source, clock).look(int(clock.at))


def test_a_step_is_advanced_only_after_a_recorded_pass(alb, tmp_path):
    store, clock, source = SqliteStore(tmp_path / "gate.sqlite"), Clock(DEPLOYED_AT), SimulateSource("healthy", 7)
    first = machine(alb, store, source, clock).advance(1)
    assert first.status == "started" and split(alb)["canary"] == 5
    assert machine(alb, store, source, clock).advance(1).notes == ["already at this step"]  # a retry
    with pytest.raises(RolloutError, match="step 2 is not allowed now: the rollout is at step 1, undecided"):
        machine(alb, store, source, clock).advance(2)
    assert split(alb)["canary"] == 5


# -- the command line: one look per run, for real ------------------------------------------------


def write_policy(alb, tmp_path: Path, **changes) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({**DEMO_POLICY, "rollout": rollout_section(alb, **changes)}))
    return path


def gate(alb, tmp_path: Path, *args: str):
    return run_gate(*args, "--store", tmp_path / "gate.sqlite", env=alb["server"].env, cwd=tmp_path, timeout=120)


def test_the_command_starts_resumes_and_stops_on_a_foreign_change(alb, tmp_path):
    policy = write_policy(alb, tmp_path)
    dry = gate(alb, tmp_path, "rollout", "web-3", "--policy", policy, "--dry-run", "--json")
    assert dry.returncode == 3, dry.stderr
    assert json.loads(dry.stdout)["rollout"]["notes"] == ["dry run: nothing changed"]
    assert split(alb)["canary"] == 0  # a dry run changes no weight

    started = gate(alb, tmp_path, "rollout", "web-3", "--policy", policy, "--json")
    assert started.returncode == 3, started.stderr
    answer = json.loads(started.stdout)
    assert answer["verdict"] == "inconclusive" and answer["exit_code"] == 3
    assert answer["rollout"] | {"notes": []} == {"status": "started", "step": 1, "of": 3, "percent": 5,
                                                 "steps": [5, 25, 45], "step_verdict": None, "next_step": None,
                                                 "notes": []}
    assert split(alb) == {"production": 90, "canary": 5, "baseline": 5}

    resumed = gate(alb, tmp_path, "rollout", "web-3", "--policy", policy, "--json")
    assert resumed.returncode == 3, resumed.stderr
    assert json.loads(resumed.stdout)["rollout"]["status"] == "judging" and split(alb)["canary"] == 5

    history = gate(alb, tmp_path, "history", "web-3")
    assert history.returncode == 0 and "traffic 5% (step 1 of 3)" in history.stdout
    assert "the rollout starts" in history.stdout

    alb["elbv2"].modify_listener(ListenerArn=alb["listener"], DefaultActions=[forward(
        alb["groups"], production=60, canary=20, baseline=20)])
    stopped = gate(alb, tmp_path, "rollout", "web-3", "--policy", policy, "--json")
    assert stopped.returncode == 4 and stopped.stdout == ""
    assert stopped.stderr.count("\n") == 1 and "changed by someone else" in stopped.stderr
    assert "Traceback" not in stopped.stderr


def canary_group(alb):
    """The canary's Auto Scaling group (web-canary, one instance) on the moto server; its client."""
    autoscaling = alb["server"].client("autoscaling")
    template = alb["server"].client("ec2").create_launch_template(
        LaunchTemplateName="web", LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"},
    )["LaunchTemplate"]["LaunchTemplateId"]
    autoscaling.create_auto_scaling_group(AutoScalingGroupName="web-canary", MinSize=1, MaxSize=2, DesiredCapacity=1,
                                          LaunchTemplate={"LaunchTemplateId": template, "Version": "1"},
                                          AvailabilityZones=["us-east-1a"])
    return autoscaling


def test_gate_rollback_sends_the_rollout_s_traffic_back_to_production(alb, tmp_path):
    canary_group(alb)
    policy = write_policy(alb, tmp_path)
    assert gate(alb, tmp_path, "rollout", "web-4", "--policy", policy).returncode == 3
    assert split(alb)["canary"] == 5

    plan = gate(alb, tmp_path, "rollback", "web-4", "--policy", policy, "--canary-asg", "web-canary",
                "--dry-run", "--json")
    assert plan.returncode == 0, plan.stderr
    changes = [c["change"] for c in json.loads(plan.stdout)["changes"]]
    assert changes[0].startswith("send the canary's traffic back to production (canary 5, baseline 5, "
                                 "production 90 -> canary 0, baseline 0, production 100)")
    assert changes[1].startswith("scale web-canary to zero")  # after the traffic has left it
    assert split(alb)["canary"] == 5

    done = gate(alb, tmp_path, "rollback", "web-4", "--policy", policy, "--canary-asg", "web-canary", "--json")
    assert done.returncode == 0, done.stderr
    assert split(alb) == {"production": 100, "canary": 0, "baseline": 0}
    again = gate(alb, tmp_path, "rollback", "web-4", "--policy", policy, "--canary-asg", "web-canary", "--json")
    assert json.loads(again.stdout)["nothing_to_do"]  # safe to run again
    # The rollout knows: rolled back, exit 1, and the weights stay at 0.
    after = gate(alb, tmp_path, "rollout", "web-4", "--policy", policy, "--json")
    assert after.returncode == 1 and json.loads(after.stdout)["rollout"]["status"] == "rolled_back"
    assert split(alb)["canary"] == 0
    store = SqliteStore(tmp_path / "gate.sqlite")
    assert [(c["step"], c["by"]) for c in store.traffic("web-4")] == [(1, "rollout"), (0, "rollback")]


def refuse_elbv2(monkeypatch, operation: str, times: int | None, code: str = "AccessDenied",
                 status: int = 403, answer: dict | None = None) -> list[str]:
    """The gate's elbv2 clients get `code` (HTTP `status`) for `operation` (the first `times`
    calls; None: every call), short-circuited on a before-call hook as botocore's Stubber does;
    with `answer`, that answer instead (a call AWS says it did, without doing it). Every other call
    reaches the moto server. The calls refused, in order."""
    from botocore.awsrequest import AWSResponse

    import gate.aws

    refused: list[str] = []
    make_client = gate.aws.make_client

    def hook(**_):
        if times is not None and len(refused) >= times:
            return None
        refused.append(operation)
        if answer is not None:
            return AWSResponse(None, 200, {}, None), answer
        return AWSResponse(None, status, {}, None), {
            "Error": {"Code": code, "Message": f"{code}: not allowed to perform {operation} now"},
            "ResponseMetadata": {"HTTPStatusCode": status}}

    def client(service, *args, **kwargs):
        made = make_client(service, *args, **kwargs)
        if service == "elbv2":
            made.meta.events.register(f"before-call.elastic-load-balancing-v2.{operation}", hook)
        return made

    monkeypatch.setattr(gate.aws, "make_client", client)
    return refused


def rollback_in_process(monkeypatch, capsys, tmp_path, *args):
    from gate import cli

    monkeypatch.setattr("sys.argv", ["gate", "rollback", *args, "--store", str(tmp_path / "gate.sqlite"), "--json"])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    captured = capsys.readouterr()
    return exit_.value.code, captured.out, captured.err


def baseline_group(autoscaling) -> None:
    """The baseline's Auto Scaling group (web-baseline, one instance), from web-canary's template."""
    template = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["web-canary"])[
        "AutoScalingGroups"][0]["LaunchTemplate"]["LaunchTemplateId"]
    autoscaling.create_auto_scaling_group(AutoScalingGroupName="web-baseline", MinSize=1, MaxSize=2,
                                          DesiredCapacity=1, AvailabilityZones=["us-east-1a"],
                                          LaunchTemplate={"LaunchTemplateId": template, "Version": "1"})


def desired(autoscaling) -> dict[str, int]:
    return {g["AutoScalingGroupName"]: g["DesiredCapacity"]
            for g in autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]}


def rolled_out_with_both_groups(alb, tmp_path):
    """A rollout at its first step (canary 5, baseline 5, production 90), the canary and baseline
    groups up; their client and the policy's path."""
    autoscaling = canary_group(alb)
    baseline_group(autoscaling)
    policy = write_policy(alb, tmp_path)
    assert gate(alb, tmp_path, "rollout", "web-4", "--policy", policy).returncode == 3
    assert split(alb) == {"production": 90, "canary": 5, "baseline": 5}
    return autoscaling, policy


def rollback_both(monkeypatch, capsys, tmp_path, policy):
    return rollback_in_process(monkeypatch, capsys, tmp_path, "web-4", "--policy", str(policy),
                               "--canary-asg", "web-canary", "--baseline-asg", "web-baseline")


def rollback_event(tmp_path) -> dict:
    (event,) = [e for e in SqliteStore(tmp_path / "gate.sqlite").events("web-4") if e["kind"] == "rollback"]
    return event["detail"]


def test_a_listener_that_cannot_be_read_stops_the_rollback_before_any_scaling(alb, tmp_path, monkeypatch, capsys):
    """Review (doors): with the listener unreadable, the groups were scaled down all the same
    while their target groups kept their weights: the load balancer's share sent to empty groups
    (503s). Now nothing scales: exit 4, saying the shares are unknown and what to do."""
    autoscaling, policy = rolled_out_with_both_groups(alb, tmp_path)
    refused = refuse_elbv2(monkeypatch, "DescribeListeners", None)
    code, out, err = rollback_both(monkeypatch, capsys, tmp_path, policy)
    assert code == 4 and out == "" and len(refused) == 2, err  # read at the plan, read again to apply
    assert desired(autoscaling) == {"web-canary": 1, "web-baseline": 1}
    assert split(alb) == {"production": 90, "canary": 5, "baseline": 5}
    assert "the listener still could not be read" in err and "AccessDenied" in err
    assert "the canary's and baseline's shares of the traffic are unknown; nothing was scaled down" in err
    assert "run `gate rollback` again or set" in err and "weights by hand" in err and "Traceback" not in err
    detail = rollback_event(tmp_path)
    assert "AccessDenied" in detail["error"] and detail["applied"] == []


@pytest.mark.parametrize("code, status", [("AccessDenied", 403), ("Throttling", 400), ("ServiceUnavailable", 503)])
def test_a_listener_read_fault_that_clears_is_read_again_when_the_rollback_applies(alb, tmp_path, monkeypatch,
                                                                                  capsys, code, status):
    autoscaling, policy = rolled_out_with_both_groups(alb, tmp_path)
    refused = refuse_elbv2(monkeypatch, "DescribeListeners", 1, code, status)
    code_, out, err = rollback_both(monkeypatch, capsys, tmp_path, policy)
    assert code_ == 0, err
    assert refused == ["DescribeListeners"]
    assert split(alb) == {"production": 100, "canary": 0, "baseline": 0}
    assert desired(autoscaling) == {"web-canary": 0, "web-baseline": 0}
    changes = [c["change"] for c in json.loads(out)["changes"]]
    assert changes[0].startswith("send the canary's traffic back to production (unknown: the listener could not "
                                 "be read (") and code in changes[0]
    assert [(c["step"], c["by"]) for c in SqliteStore(tmp_path / "gate.sqlite").traffic("web-4")] == [
        (1, "rollout"), (0, "rollback")]


def test_a_listener_that_lost_the_policy_s_production_group_is_refused_untouched(alb, tmp_path, monkeypatch, capsys):
    """Review (doors): production moved to another target group (blue/green) with the canary at
    5%; the rollback took the refusal for an unreadable listener and wrote the policy's weights:
    the live production group 0, the stale one (no targets) 100, exit 0. Refused, as on main."""
    autoscaling, policy = rolled_out_with_both_groups(alb, tmp_path)
    elbv2 = alb["elbv2"]
    vpc = elbv2.describe_target_groups(TargetGroupArns=[alb["groups"]["production"]])["TargetGroups"][0]["VpcId"]
    blue = elbv2.create_target_group(Name="web-blue", Protocol="HTTP", Port=80, VpcId=vpc)["TargetGroups"][0][
        "TargetGroupArn"]
    alb["groups"] = {**alb["groups"], "blue": blue}
    elbv2.modify_listener(ListenerArn=alb["listener"], DefaultActions=[forward(alb["groups"], blue=90, canary=5,
                                                                               baseline=5)])
    code, out, err = rollback_both(monkeypatch, capsys, tmp_path, policy)
    assert code == 4 and out == ""
    assert "does not hold rollout.production_target_group" in err and "Traceback" not in err
    assert split(alb) == {"blue": 90, "canary": 5, "baseline": 5}
    assert desired(autoscaling) == {"web-canary": 1, "web-baseline": 1}


def test_weights_are_never_written_over_a_forward_without_the_policy_s_groups(alb):
    from gate.traffic import step_weights

    policy = policy_for(alb)
    elbv2 = alb["elbv2"]
    elbv2.modify_listener(ListenerArn=alb["listener"], DefaultActions=[forward(alb["groups"], canary=5, baseline=5)])
    with pytest.raises(ActionError, match="does not hold rollout.production_target_group"):
        Forward(elbv2, policy.rollout).set(step_weights(policy.rollout, 0))
    assert split(alb) == {"canary": 5, "baseline": 5}


def test_a_listener_write_refused_scales_nothing_and_says_the_shares(alb, tmp_path, monkeypatch, capsys):
    """Review (doors): ModifyListener refused, the canary and baseline groups were scaled to zero
    all the same while their target groups kept 5% each (at step 3, 45% each: 90% of requests
    answered 503). Now: exit 4, nothing scaled, the shares said."""
    autoscaling, policy = rolled_out_with_both_groups(alb, tmp_path)
    refused = refuse_elbv2(monkeypatch, "ModifyListener", None)
    code, out, err = rollback_both(monkeypatch, capsys, tmp_path, policy)
    assert code == 4 and out == "" and refused == ["ModifyListener"], err
    assert desired(autoscaling) == {"web-canary": 1, "web-baseline": 1}
    assert split(alb) == {"production": 90, "canary": 5, "baseline": 5}
    assert "could not send the canary's traffic back to production" in err and "AccessDenied" in err
    assert "the canary takes 5% of the traffic and the baseline 5%; nothing was scaled down" in err
    assert "run `gate rollback` again or set" in err
    assert rollback_event(tmp_path)["applied"] == []


def test_a_listener_write_not_seen_afterwards_scales_nothing(alb, tmp_path, monkeypatch, capsys):
    """A write AWS answers as done but the listener read back still weights the canary (another
    writer, a lost update): the groups behind weighted target groups are not scaled."""
    autoscaling, policy = rolled_out_with_both_groups(alb, tmp_path)
    refuse_elbv2(monkeypatch, "ModifyListener", None, answer={"Listeners": []})
    code, out, err = rollback_both(monkeypatch, capsys, tmp_path, policy)
    assert code == 4 and out == "", err
    assert desired(autoscaling) == {"web-canary": 1, "web-baseline": 1}
    assert "the listener was written but reads canary 5, baseline 5, production 90" in err
    assert "the canary takes 5% of the traffic and the baseline 5%" in err


def test_a_policy_without_a_rollout_section_is_refused(alb, tmp_path):
    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump(DEMO_POLICY))
    result = gate(alb, tmp_path, "rollout", "web-5", "--policy", path)
    assert result.returncode == 4 and "rollout: the policy has no rollout section" in result.stderr


# -- the policy section ----------------------------------------------------------------------------

ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:"
SECTION = {"listener_arn": ARN + "listener/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2",
           "canary_target_group": ARN + "targetgroup/web-canary/73e2d6bc24d8a067",
           "production_target_group": ARN + "targetgroup/web-prod/2a6e1c0d5b3e9f41",
           "steps": [5, 25, 50], "step_lifetime": "10m"}


@pytest.mark.parametrize("changes, message", [
    ({"steps": [25, 5]}, "rollout: steps must increase strictly, got [25, 5]"),
    ({"steps": []}, "rollout.steps: List should have at least 1 item"),
    ({"steps": [0, 50]}, "rollout.steps.0: Input should be greater than or equal to 1"),
    ({"steps": [5, 101]}, "rollout.steps.1: Input should be less than or equal to 100"),
    ({"rule_arn": ARN + "listener-rule/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2/9683b2d02a6cabee"},
     "rollout: give exactly one of listener_arn (its default action) and rule_arn"),
    ({"listener_arn": None}, "rollout: give exactly one of listener_arn"),
    ({"listener_arn": "web-listener"}, "rollout.listener_arn: String should match pattern"),
    ({"canary_target_group": SECTION["production_target_group"]},
     "rollout: the canary, production and baseline target groups must be different"),
    ({"baseline_target_group": ARN + "targetgroup/web-base/1"}, "a step may be at most 49 (got 50)"),
    ({"step_lifetime": "30s"}, "rollout.step_lifetime (30 s) must be at least one interval (60 s)"),
    ({"step_lifetime": "2d"}, "rollout.step_lifetime: must be between 10s and 1d"),
    ({"weights": [1]}, "rollout.weights: Extra inputs are not permitted"),
])
def test_a_bad_rollout_section_names_its_field(changes, message):
    with pytest.raises(PolicyError) as caught:
        parse_policy({**DEMO_POLICY, "rollout": {**SECTION, **changes}}, origin="p.yaml")
    assert message in str(caught.value)


def test_the_steps_fit_the_policy_s_timing_rules():
    with pytest.raises(PolicyError, match=r"the rollout's 3 steps of rollout.step_lifetime \(1500 s\) must fit in "
                                          r"the lifetime \(3600 s\)"):
        parse_policy({**DEMO_POLICY, "rollout": {**SECTION, "step_lifetime": "25m"}})
    with pytest.raises(PolicyError, match=r"min_duration \(900 s\) must not exceed rollout.step_lifetime \(600 s\)"):
        parse_policy({**DEMO_POLICY, "min_duration": "15m", "rollout": SECTION})
    with pytest.raises(PolicyError, match=r"warmup \(240 s\) must be at most a quarter of rollout.step_lifetime"):
        parse_policy({**DEMO_POLICY, "warmup": "4m", "rollout": SECTION})
    policy = parse_policy({**DEMO_POLICY, "rollout": SECTION})
    assert policy.step_policy().lifetime == 600 and policy.step_policy().rollout is None
    assert policy.rollout.forward_arn == SECTION["listener_arn"]


def test_the_schema_and_the_example_policy_have_the_rollout_section():
    schema = json.loads(json_schema())
    assert "rollout" in schema["properties"]
    rollout = schema["$defs"]["Rollout"]
    assert set(rollout["required"]) == {"canary_target_group", "production_target_group", "steps", "step_lifetime"}
    example = Path(__file__).resolve().parents[1] / "examples" / "cloudwatch.yaml"
    policy = parse_policy(yaml.safe_load(example.read_text()))  # as the README's `gate rollout` reads it
    assert policy.rollout is not None and policy.rollout.steps == [5, 25, 45]
    assert len(policy.rollout.steps) * policy.rollout.step_lifetime <= policy.lifetime


def test_the_report_of_a_rolled_back_rollout_draws_its_steps(alb, tmp_path):
    from gate.report import rebuild, report_for

    store, clock, source = SqliteStore(tmp_path / "gate.sqlite"), Clock(DEPLOYED_AT), SimulateSource("healthy", 7)
    machines = []

    def make():
        machines.append(machine(alb, store, source, clock))
        return machines[-1]

    run(make, clock, inject_at_step(source, 2, "payment_failures", clock))
    location = report_for(machines[-1].judged, machines[-1].evaluation, store, out=tmp_path / "report.html")
    for document in (Path(location).read_text(), rebuild(store, "web-2")):
        strip = document[document.index("traffic steps"):]
        assert [label in strip for label in (">5% ", ">25% ", ">0% ")] == [True, True, True]
        assert "#2b8a3e" in strip and "#c92a2a" in strip  # 5% passed, 25% failed


@pytest.mark.parametrize("backend", ["sqlite", "dynamodb"])
def test_both_stores_keep_traffic_changes_in_order_per_release(moto_server, tmp_path, backend):  # noqa: F811
    from gate.store.dynamodb import DynamoStore
    from tests.test_store_dynamodb import create_store_table

    moto_server.reset()
    if backend == "dynamodb":
        create_store_table("gate")
        store = DynamoStore("gate")
    else:
        store = SqliteStore(tmp_path / "gate.sqlite")
    changes = [{"step": 1, "percent": 5, "set_at": 1000, "weights": {"a": 5, "b": 95}},
               {"step": 2, "percent": 25, "set_at": 1000, "weights": {"a": 25, "b": 75}},  # the same second
               {"step": 0, "percent": 0, "set_at": 1001, "weights": {"a": 0, "b": 100}, "recovered": True}]
    for change in changes:
        store.record_traffic("web-2", change)
    store.record_traffic("web-3", changes[0])
    assert store.traffic("web-2") == changes
    assert store.traffic("web-3") == changes[:1] and store.traffic("web-4") == []
    assert store.evaluations("web-2") == [] and store.events("web-2") == []  # an item type of its own


def test_a_forward_action_without_the_named_target_groups_is_could_not_judge(alb, tmp_path):
    alb["elbv2"].modify_listener(ListenerArn=alb["listener"], DefaultActions=[forward(
        alb["groups"], production=100, canary=0)])
    result = gate(alb, tmp_path, "rollout", "web-6", "--policy", write_policy(alb, tmp_path))
    assert result.returncode == 4 and result.stderr.count("\n") == 1
    assert "does not hold rollout.baseline_target_group" in result.stderr
    assert split(alb) == {"production": 100, "canary": 0}  # nothing changed


def test_only_the_step_s_own_judgement_lets_it_advance(alb, tmp_path):
    """A whole-release `gate check` of the same release (its own window, another lifetime) once
    counted as the step's pass when it fell in the step's minutes: the step advanced unjudged."""
    store, clock, source = SqliteStore(tmp_path / "gate.sqlite"), Clock(DEPLOYED_AT + 2400), SimulateSource("healthy", 7)
    policy = policy_for(alb)
    assert machine(alb, store, source, clock).tick(int(clock.at)).status == "started"
    whole = Analysis(policy, source, "web-2", DEPLOYED_AT, store=store)
    t = int(clock.at)
    while True:
        t += 60
        if whole.evaluate(t).verdict == "pass":  # recorded in the store, in step 1's minutes
            break
    clock.at = t
    look = machine(alb, store, source, clock).tick(int(clock.at))
    assert look.status == "judging" and look.step == 1, look.summary()
    assert split(alb)["canary"] == 5 and [c["step"] for c in store.traffic("web-2")] == [1]


def test_a_step_verdict_recorded_late_does_not_pass_the_next_step(alb, tmp_path):
    """Two runners: a slow one records its step-1 verdict after the other moved to step 2; that
    verdict judged step 1's window, not step 2's."""
    store, clock, source = SqliteStore(tmp_path / "gate.sqlite"), Clock(DEPLOYED_AT), SimulateSource("healthy", 7)
    looks = []
    while not any(look.status == "advanced" for look in looks):
        looks.append(machine(alb, store, source, clock).tick(int(clock.at)))
        clock.at += 60
    first, second = store.traffic("web-2")[:2]
    slow = machine(alb, store, source, clock)
    slow.step_analysis(first).evaluate(second["set_at"] + 5)  # step 1's analysis, recorded now
    clock.at = second["set_at"] + 60
    look = machine(alb, store, source, clock).tick(int(clock.at))
    assert look.step == 2 and look.status == "judging", look.summary()


def test_a_look_ahead_of_the_clock_is_refused(alb, tmp_path):
    store, clock, source = SqliteStore(tmp_path / "gate.sqlite"), Clock(DEPLOYED_AT), SimulateSource("healthy", 7)
    machine(alb, store, source, clock).tick(int(clock.at))
    with pytest.raises(RolloutError, match="is in the future"):
        machine(alb, store, source, clock).look(int(clock.at) + 1200)
    assert [e for e in store.evaluations("web-2") if e["verdict"] != "error"] == []


def test_the_rollout_calls_its_load_balancer_in_the_region_its_arn_names(alb, tmp_path):
    """Issue 25, item 1: the rollout's elbv2 client took the region from `source.options.region`
    alone; a policy whose source names none (Datadog, here the simulated one) called the boto3
    chain's default region, where the listener does not exist: every step and every rollback
    refused. The listener's ARN names its region."""
    from gate.traffic import forward_of

    assert alb["listener"].split(":")[3] == "us-east-1"
    policy = write_policy(alb, tmp_path)
    env = {**alb["server"].env, "AWS_DEFAULT_REGION": "eu-west-1", "AWS_REGION": "eu-west-1"}
    started = run_gate("rollout", "web-3", "--policy", policy, "--store", tmp_path / "gate.sqlite", "--json",
                       env=env, cwd=tmp_path, timeout=120)
    assert started.returncode == 3, started.stdout + started.stderr
    assert json.loads(started.stdout)["rollout"]["status"] == "started" and split(alb)["canary"] == 5
    assert forward_of(policy_for(alb)).elbv2.meta.region_name == "us-east-1"
