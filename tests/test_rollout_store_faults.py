"""The safety action never waits on a record: a failed step's traffic goes back to 0 even when the
store refuses its verdict, and `gate rollback` scales the canary down even when the store cannot
be opened or read. Store faults are real ones: DynamoDB on a moto server (127.0.0.1) whose PutItem
calls are throttled as AWS answers them, a SQLite file that is not a database."""

from __future__ import annotations

import json

import pytest

from gate import rollout as steps
from gate.analysis import open_release
from gate.demo import demo_deployed_at, demo_policy
from gate.demo_rollout import VirtualClock
from gate.errors import StoreError
from gate.simulated_alb import SimulatedForward
from gate.sources import open_source
from gate.store import SqliteStore
from gate.store.dynamodb import DynamoStore
from gate.traffic import canary_share
from tests.conftest import run_gate
from tests.moto_server import moto_server  # noqa: F401 (fixture)
from tests.test_actions_moto import fleet, state  # noqa: F401 (fixture)
from tests.test_reliability_faults import THROTTLED
from tests.test_rollout_moto import alb, canary_group, split, write_policy  # noqa: F401 (alb: fixture)
from tests.test_rollout_moto import gate as rollout_gate
from tests.test_store_dynamodb import create_store_table, moto_endpoint  # noqa: F401 (fixture)

TABLE = "gate-evaluations"
DEPLOYED_AT = demo_deployed_at(7)


def refuse_puts(client, refuse) -> list[str]:
    """DynamoDB PutItem calls whose item `refuse(item)` picks are throttled (short-circuited on a
    before-call hook, as botocore's Stubber does); the others reach the moto server."""
    from botocore.awsrequest import AWSResponse

    refused: list[str] = []

    def hook(params, **_):
        item = json.loads(params["body"]).get("Item", {})
        if refuse(item):
            refused.append(item["sk"]["S"])
            return AWSResponse(None, 400, {}, None), {"Error": {"Code": THROTTLED[0], "Message": THROTTLED[1]},
                                                      "ResponseMetadata": {"HTTPStatusCode": 400}}
        return None

    client.meta.events.register("before-call.dynamodb.PutItem", hook)
    return refused


def failed_verdict(item: dict) -> bool:
    return item["sk"]["S"].startswith("eval#") and item.get("verdict", {}).get("S") == "fail"


def looks_until_the_fault(store, refuse):
    """A bad build's rollout, looked at every minute until the store refuses a write."""
    policy = demo_policy("bad_version", 7, DEPLOYED_AT, rollout=True)
    clock, forward = VirtualClock(DEPLOYED_AT), SimulatedForward(policy.rollout)

    def machine() -> steps.Rollout:
        analysis = open_release(policy, "web", DEPLOYED_AT, open_source=open_source, store=store,
                                requested=DEPLOYED_AT, examine_past=True, clock=clock)
        return steps.Rollout(analysis, forward, clock=clock)

    refused = refuse_puts(store.client, lambda item: refusing[0] and refuse(item))
    refusing = [True]
    for _ in range(40):
        try:
            machine().tick(int(clock()))
        except StoreError as e:
            refusing[0] = False
            return policy, forward, e, refused, lambda: machine().tick(int(clock()))
        clock.t += 60
    raise AssertionError("the store never refused a write")


@pytest.mark.parametrize("refuse, then_recorded", [
    (failed_verdict, "the change to 0 recorded"),
    (lambda item: failed_verdict(item) or item["sk"]["S"].startswith("traffic#") and item["step"]["N"] == "0",
     "nothing recorded"),
], ids=["verdict refused", "verdict and change refused"])
def test_a_failed_step_goes_back_to_0_when_the_store_refuses_its_verdict(moto_endpoint, refuse,  # noqa: F811
                                                                         then_recorded):
    """The verdict was recorded before the traffic went back: a refused write skipped the rollback,
    exit 4 with the canary still at 5%. Now the traffic goes back first, the look says so (exit 4),
    and the next look reads the rollout as rolled back (exit 1) whatever the store kept."""
    create_store_table(TABLE)
    store = DynamoStore(TABLE)
    policy, forward, error, refused, next_look = looks_until_the_fault(store, refuse)
    assert any(sk.startswith("eval#") for sk in refused), refused
    message = str(error)
    assert "step 1 FAILED" in message and "sent back to 0" in message and THROTTLED[0] in message, message
    assert canary_share(policy.rollout, forward.weights()) == 0
    assert [c["step"] for c in store.traffic("web")] == ([1, 0] if then_recorded.startswith("the change") else [1])

    seen = next_look()
    assert (seen.status, seen.outcome, seen.exit_code, seen.percent) == ("rolled_back", "fail", 1, 0)
    assert [c["step"] for c in store.traffic("web")] == [1, 0]
    assert canary_share(policy.rollout, forward.weights()) == 0


def test_a_step_whose_pass_the_store_refuses_is_not_answered(moto_endpoint):  # noqa: F811
    """Only a fail acts without its record: a refused pass is the store's error, nothing moves."""
    from gate.errors import StoreError as Refused

    create_store_table(TABLE)
    store = DynamoStore(TABLE)
    policy = demo_policy("healthy", 7, DEPLOYED_AT, rollout=True)
    clock, forward = VirtualClock(DEPLOYED_AT), SimulatedForward(policy.rollout)
    refuse_puts(store.client, lambda item: item["sk"]["S"].startswith("eval#") and item["verdict"]["S"] == "pass")
    analysis = open_release(policy, "web", DEPLOYED_AT, open_source=open_source, store=store, requested=DEPLOYED_AT,
                            examine_past=True, clock=clock)
    machine = steps.Rollout(analysis, forward, clock=clock)
    with pytest.raises(Refused, match=THROTTLED[0]):
        for _ in range(40):
            machine.tick(int(clock()))
            clock.t += 60
    assert canary_share(policy.rollout, forward.weights()) == 5  # step 1's share, neither moved on nor back


def test_rollback_scales_the_canary_down_when_the_store_cannot_be_opened(fleet, tmp_path):  # noqa: F811
    """`gate rollback` opened the store before any AWS step: a damaged store file meant exit 4 with
    the canary and baseline still up. Now the groups go to zero and the answer says the store
    could not record it."""
    server, autoscaling, _ = fleet
    damaged = tmp_path / "gate.sqlite"
    damaged.write_bytes(b"this is not a database" * 100)
    done = run_gate("rollback", "web-3", "--canary-asg", "web-canary", "--baseline-asg", "web-baseline",
                    "--store", damaged, "--json", env=server.env, cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    after = state(autoscaling)
    assert after["web-canary"]["desired"] == 0 and after["web-baseline"]["desired"] == 0
    assert after["web-prod"]["desired"] == 3
    answer = json.loads(done.stdout)
    assert len(answer["changes"]) == 2
    assert any("not recorded" in n and "file is not a database" in n for n in answer["notes"]), answer["notes"]
    assert "not recorded" in done.stderr and "Traceback" not in done.stderr


def test_promote_waits_for_a_store_it_can_record_in(fleet, tmp_path):  # noqa: F811
    """The other way from rollback, on purpose: a promotion is the action that moves forward,
    and nothing is lost by waiting for it (the canary keeps its share, promote is safe to run
    again), while a promotion the store cannot record leaves production changed with no record
    of who promoted what. A store that cannot be opened stops it before any AWS change (exit 4)."""
    server, autoscaling, _ = fleet
    before = state(autoscaling)
    damaged = tmp_path / "gate.sqlite"
    damaged.write_bytes(b"this is not a database" * 100)
    done = run_gate("promote", "web-3", "--production-asg", "web-prod", "--canary-asg", "web-canary",
                    "--baseline-asg", "web-baseline", "--strategy", "swap", "--store", damaged,
                    env=server.env, cwd=tmp_path, timeout=60)
    assert done.returncode == 4 and "file is not a database" in done.stderr and "Traceback" not in done.stderr
    assert state(autoscaling) == before


def test_rollback_sends_a_rollout_s_traffic_back_when_the_store_cannot_be_read(alb, tmp_path):  # noqa: F811
    """A rollout at step 1 (5%), its store damaged: `gate rollback` stopped at the store (exit 4,
    the canary still at 5%, its group up). Now the traffic goes back and the group scales down;
    once the store is back, the rollout finds the canary at 0 and records its rollback (exit 1)."""
    autoscaling = canary_group(alb)
    policy = write_policy(alb, tmp_path)
    assert rollout_gate(alb, tmp_path, "rollout", "web-4", "--policy", policy).returncode == 3
    assert split(alb)["canary"] == 5
    kept = tmp_path / "gate.sqlite"
    good = kept.read_bytes()
    kept.write_bytes(b"this is not a database" * 100)

    done = rollout_gate(alb, tmp_path, "rollback", "web-4", "--policy", policy, "--canary-asg", "web-canary", "--json")
    assert done.returncode == 0, done.stderr
    assert split(alb) == {"production": 100, "canary": 0, "baseline": 0}
    assert autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["web-canary"])[
        "AutoScalingGroups"][0]["DesiredCapacity"] == 0
    assert "not recorded: the store could not be opened" in done.stderr

    kept.write_bytes(good)  # the store repaired: it still says step 1, the listener says 0
    after = rollout_gate(alb, tmp_path, "rollout", "web-4", "--policy", policy, "--json")
    assert after.returncode == 1, after.stderr
    answer = json.loads(after.stdout)
    assert answer["rollout"]["status"] == "rolled_back" and answer["verdict"] == "fail"
    assert any("found the canary at 0" in n for n in answer["rollout"]["notes"]), answer["rollout"]["notes"]
    assert [(c["step"], c.get("recovered", False)) for c in SqliteStore(kept).traffic("web-4")] == [(1, False),
                                                                                                   (0, True)]
    assert split(alb)["canary"] == 0
