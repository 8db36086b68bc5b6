"""A dead canary behind a rollout's load balancer is rolled back within two looks (issue 23, item
5): the canary target group's health (elbv2 describe_target_health, on a moto server) together
with the canary's silence while the baseline reports. Neither alone fails a canary: a flaky
canary's metrics miss points while its targets stay healthy, a quiet canary serves nothing for
minutes, and a health check can fail on a path the release moved while it serves."""

from __future__ import annotations

import numpy as np
import pytest

from gate.analysis import Analysis
from gate.demo import DEMO_POLICY, SIMULATED_WEEK
from gate.policy import parse_policy
from gate.rollout import Rollout
from gate.series import Frame, Observations, TargetHealth
from gate.sources.simulate import GATEWAY_DIES_AFTER, ONSET, SimulateSource
from gate.store import SqliteStore
from gate.traffic import Forward
from tests.alb import weighted_listener, with_instances
from tests.moto_server import moto_server  # noqa: F401  (fixture)

DEPLOYED_AT = SIMULATED_WEEK + 12 * 3600  # noon of the simulated Monday
STEP_LIFETIME = 1200


@pytest.fixture
def alb(moto_server):  # noqa: F811
    moto_server.reset()
    ec2, elbv2 = moto_server.client("ec2"), moto_server.client("elbv2")
    listener, groups = weighted_listener(ec2, elbv2, production=100, canary=0, baseline=0)
    instances = with_instances(ec2, elbv2, groups)
    return {"ec2": ec2, "elbv2": elbv2, "listener": listener, "groups": groups, "instances": instances}


def rollout_policy(alb):
    return parse_policy({**DEMO_POLICY, "rollout": {
        "listener_arn": alb["listener"], "canary_target_group": alb["groups"]["canary"],
        "production_target_group": alb["groups"]["production"], "baseline_target_group": alb["groups"]["baseline"],
        "steps": [5, 25, 45], "step_lifetime": STEP_LIFETIME}})


def killed_at_the_second_step(alb, tmp_path, *, instance_stops: bool) -> tuple[list, int, int]:
    """A rollout whose canary gateway dies at the 25% step (its metrics stop; `instance_stops`:
    its instance stops too, so the load balancer sees it out of service). The looks, and the
    number of evaluations of the 25% step up to the fail and up to the canary's first silent
    point."""
    policy, store = rollout_policy(alb), SqliteStore(tmp_path / "gate.sqlite")
    source, clock, dies_at = SimulateSource("healthy", 7), [DEPLOYED_AT], None
    forward = Forward(alb["elbv2"], policy.rollout)
    looks = []
    for _ in range(200):
        if dies_at is not None and clock[0] >= dies_at and instance_stops:
            alb["ec2"].stop_instances(InstanceIds=[alb["instances"]["canary"]])
        release = Analysis(policy, source, "web-2", DEPLOYED_AT, store=store)
        look = Rollout(release, forward, clock=lambda: clock[0]).tick(clock[0])
        looks.append(look)
        if look.status == "advanced" and look.step == 2:
            source.scenario, source.deployed_at = "gateway_killed", clock[0] - ONSET
            dies_at = source.deployed_at + GATEWAY_DIES_AFTER
        if look.final:
            break
        clock[0] += policy.interval
    step_two = store.traffic("web-2")[1]["set_at"]
    judged = [e for e in store.evaluations("web-2") if e["evaluated_at"] > step_two]
    silent_from = sum(1 for e in judged if e["evaluated_at"] < dies_at) + 1
    return looks, len(judged), silent_from


def test_a_killed_gateway_is_rolled_back_at_the_second_look_of_its_silence(alb, tmp_path):
    looks, evaluations, silent_from = killed_at_the_second_step(alb, tmp_path, instance_stops=True)
    assert (looks[-1].status, looks[-1].exit_code) == ("rolled_back", 1)
    # The first silent point is seen at `silent_from`; the fail comes at the next look (before:
    # the canary-down rule needed 4 silent points, the 9th evaluation of the step).
    assert evaluations - silent_from + 1 <= 2, (evaluations, silent_from)
    failed = looks[-1].verdict
    assert failed.verdict == "fail" and "load balancer takes the canary out of service" in failed.reason
    assert "Target.InvalidState" in failed.reason


def test_a_silent_canary_whose_targets_stay_healthy_is_left_to_the_canary_down_rule(alb, tmp_path):
    # Its metrics stop but the load balancer still sees it serve: late or dropped data as often as
    # a dead canary. It still fails (fail-closed), later, on its own gap rate.
    looks, evaluations, silent_from = killed_at_the_second_step(alb, tmp_path, instance_stops=False)
    assert (looks[-1].status, looks[-1].exit_code) == ("rolled_back", 1)
    assert evaluations - silent_from + 1 > 2
    assert "has not reported its last" in looks[-1].verdict.reason


def test_the_canary_target_group_s_health_is_read_from_the_load_balancer(alb):
    policy = rollout_policy(alb)
    forward = Forward(alb["elbv2"], policy.rollout)
    running = forward.canary_targets(123)
    assert running.serving and running.targets == (("healthy", ""),) and running.at == 123
    alb["ec2"].stop_instances(InstanceIds=[alb["instances"]["canary"]])
    stopped = forward.canary_targets(124)
    assert not stopped.serving and "unused (Target.InvalidState)" in stopped.describe()
    alb["elbv2"].deregister_targets(TargetGroupArn=alb["groups"]["canary"],
                                    Targets=[{"Id": alb["instances"]["canary"], "Port": 80}])
    empty = forward.canary_targets(125)
    assert not empty.serving and "no registered target" in empty.describe()


def test_a_target_group_that_cannot_be_read_is_unread_never_an_action_error(alb):
    from gate.series import TargetHealthUnread

    policy = rollout_policy(alb)
    gone = policy.rollout.model_copy(update={"canary_target_group": alb["groups"]["canary"][:-4] + "0000"})
    with pytest.raises(TargetHealthUnread, match="describe_target_health failed"):
        Forward(alb["elbv2"], gone).canary_targets(1)


class Answer:
    """The raw body of an HTTP answer, as botocore reads it."""

    def __init__(self, body: bytes):
        self.body = body

    def stream(self, **kwargs):
        yield self.body


def refusing_target_health(elbv2) -> None:
    """The moto client's DescribeTargetHealth answered as AWS answers a role without
    elasticloadbalancing:DescribeTargetHealth (403 AccessDenied, parsed by botocore); every other
    call goes to moto."""
    from botocore.awsrequest import AWSResponse

    body = (b'<ErrorResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"><Error>'
            b"<Type>Sender</Type><Code>AccessDenied</Code><Message>User: arn:aws:sts::123456789012:assumed-role/"
            b"gate/x is not authorized to perform: elasticloadbalancing:DescribeTargetHealth</Message></Error>"
            b"<RequestId>1</RequestId></ErrorResponse>")

    def refuse(request, **kwargs):
        return AWSResponse(request.url, 403, {"Content-Type": "text/xml"}, Answer(body))

    elbv2.meta.events.register("before-send.elastic-load-balancing-v2.DescribeTargetHealth", refuse)


def test_a_look_whose_target_health_cannot_be_read_says_so_in_its_verdict(alb, tmp_path):
    """Before, a failed describe_target_health was silent: the verdict read as if the load
    balancer's health rule had been applied. Through the rollout's looks on moto's elbv2."""
    refusing_target_health(alb["elbv2"])
    policy, store = rollout_policy(alb), SqliteStore(tmp_path / "gate.sqlite")
    source, clock = SimulateSource("healthy", 7), [DEPLOYED_AT]
    forward = Forward(alb["elbv2"], policy.rollout)
    judged = []
    for _ in range(5):
        release = Analysis(policy, source, "web-2", DEPLOYED_AT, store=store)
        look = Rollout(release, forward, clock=lambda: clock[0]).tick(clock[0])
        judged += [look.verdict] if look.verdict is not None else []
        clock[0] += policy.interval
    assert judged, "no look judged the step"
    for verdict in judged:
        note = next((n for n in verdict.notes if "target group's health could not be read" in n), None)
        assert note is not None, verdict.notes
        assert "AWS refused describe_target_health (AccessDenied)" in note and "was not applied" in note
    assert forward.weights()[alb["groups"]["canary"]] == 5  # the look went on: the health is extra evidence


# ------------------------------------------------------- the judge alone, without a load balancer

DOWN = TargetHealth("targetgroup/web-canary/1", 0, (("unused", "Target.InvalidState"),))  # instance stopped
UP = TargetHealth("targetgroup/web-canary/1", 0, (("healthy", ""),))
# Targets the load balancer still routes to (review): all unhealthy (an ALB fails open), a
# Lambda target group without health checks, the load balancer's own fault.
STILL_ROUTED = {
    "all unhealthy": (("unhealthy", "Target.ResponseCodeMismatch"),),
    "health checks disabled": (("unavailable", "Target.HealthCheckDisabled"),),
    "load balancer error": (("unhealthy", "Elb.InternalError"),),
}


class LowTraffic:
    """The simulated service with a canary of a few requests a minute (about 2, Poisson), and no
    request at all, so no latency, at `quiet` minutes after the deploy: a night-time lull. Its
    CPU and memory report throughout."""

    def __init__(self, quiet: range):
        self.inner, self.quiet = SimulateSource("healthy", 3), quiet

    def fetch(self, query):
        seen = self.inner.fetch(query)
        c = seen.canary
        rng = np.random.default_rng(list(c.timestamps[:1]) + [len(c)])
        requests = rng.poisson(2.0, len(c)).astype(float)
        lull = np.isin((c.timestamps - DEPLOYED_AT) // 60, list(self.quiet))
        requests[lull] = 0.0
        values = {**c.values, "requests": requests, "errors": np.zeros(len(c))}
        values["latency"] = np.where(requests > 0, c.values["latency"], np.nan)
        return Observations(Frame(c.step, c.timestamps, values), seen.baseline)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def verdicts(source, minutes: range, targets) -> list:
    policy = parse_policy(DEMO_POLICY)
    out = []
    for minute in minutes:
        analysis = Analysis(policy, source, "quiet", DEPLOYED_AT, targets=targets)
        out.append(analysis.evaluate(DEPLOYED_AT + minute * 60))
    return out


@pytest.mark.parametrize("targets", [None, lambda now: UP], ids=["health unknown", "targets healthy"])
def test_a_low_traffic_canary_with_quiet_minutes_is_not_failed(targets):
    quiet = range(8, 12)
    seen = verdicts(LowTraffic(quiet), range(6, 14), targets)
    assert [v.verdict for v in seen if v.verdict == "fail"] == [], [v.reason for v in seen]


def test_a_low_traffic_canary_serving_nothing_while_its_targets_are_down_fails():
    # The same lull, but its instance stopped: no request at 2 points is then the load
    # balancer's doing, not the night's.
    seen = verdicts(LowTraffic(range(8, 12)), range(8, 10), lambda now: DOWN)
    assert [v.verdict for v in seen] == ["inconclusive", "fail"], [v.reason for v in seen]
    assert "Target.InvalidState" in seen[-1].reason


class NoDatapoint(LowTraffic):
    """CloudWatch's way: no RequestCount datapoint (not a 0) for a minute without requests, CPU
    and memory still reporting."""

    def fetch(self, query):
        seen = super().fetch(query)
        c = seen.canary
        requests = np.where(c.values["requests"] == 0, np.nan, c.values["requests"])
        errors = np.where(np.isnan(requests), np.nan, c.values["errors"])
        return Observations(Frame(c.step, c.timestamps, {**c.values, "requests": requests, "errors": errors}),
                            seen.baseline)


def test_a_canary_without_request_datapoints_while_its_targets_are_down_fails_as_with_zeros():
    """Review: only a volume of exactly 0 was "served nothing"; CloudWatch's missing datapoint
    beside a reporting CPU read as served, and the rule never fired (failed at the lifetime's end)."""
    seen = verdicts(NoDatapoint(range(8, 12)), range(8, 10), lambda now: DOWN)
    assert [v.verdict for v in seen] == ["inconclusive", "fail"], [v.reason for v in seen]


@pytest.mark.parametrize("targets", sorted(STILL_ROUTED))
def test_targets_the_load_balancer_still_routes_to_are_not_out_of_service(targets):
    """Review, reproduced: these read as "out of service", and a serving canary's 2-minute lull
    or two dropped scrapes failed it."""
    health = TargetHealth("targetgroup/web-canary/1", 0, STILL_ROUTED[targets])
    assert health.serving
    seen = verdicts(LowTraffic(range(8, 10)), range(8, 11), lambda now: health)
    assert [v.verdict for v in seen if v.verdict == "fail"] == [], [v.reason for v in seen]


def test_unhealthy_targets_of_a_canary_that_serves_are_not_a_fail():
    # A health check on a path the release moved: the targets read unhealthy while the canary
    # serves its share (the load balancer fails open). Its metrics judge it, not the check.
    unhealthy = TargetHealth("targetgroup/web-canary/1", 0, STILL_ROUTED["all unhealthy"])
    seen = verdicts(SimulateSource("healthy", 3), range(4, 10), lambda now: unhealthy)
    assert [v.verdict for v in seen if v.verdict == "fail"] == [], [v.reason for v in seen]


def test_a_look_after_the_step_s_end_does_not_read_today_s_health():
    """Review, reproduced: a look an hour after a step's end judges the end's window, and read the
    target group as it is now (the canary stopped since): the undecided step failed on it."""
    policy, read = parse_policy(DEMO_POLICY), []
    analysis = Analysis(policy, SimulateSource("healthy", 3), "late", DEPLOYED_AT,
                        targets=lambda now: read.append(now) or DOWN)
    analysis.evaluate(DEPLOYED_AT + policy.lifetime + 3600)
    assert read == []
    analysis.evaluate(DEPLOYED_AT + 600)
    assert read == [DEPLOYED_AT + 600]
