"""Issue 22: every record of a release belongs to one deploy (gate.lifecycle.Deploy), and the
seams of `gate rollout` answer clearly. Rollouts on a moto ALB (tests/alb.py), judged on the
simulated service, on a virtual clock."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest
from botocore.exceptions import ClientError

from gate.analysis import open_release
from gate.demo import DEMO_POLICY
from gate.errors import PolicyError, ReleaseError, StoreError
from gate.lifecycle import POLICY_DIGEST, register_deploy, written_policy_digest
from gate.policy import parse_policy, with_overrides
from gate.rollout import Rollout, RolloutError, rollback_traffic
from gate.sources.simulate import ONSET, SimulateSource
from gate.store import SqliteStore
from gate.traffic import Forward
from gate.verdict import Verdict, iso, parse_time
from tests.alb import forward
from tests.test_rollout_moto import (  # noqa: F401 (alb: fixture)
    DEPLOYED_AT, SECTION, Clock, alb, gate, inject_at_step, machine, policy_for, run, split, write_policy)
from tests.moto_server import moto_server  # noqa: F401 (fixture)
from tests.test_lambda_handler import aws_tables, handler  # noqa: F401 (fixtures)
from tests.test_store_dynamodb import moto_endpoint  # noqa: F401 (fixture)


def opened(alb, store, source, clock, requested, policy=None) -> Rollout:
    """A rollout of `web-2` opened as a front door opens it: its deploy registered."""
    policy = policy or policy_for(alb)
    analysis = open_release(policy, "web-2", int(clock.at), open_source=lambda p: source, store=store,
                            requested=requested, clock=clock)
    return Rollout(analysis, Forward(alb["elbv2"], policy.rollout), clock=clock)


# -- item 1: a redeploy never inherits the last rollout ------------------------------------------


def test_a_redeploy_never_inherits_the_previous_deploy_s_rollout(alb, tmp_path):
    """Deploy 1's rollout started late and made its last changes after deploy 2 started: matched by
    time, deploy 2 read them as its own and answered `complete`, exit 0, with nothing judged."""
    store, clock, source = SqliteStore(tmp_path / "gate.sqlite"), Clock(DEPLOYED_AT), SimulateSource("healthy", 7)
    opened(alb, store, source, clock, DEPLOYED_AT)  # deploy 1 registered (a check, then the rollout later)
    clock.at = DEPLOYED_AT + 3000
    first = run(lambda: opened(alb, store, source, clock, DEPLOYED_AT), clock)
    assert first[-1].status == "complete"
    second_deploy = DEPLOYED_AT + 3600  # the first deploy's lifetime is over: a new deploy
    assert any(c["set_at"] >= second_deploy for c in store.traffic("web-2"))
    clock.at += 60
    with pytest.raises(RolloutError, match=r"deploy 2 \(deployed at .*\) has set no traffic yet, but .* sends "
                                           r"canary 45, baseline 45, production 10: a previous deploy's rollout"):
        opened(alb, store, source, clock, second_deploy).tick(int(clock.at))
    # Once that traffic is sent back, deploy 2 starts its own rollout at step 1.
    alb["elbv2"].modify_listener(ListenerArn=alb["listener"], DefaultActions=[forward(
        alb["groups"], production=100, canary=0, baseline=0)])
    look = opened(alb, store, source, clock, second_deploy).tick(int(clock.at))
    assert (look.status, look.step, look.exit_code, look.to_dict()["deploy"]) == ("started", 1, 3, 2)
    assert [c.get("deploy") for c in store.traffic("web-2")] == [1, 1, 1, 2]


def test_a_traffic_change_naming_no_deploy_is_never_adopted(alb, tmp_path):
    """A change kept before deploys were numbered (no `deploy`) is no deploy's own."""
    store, clock, source = SqliteStore(tmp_path / "gate.sqlite"), Clock(DEPLOYED_AT), SimulateSource("healthy", 7)
    policy = policy_for(alb)
    weights = {policy.rollout.canary_target_group: 45, policy.rollout.baseline_target_group: 45,
               policy.rollout.production_target_group: 10}
    store.record_traffic("web-2", {"step": 3, "percent": 45, "steps": [5, 25, 45], "weights": weights,
                                   "set_at": DEPLOYED_AT + 60, "by": "rollout", "allowed_by": {"verdict": "pass"}})
    look = opened(alb, store, source, clock, DEPLOYED_AT).tick(int(clock.at) + 120)
    assert (look.status, look.step) == ("started", 1)


# -- item 2: a recovered step is judged from when its weights were seen ------------------------------


def test_a_step_found_set_by_hand_is_judged_from_when_it_was_seen(alb, tmp_path):
    """Step 1 passed, its run stopped; 35 minutes later someone set step 2's weights by hand and
    the canary went bad. Recorded with set_at = step 1's pass time, step 2 was judged on the
    healthy minutes before: complete, exit 0."""
    store, clock, source = SqliteStore(tmp_path / "gate.sqlite"), Clock(DEPLOYED_AT), SimulateSource("healthy", 7)
    policy = policy_for(alb, steps=[5, 25])
    assert machine(alb, store, source, clock, policy).tick(int(clock.at)).status == "started"
    while machine(alb, store, source, clock, policy).look(int(clock.at)).status != "passed":  # no advance
        clock.at += 60
    clock.at += 35 * 60
    alb["elbv2"].modify_listener(ListenerArn=alb["listener"], DefaultActions=[forward(
        alb["groups"], production=50, canary=25, baseline=25)])
    set_by_hand = int(clock.at)
    source.scenario, source.deployed_at = "payment_failures", set_by_hand - ONSET
    clock.at += 60
    looks = run(lambda: machine(alb, store, source, clock, policy), clock)
    assert (looks[-1].status, looks[-1].exit_code) == ("rolled_back", 1), looks[-1].summary()
    assert looks[0].step == 2 and any("recorded as observed" in n for n in looks[0].notes), looks[0].notes
    recovered = store.traffic("web-2")[1]
    assert recovered["recovered"] and recovered["set_at"] == set_by_hand + 60  # when it was seen


# -- item 3: a restart is decided from what was registered ---------------------------------------


def test_a_failed_deploy_is_not_restarted_inside_its_registered_window_by_a_shorter_lifetime(tmp_path):
    store = SqliteStore(tmp_path / "gate.sqlite")
    policy = parse_policy(DEMO_POLICY)  # lifetime 1h
    register_deploy(store, "web-2", DEPLOYED_AT, DEPLOYED_AT, policy, {"policy": "demo"}, clock=lambda: DEPLOYED_AT)
    store.record(Verdict("web-2", "fail", "errors x5", DEPLOYED_AT, DEPLOYED_AT + 300, True))
    short = with_overrides(policy, "p.yaml with --lifetime", lifetime="10m")
    with pytest.raises(ReleaseError, match=r"contradicts release 'web-2', registered as deployed at .* with a "
                                           r"canary window until .*T13:00:00Z"):
        register_deploy(store, "web-2", DEPLOYED_AT + 600, DEPLOYED_AT + 900, short, {"policy": "demo"},
                        clock=lambda: DEPLOYED_AT + 900)
    assert store.release("web-2")["deployed_at"] == DEPLOYED_AT


def test_a_deploy_registered_before_lifetimes_were_kept_is_restarted_only_by_its_own_policy(tmp_path):
    store = SqliteStore(tmp_path / "gate.sqlite")
    # An older record: the digest of the policy it was registered with, no lifetime.
    digest = written_policy_digest(parse_policy(DEMO_POLICY))
    store.start_release("web-2", DEPLOYED_AT, {"policy": "demo", POLICY_DIGEST: digest})
    short = with_overrides(parse_policy(DEMO_POLICY), "p.yaml with --lifetime", lifetime="10m")
    with pytest.raises(ReleaseError, match="before its lifetime was kept"):
        register_deploy(store, "web-2", DEPLOYED_AT + 600, DEPLOYED_AT + 900, short, {"policy": "demo"},
                        clock=lambda: DEPLOYED_AT + 900)


# -- item 8: a rollout of a demo policy is marked, whatever the look judged ------------------------


def test_every_answer_of_a_demo_rollout_carries_the_demo_mark(alb, tmp_path):
    store, clock, source = SqliteStore(tmp_path / "gate.sqlite"), Clock(DEPLOYED_AT), SimulateSource("healthy", 7)
    looks = run(lambda: machine(alb, store, source, clock), clock)
    assert all(look.to_dict().get("demo") == "simulate" for look in looks)
    again = machine(alb, store, source, clock).tick(int(clock.at) + 600)  # read from the store, judged nothing
    assert again.status == "complete" and again.verdict is None
    assert again.to_dict()["demo"] == "simulate" and again.to_dict()["exit_code"] == 0


# -- unclear answers ---------------------------------------------------------------------------


def test_steps_that_can_only_pass_at_their_end_must_fit_the_lifetime():
    """min_duration = step_lifetime with the steps filling the lifetime: the last step's look was
    refused (nothing is left to judge), exit 4, with the canary left at its share."""
    with pytest.raises(PolicyError, match=r"min_duration \(1200 s\).*must fit in the lifetime \(3600 s\): make "
                                          r"min_duration shorter than rollout.step_lifetime, or the lifetime longer"):
        parse_policy({**DEMO_POLICY, "min_duration": "20m", "warmup": 0,
                      "rollout": {**SECTION, "steps": [5, 25, 45], "step_lifetime": "20m"}})


def test_a_canary_target_group_forwarded_to_by_another_listener_is_refused(alb, tmp_path):
    elbv2 = alb["elbv2"]
    balancer = elbv2.describe_listeners(ListenerArns=[alb["listener"]])["Listeners"][0]["LoadBalancerArn"]
    other = elbv2.create_listener(LoadBalancerArn=balancer, Protocol="HTTP", Port=8080, DefaultActions=[
        {"Type": "forward", "TargetGroupArn": alb["groups"]["canary"]}])["Listeners"][0]["ListenerArn"]
    store, clock, source = SqliteStore(tmp_path / "gate.sqlite"), Clock(DEPLOYED_AT), SimulateSource("healthy", 7)
    with pytest.raises(RolloutError, match=f"also forwarded to by listener {other}"):
        machine(alb, store, source, clock).tick(int(clock.at))
    assert split(alb)["canary"] == 0 and store.traffic("web-2") == []


def test_a_canary_target_group_forwarded_to_by_another_rule_is_refused(alb, tmp_path):
    elbv2 = alb["elbv2"]
    rule = elbv2.create_rule(ListenerArn=alb["listener"], Priority=10, Conditions=[
        {"Field": "path-pattern", "PathPatternConfig": {"Values": ["/beta/*"]}}], Actions=[
        forward(alb["groups"], canary=1)])["Rules"][0]["RuleArn"]
    store, clock, source = SqliteStore(tmp_path / "gate.sqlite"), Clock(DEPLOYED_AT), SimulateSource("healthy", 7)
    with pytest.raises(RolloutError, match=f"also forwarded to by rule {rule}"):
        machine(alb, store, source, clock).tick(int(clock.at))


def test_a_failed_step_whose_rollback_aws_refuses_says_it_failed_and_what_to_run(alb, tmp_path, monkeypatch):
    store, clock, source = SqliteStore(tmp_path / "gate.sqlite"), Clock(DEPLOYED_AT), SimulateSource("healthy", 7)
    real = alb["elbv2"].modify_listener

    def refuse_the_rollback(**kwargs):
        groups = kwargs["DefaultActions"][0]["ForwardConfig"]["TargetGroups"]
        if any(g["TargetGroupArn"] == alb["groups"]["canary"] and g["Weight"] == 0 for g in groups):
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "not allowed"}}, "ModifyListener")
        return real(**kwargs)

    monkeypatch.setattr(alb["elbv2"], "modify_listener", refuse_the_rollback)
    with pytest.raises(RolloutError) as caught:
        run(lambda: machine(alb, store, source, clock), clock, inject_at_step(source, 2, "payment_failures", clock))
    message = str(caught.value)
    assert "step 2 FAILED" in message and "AWS refused modify_listener" in message
    assert "The canary still takes 25% of the traffic: run `gate rollback web-2" in message
    assert split(alb)["canary"] == 25


def test_a_dry_run_s_json_exit_code_is_the_process_exit_code(alb, tmp_path):
    store, clock, source = SqliteStore(tmp_path / "gate.sqlite"), Clock(DEPLOYED_AT), SimulateSource("healthy", 7)
    # Registered as `gate rollout` registered it then (its window is over now).
    register_deploy(store, "web-2", DEPLOYED_AT, DEPLOYED_AT, policy_for(alb), {"policy": "demo"},
                    clock=lambda: DEPLOYED_AT)
    assert run(lambda: machine(alb, store, source, clock), clock)[-1].status == "complete"
    dry = gate(alb, tmp_path, "rollout", "web-2", "--policy", write_policy(alb, tmp_path),
               "--deployed-at", str(DEPLOYED_AT), "--dry-run", "--json")
    answer = json.loads(dry.stdout)
    assert dry.returncode == 3, dry.stderr
    assert (answer["exit_code"], answer["verdict"]) == (3, "inconclusive")


@pytest.mark.parametrize("detail, what", [
    ("[1, 2]", "it is not a JSON object"),
    ('{"step": 1, "set_at": "soon", "weights": {}}', "its set_at is 'soon', not a whole number"),
    ('{"step": 1, "set_at": 5, "weights": [5]}', "its weights are '[5]', not whole numbers by target group"),
])
def test_a_damaged_traffic_row_is_a_store_error_naming_it(alb, tmp_path, detail, what):
    store, clock, source = SqliteStore(tmp_path / "gate.sqlite"), Clock(DEPLOYED_AT), SimulateSource("healthy", 7)
    machine(alb, store, source, clock).tick(int(clock.at))
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE traffic SET detail = ? WHERE id = 1", (detail,))
    with pytest.raises(StoreError, match=re.escape(f"traffic row 1: 'web-2''s traffic change is damaged: {what}")):
        machine(alb, store, source, clock).tick(int(clock.at) + 60)


# -- the Lambda's idempotency key is the deploy's ------------------------------------------------


def test_a_redeploy_asked_at_the_moment_its_predecessor_was_judged_is_judged(handler, corpus, aws_tables):
    """Keyed on (release, now), the new deploy's first look met the old deploy's cached answer:
    refused as "a different request" (or, had it asked the same, answered with it)."""
    from tests.lambda_module import FakeContext
    from tests.test_lambda_handler import case_event

    first = case_event(corpus, "k1m-canary-down-012")
    end = parse_time(first["now"])
    first["now"] = iso(end + 600)  # judged at its end (the lifetime is over)
    old = handler.lambda_handler(dict(first), FakeContext())
    assert old["verdict"] == "fail", old
    new = handler.lambda_handler({**first, "deployed_at": iso(end)}, FakeContext())  # a new deploy, same moment
    assert new.get("statusCode") is None, new
    assert (old["deploy"], new["deploy"]) == (1, 2)
    assert new["deployed_at"] == iso(end) and new["verdict"] != "pass"
    assert handler.lambda_handler(dict(first), FakeContext())["verdict"] == "error"  # the old deploy is over


def test_every_output_of_a_verdict_names_its_deploy(tmp_path):
    """The verdict's JSON, JUnit and Slack name the deploy judged (web-2#1), and its
    record in the store carries it."""
    from gate import junit
    from gate.notify import slack

    store, clock = SqliteStore(tmp_path / "gate.sqlite"), Clock(DEPLOYED_AT + 1800)
    policy = parse_policy(DEMO_POLICY)
    analysis = open_release(policy, "web-2", int(clock.at), open_source=lambda p: SimulateSource("healthy", 7),
                            store=store, requested=DEPLOYED_AT, clock=clock)
    verdict = analysis.evaluate(int(clock.at))
    assert verdict.to_dict()["deploy"] == 1 and store.evaluations("web-2")[-1]["payload"]["deploy"] == 1
    assert '<property name="deploy" value="web-2#1" />' in junit.report(verdict)
    message = slack.build_message(verdict, policy="demo", canary="c", baseline="b")
    assert "deploy `web-2#1`" in json.dumps(message)


def test_a_report_draws_only_its_deploy_s_traffic_steps(tmp_path):
    """The strip of deploy 2's report showed deploy 1's steps too (and older changes naming none)."""
    from gate.report import _traffic

    store = SqliteStore(tmp_path / "gate.sqlite")
    for deploy, step in ((None, 3), (1, 2), (2, 1)):
        store.record_traffic("web-2", {"step": step, "set_at": DEPLOYED_AT + step, "weights": {"a": step},
                                       **({"deploy": deploy} if deploy else {})})
    verdict = Verdict("web-2", "fail", "x", DEPLOYED_AT, DEPLOYED_AT + 600, True, deploy=2)
    assert [c["step"] for c in _traffic(store, verdict)] == [1]


# -- fixroll: a rollout is judged only by the policy that set its traffic ---------------------------


def test_another_policy_is_refused_once_the_deploy_set_traffic(alb, tmp_path):
    """Run 1 ([5, 25, 45]) set step 1 (5%); run 2 with steps [45], before any verdict: registered
    anew (only verdicts counted as acting), it judged step 1 at 5% as its last step and answered
    `complete: the canary takes 45%`, exit 0, with the listener at canary 5."""
    store, clock, source = SqliteStore(tmp_path / "gate.sqlite"), Clock(DEPLOYED_AT), SimulateSource("healthy", 7)
    first = opened(alb, store, source, clock, DEPLOYED_AT, policy_for(alb, steps=[5, 25, 45])).tick(int(clock.at))
    assert first.status == "started" and not store.evaluations("web-2")
    clock.at += 60
    with pytest.raises(ReleaseError, match=r"policy 'demo-shop' differs from the policy release 'web-2' was "
                                           r"registered with at .*, which has judged it or set its traffic"):
        opened(alb, store, source, clock, DEPLOYED_AT, policy_for(alb, steps=[45]))
    assert split(alb) == {"production": 90, "canary": 5, "baseline": 5}
    assert [c["steps"] for c in store.traffic("web-2")] == [[5, 25, 45]]
    # Its own policy goes on from step 1.
    assert opened(alb, store, source, clock, DEPLOYED_AT, policy_for(alb)).tick(int(clock.at)).step == 1


def test_a_change_made_with_other_steps_is_never_read_as_this_policy_s(alb, tmp_path):
    """The second line: a deploy registered before digests were kept cannot tell policies apart,
    so the rollout itself checks each recorded change's steps and weights against its policy."""
    store, clock, source = SqliteStore(tmp_path / "gate.sqlite"), Clock(DEPLOYED_AT), SimulateSource("healthy", 7)
    store.start_release("web-2", DEPLOYED_AT, {"deploy": 1})  # no digest, no lifetime: any policy is "its own"
    opened(alb, store, source, clock, DEPLOYED_AT, policy_for(alb, steps=[5, 25, 45])).tick(int(clock.at))
    for _ in range(30):
        clock.at += 60
        with pytest.raises(RolloutError, match=r"deploy 1's traffic change of .* \(step 1 of rollout.steps "
                                               r"\[5, 25, 45\]: canary 5, baseline 5, production 90\) was not made by "
                                               r"this policy's rollout \(rollout.steps \[45\]"):
            opened(alb, store, source, clock, DEPLOYED_AT, policy_for(alb, steps=[45])).tick(int(clock.at))
    assert split(alb) == {"production": 90, "canary": 5, "baseline": 5} and len(store.traffic("web-2")) == 1
    assert not store.evaluations("web-2")  # nothing judged under the other steps


def test_a_rollback_with_the_canary_already_at_0_ends_the_deploy_s_rollout(alb, tmp_path):
    """The pipeline rolled back before the rollout's first step (the listener already at 0): no
    change was recorded, and the loop still running (its SetStep) later set the canary to 5%."""
    store, clock, source = SqliteStore(tmp_path / "gate.sqlite"), Clock(DEPLOYED_AT), SimulateSource("healthy", 7)
    opened(alb, store, source, clock, DEPLOYED_AT)  # deploy 1 registered, its rollout not started
    steps = rollback_traffic(policy_for(alb), "web-2", store)
    assert [s.change for s in steps] == ["record that deploy 1's rollout is over (the canary already takes no "
                                         "traffic)"]
    for step in steps:
        step.apply()
    assert rollback_traffic(policy_for(alb), "web-2", store) == []  # once is enough: run again, nothing to do
    clock.at += 60
    with pytest.raises(RolloutError, match=r"step 1 is not allowed now: the rollout is over \(the canary's "
                                           r"traffic was sent back to production\)"):
        opened(alb, store, source, clock, DEPLOYED_AT).advance(1)
    assert split(alb) == {"production": 100, "canary": 0, "baseline": 0}
    assert opened(alb, store, source, clock, DEPLOYED_AT).tick(int(clock.at)).status == "rolled_back"
    assert [(c["step"], c["by"], c["deploy"]) for c in store.traffic("web-2")] == [(0, "rollback", 1)]
