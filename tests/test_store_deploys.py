"""A deploy's records are its own in every store, even when the release's record went away.

The release record can go: the gate's own errors about a damaged one say "repair or remove that
record", and in DynamoDB the release item expires by TTL like every other item. The records of
its deploys stay (evaluations, traffic changes, events), each naming its deploy number: a release
registered anew must never be numbered as one of them, or its rollout reads an old deploy's
finished rollout as its own and passes without judging anything. Rollouts of the simulated
service on a virtual clock, on SQLite and on DynamoDB (a moto server on 127.0.0.1)."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import replace

import boto3
import pytest

from gate import rollout as steps
from gate.analysis import open_release
from gate.demo import demo_deployed_at, demo_policy
from gate.demo_rollout import VirtualClock
from gate.lifecycle import highest_deploy
from gate.rollout import RolloutError
from gate.simulated_alb import SimulatedForward
from gate.sources import open_source
from gate.store import SqliteStore
from gate.store.dynamodb import DynamoStore
from gate.traffic import step_weights
from tests.moto_server import moto_server  # noqa: F401 (fixture)
from tests.test_store_dynamodb import create_store_table, moto_endpoint, verdict  # noqa: F401 (fixture)

TABLE = "gate-evaluations"
FIRST = demo_deployed_at(7)
DAY = 86400


@pytest.fixture(params=["sqlite", "dynamodb"])
def kept(request, tmp_path):
    """A store, and how to remove a release's record from it (by hand, or by TTL)."""
    if request.param == "sqlite":
        path = tmp_path / "gate.sqlite"

        def remove(release: str) -> None:
            with sqlite3.connect(path) as db:
                db.execute("DELETE FROM releases WHERE release = ?", (release,))

        return SqliteStore(path), remove
    request.getfixturevalue("moto_endpoint")
    create_store_table(TABLE)

    def expire(release: str) -> None:
        boto3.client("dynamodb").delete_item(TableName=TABLE, Key={"release": {"S": release}, "sk": {"S": "release"}})

    return DynamoStore(TABLE), expire


def rollout_of(store, policy, deployed_at, clock, forward) -> steps.Rollout:
    clock.t = max(clock.t, deployed_at)
    analysis = open_release(policy, "web", deployed_at, open_source=open_source, store=store, requested=deployed_at,
                            examine_past=True, clock=clock)
    return steps.Rollout(analysis, forward, clock=clock)


def to_the_end(machine: steps.Rollout, clock: VirtualClock) -> steps.Look:
    def wait(t: int) -> None:
        clock.t = t

    return steps.watch(machine, wait)


def test_a_release_registered_again_never_inherits_a_finished_rollout(kept):
    """Deploy 1 (healthy) completes its rollout; its release record goes; a faulty build of the
    same release 3 days later was registered as deploy 1 again and answered `complete`, exit 0,
    judged nothing, from deploy 1's records. Now it is deploy 2: it owns none of them."""
    store, remove = kept
    healthy = demo_policy("healthy", 7, None, rollout=True)
    clock, forward = VirtualClock(FIRST), SimulatedForward(healthy.rollout)
    done = to_the_end(rollout_of(store, healthy, FIRST, clock, forward), clock)
    assert (done.status, done.deploy, done.exit_code) == ("complete", 1, 0)
    remove("web")
    assert store.release("web") is None

    later = FIRST + 3 * DAY
    faulty = demo_policy("bad_version", 7, later, rollout=True)
    second = rollout_of(store, faulty, later, clock, forward)
    assert second.deploy.number == 2
    # The listener still holds deploy 1's last step: deploy 2 set none of it, and refuses it.
    with pytest.raises(RolloutError, match="deploy 2 .* has set no traffic yet"):
        second.tick(int(clock()))
    forward.set(step_weights(faulty.rollout, 0))  # `gate rollback`
    seen = to_the_end(rollout_of(store, faulty, later, clock, forward), clock)
    assert (seen.status, seen.outcome, seen.exit_code, seen.deploy) == ("rolled_back", "fail", 1, 2)
    assert seen.verdict is not None and seen.verdict.deploy == 2


def test_a_new_deploy_is_numbered_after_every_deploy_the_records_name(tmp_path):
    """Evaluations, traffic changes, events and a redeploy's previous deploy all count; records
    that name no deploy (older than deploy numbers) do not."""
    store = SqliteStore(tmp_path / "gate.sqlite")
    assert highest_deploy(store, "web") == 0
    store.record(verdict("web", 1_060))  # names no deploy
    store.record_traffic("web", {"step": 1, "set_at": 1_000, "weights": {"tg": 5}})
    assert highest_deploy(store, "web") == 0
    store.record(replace(verdict("web", 1_120), deploy=3))
    assert highest_deploy(store, "web") == 3
    store.record_traffic("web", {"step": 1, "set_at": 2_000, "weights": {"tg": 5}, "deploy": 4})
    assert highest_deploy(store, "web") == 4
    store.record_event("web", "notification", {"channel": "slack", "deploy": 5})
    assert highest_deploy(store, "web") == 5
    store.record_event("web", "redeploy", {"previous_deployed_at": 1, "deployed_at": 2, "previous_info": {"deploy": 6}})
    assert highest_deploy(store, "web") == 6
    assert highest_deploy(store, "other") == 0


def item_expiry(release: str, sk: str) -> int:
    item = boto3.client("dynamodb").get_item(TableName=TABLE, Key={"release": {"S": release}, "sk": {"S": sk}})
    return int(item["Item"]["expires_at"]["N"])


def test_the_release_item_expires_no_earlier_than_any_record_of_it(moto_endpoint):  # noqa: F811
    """Written once at registration, the release item expired first (days before the evaluations,
    traffic changes and events written later): each record now moves its expiry to the record's."""
    create_store_table(TABLE)
    store = DynamoStore(TABLE)
    store.start_release("web", 1_000, {"deploy": 1})
    client = boto3.client("dynamodb")
    soon = int(time.time()) + 60

    def registered_long_ago() -> None:
        client.update_item(TableName=TABLE, Key={"release": {"S": "web"}, "sk": {"S": "release"}},
                           UpdateExpression="SET expires_at = :e", ExpressionAttributeValues={":e": {"N": str(soon)}})

    for write in (lambda: store.record(verdict("web", 1_060)), lambda: store.record_error("web", 1_120, "x"),
                  lambda: store.record_event("web", "notification", {}),
                  lambda: store.record_traffic("web", {"step": 1, "set_at": 1_000, "weights": {}})):
        registered_long_ago()
        write()
        records = [i for i in client.scan(TableName=TABLE)["Items"] if i["sk"]["S"] != "release"]
        latest = max(int(i["expires_at"]["N"]) for i in records)
        assert item_expiry("web", "release") >= latest > soon


def test_a_record_never_shortens_the_release_item_s_expiry_nor_creates_it(moto_endpoint):  # noqa: F811
    create_store_table(TABLE)
    DynamoStore(TABLE, ttl_days=30).start_release("web", 1_000, {"deploy": 1})
    registered = item_expiry("web", "release")
    DynamoStore(TABLE, ttl_days=1).record(verdict("web", 1_060))  # a process with a shorter TTL
    assert item_expiry("web", "release") == registered
    DynamoStore(TABLE).record_error("nobody", 1_060, "no source")  # an error before any registration
    assert DynamoStore(TABLE).release("nobody") is None
