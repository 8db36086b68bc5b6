"""The Step Functions loop steering a traffic rollout, run by moto's interpreter: a step change
is a state of its own (SetStep, one invocation with `rollout_step`), every look one invocation."""

from __future__ import annotations

import sys
import time as time_module

import boto3

from tests.alb import weighted_listener
from tests.test_infra import EVENT, Loop, jenkins_statements, allowed, error, load_template

ROLLOUT_EVENT = {**EVENT, "rollout": True}


def look(status: str, step: int, *, next_step: int | None = None, verdict: str = "inconclusive",
         final: bool = False, interval: int = 60) -> dict:
    """The analyzer's answer to a rollout look (gate.rollout.Look.to_dict, plus interval_seconds)."""
    return {"release": "web-1.2.3", "verdict": verdict, "exit_code": {"pass": 0, "fail": 1, "inconclusive": 3}[verdict],
            "final": final, "reason": status, "metrics": [], "notes": [], "interval_seconds": interval,
            "rollout": {"status": status, "step": step, "of": 3, "percent": [0, 5, 25, 50][step],
                        "steps": [5, 25, 50], "step_verdict": None, "next_step": next_step, "notes": []}}


class Analyzer:
    """Answers looks from a script, and step changes as the real one would (the step taken)."""

    def __init__(self, looks: list):
        self.looks = list(looks)
        self.steps: list[int] = []

    def __call__(self, event: dict) -> dict:
        if "rollout_step" in event:
            self.steps.append(event["rollout_step"])
            step = event["rollout_step"]
            return look("started" if step == 1 else "advanced", step, interval=120)
        return self.looks.pop(0)


def test_the_loop_steps_the_traffic_through_an_explicit_state_until_the_last_step_passes(monkeypatch):
    analyzer = Analyzer([look("ready", 0, next_step=1), look("judging", 1), look("passed", 1, next_step=2),
                         look("judging", 2), look("passed", 2, next_step=3),
                         look("complete", 3, verdict="pass", final=True)])
    loop = Loop(monkeypatch, analyzer)
    described = loop.run(ROLLOUT_EVENT)
    assert described["status"] == "SUCCEEDED", described
    assert described["output"]["verdict"] == "pass" and described["output"]["exit_code"] == 0
    assert analyzer.steps == [1, 2, 3]
    steps = [e.get("rollout_step") for e in loop.events]
    assert steps == [None, 1, None, None, 2, None, None, 3, None]  # a look, then its step change
    assert all({k: v for k, v in e.items() if k != "rollout_step"} == ROLLOUT_EVENT for e in loop.events)
    # After a step change the interval of its answer, after a look the look's.
    assert loop.waits == [120, 60, 120, 60, 120]


def test_a_fail_at_the_second_step_ends_the_loop_with_exit_1(monkeypatch):
    """The analyzer has sent the canary's traffic back to 0 in the look that judged the fail."""
    analyzer = Analyzer([look("ready", 0, next_step=1), look("passed", 1, next_step=2), look("judging", 2),
                         look("rolled_back", 0, verdict="fail", final=True)])
    loop = Loop(monkeypatch, analyzer)
    described = loop.run(ROLLOUT_EVENT)
    assert described["output"]["verdict"] == "fail" and described["output"]["exit_code"] == 1
    assert analyzer.steps == [1, 2] and len(loop.events) == 6


def test_a_refused_step_change_ends_the_loop_and_a_transient_one_is_judged_again(monkeypatch):
    refused = error(400)  # e.g. the listener's weights changed by someone else (RolloutError)
    analyzer = Analyzer([look("ready", 0, next_step=1)])
    analyzer_call = analyzer.__call__
    answers = iter([refused])
    loop = Loop(monkeypatch, lambda event: next(answers) if "rollout_step" in event else analyzer_call(event))
    described = loop.run(ROLLOUT_EVENT)
    assert described["output"] == {"verdict": "error", "exit_code": 4, "answer": refused}

    # A 503 on the step change: a minute later the look names the step again, and it is taken.
    analyzer = Analyzer([look("ready", 0, next_step=1), look("ready", 0, next_step=1),
                         look("rolled_back", 0, verdict="fail", final=True)])
    flaky = iter([error(503)])
    loop = Loop(monkeypatch, lambda event: next(flaky, None) or analyzer(event) if "rollout_step" in event
                else analyzer(event))
    described = loop.run(ROLLOUT_EVENT)
    assert described["output"]["exit_code"] == 1 and analyzer.steps == [1]
    assert loop.waits == [60, 120]


def test_the_loop_with_the_real_analyzer_steps_a_simulated_canary_on_an_alb(monkeypatch, tmp_path):
    """End to end: the real handler steps the weights of a (moto) listener, 5 -> 25 -> 50, on the
    simulated service, then passes; the listener ends at 50 and the store holds the three steps."""
    from types import SimpleNamespace

    from gate.demo import DEMO_POLICY, SIMULATED_WEEK
    from gate.store import SqliteStore
    from tests.lambda_module import FakeContext, import_handler

    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("GATE_STORE", str(tmp_path / "gate.sqlite"))
    monkeypatch.setenv("GATE_CACHE_DIR", str(tmp_path / "cache"))
    for key in ("GATE_STORE_TABLE", "GATE_IDEMPOTENCY_TABLE", "GATE_SECRET_ID", "GATE_REPORT_BUCKET",
                "SLACK_WEBHOOK_URL", "DD_API_KEY", "DD_APP_KEY"):
        monkeypatch.delenv(key, raising=False)
    handler = import_handler("gate_lambda_handler_rollout")
    handler.DEMO_SOURCES = handler.DEMO_SOURCES - {"simulate"}  # the simulated service is this test's data
    clock = [SIMULATED_WEEK + 12 * 3600 + 30]
    monkeypatch.setattr(handler, "time", SimpleNamespace(time=lambda: clock[0], perf_counter=time_module.perf_counter))
    alb: dict = {}

    def create_alb():
        ec2, elbv2 = boto3.client("ec2"), boto3.client("elbv2")
        alb["listener"], groups = weighted_listener(ec2, elbv2, production=100, canary=0)
        alb["groups"], alb["elbv2"] = groups, elbv2
        event["policy"]["rollout"] = {"listener_arn": alb["listener"], "canary_target_group": groups["canary"],
                                      "production_target_group": groups["production"], "steps": [5, 25, 50],
                                      "step_lifetime": "20m"}

    event = {"release": "shop-7", "policy": {**DEMO_POLICY, "source": {"type": "simulate", "options": {
        "scenario": "healthy", "seed": 7}}}, "rollout": True}
    answers, weights = [], []

    def analyzer(payload):
        answers.append(handler.lambda_handler(payload, FakeContext()))
        action = alb["elbv2"].describe_listeners(ListenerArns=[alb["listener"]])["Listeners"][0]["DefaultActions"][0]
        weights.append({g["TargetGroupArn"]: g["Weight"] for g in action["ForwardConfig"]["TargetGroups"]}
                       [alb["groups"]["canary"]])
        return answers[-1]

    def advance(seconds):
        clock[0] += seconds

    loop = Loop(monkeypatch, analyzer, on_wait=advance)
    try:
        described = loop.run(event, setup=create_alb)
    finally:
        sys.modules.pop("gate_lambda_handler_rollout", None)
    assert described["status"] == "SUCCEEDED", described
    statuses = [a.get("rollout", {}).get("status", a.get("error")) for a in answers]
    print(f"\nthe loop with the real analyzer: {statuses}")
    assert described["output"]["verdict"] == "pass" and described["output"]["exit_code"] == 0, statuses
    assert [s for s in statuses if s in ("started", "advanced", "complete")] == ["started", "advanced", "advanced",
                                                                                  "complete"]
    assert sorted(set(weights)) == [0, 5, 25, 50] and weights[-1] == 50
    changes = SqliteStore(tmp_path / "gate.sqlite").traffic("shop-7")
    assert [(c["step"], c["allowed_by"]["verdict"]) for c in changes] == [(1, "start"), (2, "pass"), (3, "pass")]


def test_the_analyzer_and_jenkins_may_step_the_named_load_balancer_only():
    statements = jenkins_statements()
    listener = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2"
    rule = listener.replace(":listener/", ":listener-rule/") + "/9683b2d02a6cabee"
    assert allowed(statements, "elasticloadbalancing:ModifyListener", listener)
    assert allowed(statements, "elasticloadbalancing:ModifyRule", rule)
    assert allowed(statements, "elasticloadbalancing:DescribeListeners", "*")
    # A look reads the canary target group's health (a dead canary's targets: docs/judge.md).
    assert allowed(statements, "elasticloadbalancing:DescribeTargetHealth", "*")
    other = listener.replace("/app/web/", "/app/payments/")
    assert not allowed(statements, "elasticloadbalancing:ModifyListener", other)
    assert not allowed(statements, "elasticloadbalancing:ModifyLoadBalancerAttributes", listener)
    analyzer = load_template()["Resources"]["AnalyzerFunction"]["Properties"]["Policies"][0]["Statement"]
    stepping = [s for s in analyzer if s["Sid"] == "StepTraffic"][0]
    assert all("listener" in r["Fn::Sub"] and "${RolloutLoadBalancerName}" in r["Fn::Sub"] for r in stepping["Resource"])


def test_the_event_s_rollout_fields_are_validated_naming_them():
    import pytest

    from tests.lambda_module import import_handler

    handler = import_handler("gate_lambda_handler_rollout_event")
    try:
        base = {"release": "web-1", "policy": "s3://b/policies/p.yaml"}
        assert handler.parse_request({**base, "rollout": True, "rollout_step": 2}).rollout_step == 2
        for event, message in (({**base, "rollout_step": 2}, 'rollout_step: only with "rollout": true'),
                               ({**base, "rollout": "yes"}, "rollout: Input should be a valid boolean"),
                               ({**base, "rollout": True, "rollout_step": 0}, "rollout_step: Input should be greater")):
            with pytest.raises(handler.BadRequest, match=message):
                handler.parse_request(event)
    finally:
        sys.modules.pop("gate_lambda_handler_rollout_event", None)


def test_a_step_change_answered_with_no_step_change_ends_as_could_not_judge(monkeypatch):
    """Review b4: StepRoute's Default was Decided: a SetStep answered `{"verdict": "ok", "exit_code":
    0}` (a plan's answer) or a pass (a step change judges nothing) ended the execution SUCCEEDED
    with exit_code 0. As Route, anything but a step taken or an error is no verdict: exit 4."""
    for answered in ({"verdict": "ok", "exit_code": 0, "release": "web-1.2.3"},
                     look("complete", 3, verdict="pass", final=True)):
        analyzer = Analyzer([look("ready", 0, next_step=1)])
        loop = Loop(monkeypatch, lambda event: answered if "rollout_step" in event else analyzer(event))
        described = loop.run(ROLLOUT_EVENT)
        assert described["status"] == "SUCCEEDED", described
        output = described["output"]
        assert (output["verdict"], output["exit_code"]) == ("error", 4), output
        assert output["answer"]["answered"] == answered and "no verdict" in output["answer"]["error"]


def test_a_step_change_failing_with_no_retry_left_ends_with_its_error(monkeypatch):
    """The explicit error branch that replaced StepRoute's Default (a NotAVerdict now)."""
    analyzer = Analyzer([look("ready", 0, next_step=1)])
    loop = Loop(monkeypatch, lambda event: error(503) if "rollout_step" in event else analyzer(event))
    described = loop.run(ROLLOUT_EVENT, max_errors=0)
    assert described["output"] == {"verdict": "error", "exit_code": 4, "answer": error(503)}


def test_a_step_change_that_keeps_failing_ends_after_the_errors_in_a_row(monkeypatch):
    """Each look names the step again and each step change answers 503: the look between two
    failed step changes is no step taken, so the errors add up and the loop ends with the last
    one (it used to reset them at every look and run until the 8-day hard stop)."""
    looks = [look("ready", 0, next_step=1) for _ in range(12)]
    analyzer = Analyzer(looks)
    loop = Loop(monkeypatch, lambda event: error(503) if "rollout_step" in event else analyzer(event))
    described = loop.run(ROLLOUT_EVENT, max_errors=3)
    assert described["output"] == {"verdict": "error", "exit_code": 4, "answer": error(503)}
    assert sum("rollout_step" in e for e in loop.events) == 4  # three retried, the fourth ends it
