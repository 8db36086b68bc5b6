"""The DynamoDB evaluation store against a real moto server (HTTP on 127.0.0.1)."""

from __future__ import annotations

import socket
import time

import boto3
import pytest

from gate.errors import StoreError
from gate.store import open_store
from gate.store.dynamodb import DynamoStore
from gate.verdict import MetricResult, Verdict
from tests.moto_server import moto_server  # noqa: F401 - the fixture (a moto server on 127.0.0.1)

AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def moto_endpoint(moto_server, monkeypatch):  # noqa: F811
    """boto3 (and everything built on it) talks to a fresh moto server state, with fake credentials."""
    moto_server.reset()
    for key, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.url)
    for key in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(key, raising=False)
    yield moto_server.url
    # moto's state is process-wide (every in-process server shares it): leave nothing behind.
    moto_server.reset()


def create_store_table(name: str) -> None:
    """The table as infra/template.yaml declares it: release (hash), sk (range), TTL expires_at."""
    client = boto3.client("dynamodb")
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "release", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "release", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})


def verdict(release: str, at: int, outcome: str = "inconclusive", final: bool = False) -> Verdict:
    return Verdict(
        release=release, verdict=outcome, reason=f"{outcome} at {at}", deployed_at=1_000, evaluated_at=at,
        final=final,
        metrics=[MetricResult(name="cpu", verdict=outcome if outcome != "error" else "inconclusive",
                              reason="r", canary=1.25, baseline=1.0, effect=0.25, interval=(0.1, 0.4))],
    )


@pytest.fixture
def store(moto_endpoint):
    create_store_table("gate-evaluations")
    return DynamoStore("gate-evaluations")


def test_the_first_registered_deploy_time_wins(store):
    assert store.release("r1") is None
    assert store.start_release("r1", 1_000, {"policy": "web", "canary": "c"}) == 1_000
    assert store.start_release("r1", 2_000, {"policy": "other"}) == 1_000
    assert store.release("r1") == {"release": "r1", "deployed_at": 1_000, "info": {"policy": "web", "canary": "c"}}


def test_evaluations_come_back_in_time_order_with_their_payload(store):
    store.record(verdict("r1", 1_120))
    store.record_error("r1", 1_060, "datadog: 503")
    store.record(verdict("r1", 1_180, "fail", final=True))
    store.record(verdict("other", 1_060, "pass", final=True))
    records = store.evaluations("r1")
    assert [(r["evaluated_at"], r["verdict"], r["final"]) for r in records] == [
        (1_060, "error", False), (1_120, "inconclusive", False), (1_180, "fail", True)]
    assert records[0]["reason"] == "datadog: 503" and records[0]["payload"] == {}
    assert Verdict.from_dict(records[2]["payload"]) == verdict("r1", 1_180, "fail", final=True)
    assert [r["verdict"] for r in store.evaluations("other")] == ["pass"]
    assert store.evaluations("nobody") == []


def test_events_keep_their_order_and_detail(store):
    for i in range(3):
        store.record_event("r1", "notify", {"n": i})
    store.record_event("r1", "rollback", {"group": "web-canary"})
    events = store.events("r1")
    assert [(e["kind"], e["detail"]) for e in events] == [
        ("notify", {"n": 0}), ("notify", {"n": 1}), ("notify", {"n": 2}), ("rollback", {"group": "web-canary"})]
    assert all(isinstance(e["recorded_at"], float) for e in events)


def test_every_item_carries_the_ttl_attribute(store):
    store.start_release("r1", 1_000, {})
    store.record(verdict("r1", 1_060))
    store.record_event("r1", "notify", {})
    items = boto3.client("dynamodb").scan(TableName="gate-evaluations")["Items"]
    assert len(items) == 3
    now = time.time()
    for item in items:
        assert 89 * 86400 < int(item["expires_at"]["N"]) - now <= 90 * 86400 + 5


def test_many_evaluations_are_read_across_pages(store):
    # Large payloads push the query past DynamoDB's 1 MB page: the store must follow LastEvaluatedKey.
    big = verdict("r1", 0)
    big.notes = ["x" * 350_000]
    for at in range(8):
        store.record(Verdict(**{**big.__dict__, "evaluated_at": 1_000 + at}))
    assert [r["evaluated_at"] for r in store.evaluations("r1")] == list(range(1_000, 1_008))


def test_open_store_selects_dynamodb_from_the_environment(store, monkeypatch):
    monkeypatch.setenv("GATE_STORE_TABLE", "gate-evaluations")
    selected = open_store()
    assert isinstance(selected, DynamoStore)
    selected.start_release("r9", 5, {})
    assert store.release("r9")["deployed_at"] == 5


def test_a_missing_table_is_a_store_error_naming_it(moto_endpoint):
    store = DynamoStore("no-such-table")
    with pytest.raises(StoreError, match="no-such-table.*ResourceNotFound"):
        store.record(verdict("r1", 1))


def test_an_unreachable_endpoint_is_a_store_error(monkeypatch):
    for key, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(StoreError, match="gate-evaluations"):
        DynamoStore("gate-evaluations").release("r1")


def test_ttl_days_from_the_environment(store, monkeypatch):
    monkeypatch.setenv("GATE_STORE_TTL_DAYS", "1")
    short = DynamoStore("gate-evaluations")
    short.record_event("r1", "notify", {})
    (item,) = boto3.client("dynamodb").scan(TableName="gate-evaluations")["Items"]
    assert int(item["expires_at"]["N"]) - time.time() <= 86400 + 5


@pytest.mark.parametrize("days", ["abc", "nan", "inf", "-1", "0", "1e-9", "1e400"])
def test_a_ttl_that_is_not_a_positive_number_of_days_is_refused_naming_it(days):
    """`abc` was an internal error naming nothing, `nan` a crash, and 0 or less was accepted: every
    item written already expired, DynamoDB deleting the release being judged."""
    with pytest.raises(StoreError, match=r"^GATE_STORE_TTL_DAYS: .* is not a number of days between 0 \(excluded\)"):
        DynamoStore("gate-evaluations", ttl_days=days, client=object())


@pytest.mark.parametrize("days", ["abc", "-1"])
def test_a_bad_ttl_through_the_cli_is_one_line_naming_it(days, tmp_path):
    from tests.conftest import run_gate

    done = run_gate("history", "web", env={"GATE_STORE_TABLE": "gate-evaluations", "GATE_STORE_TTL_DAYS": days,
                                           **AWS_TEST_ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"},
                    cwd=tmp_path, timeout=60)
    assert done.returncode == 4, done.stdout + done.stderr
    assert done.stderr.strip().startswith(f"error: GATE_STORE_TTL_DAYS: '{days}' is not a number of days"), done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr


def test_a_fraction_of_a_day_is_a_ttl(monkeypatch):
    monkeypatch.delenv("GATE_STORE_TTL_DAYS", raising=False)
    assert DynamoStore("gate-evaluations", ttl_days=" 0.5 ", client=object()).ttl_seconds == 43_200
    assert DynamoStore("gate-evaluations", client=object()).ttl_seconds == 90 * 86_400


def test_the_release_lifecycle_on_dynamodb(store):
    from tests.test_store import lifecycle

    lifecycle(store)


def test_restarting_an_unregistered_release_changes_nothing(store):
    with pytest.raises(StoreError, match="vanished"):
        store.restart_release("ghost", 2_000, {}, previous=1_000)
    assert store.release("ghost") is None and store.events("ghost") == []


def test_the_lambda_follows_the_same_release_lifecycle(store, corpus, monkeypatch):
    """lambda/handler.py on the DynamoDB store: the same rules as `gate check` (register_deploy),
    and release names checked in the event."""
    import sys

    from gate.sources.replay import load_case
    from gate.verdict import iso
    from tests.lambda_module import FakeContext, import_handler

    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("GATE_STORE_TABLE", "gate-evaluations")
    for key in ("GATE_IDEMPOTENCY_TABLE", "GATE_SECRET_ID", "SLACK_WEBHOOK_URL", "GATE_REPORT_BUCKET"):
        monkeypatch.delenv(key, raising=False)
    handler = import_handler("gate_lambda_handler_lifecycle", replays=True)
    try:
        case = load_case(corpus / "k1m-canary-down-012")
        policy = case.policy().model_dump(mode="json", exclude_none=True)
        end = case.end_at

        def call(**fields):
            event = {"release": "web-7", "policy": policy, "canary": "canary", "baseline": "baseline",
                     "examine_past": True, **fields}  # a recorded canary, judged on purpose
            return handler.lambda_handler(event, FakeContext())

        first = call(deployed_at=iso(case.deployed_at), now=iso(end))
        assert first["verdict"] == "fail" and first["deployed_at"] == iso(case.deployed_at)
        assert call(now=iso(end))["deployed_at"] == iso(case.deployed_at)  # the same deploy, found again
        over = call(now=iso(end + 86400))
        assert over["verdict"] == "error" and "window ended" in over["error"] and "deployed_at" in over["error"]
        overlap = call(deployed_at=iso(case.deployed_at + 600), now=iso(end))
        assert overlap["verdict"] == "error" and "contradicts" in overlap["error"]
        # The request contradicts the store: asking again cannot help (the loop stops on a 400).
        assert over["statusCode"] == overlap["statusCode"] == 400
        later = end + 86400
        again = call(deployed_at=iso(later), now=iso(later + 120))
        assert again.get("deployed_at") == iso(later), again  # a new deploy: its own window
        assert store.release("web-7")["deployed_at"] == later
        assert [e["detail"]["previous_deployed_at"] for e in store.events("web-7") if e["kind"] == "redeploy"] == [
            case.deployed_at]
        for name in ("a\nb", "\x1b[31mred", "web\u202e", " web"):
            bad = handler.lambda_handler({"release": name, "policy": policy}, FakeContext())
            assert bad["statusCode"] == 400 and bad["error"].startswith("release:"), bad
    finally:
        sys.modules.pop("gate_lambda_handler_lifecycle", None)


def one_request_at_a_time(store, monkeypatch) -> None:
    """moto checks a condition and writes without a lock, so two concurrent conditional writes can
    both pass there (DynamoDB serialises them: CI once saw both restarts recorded). The race under
    test is on what each registration read before writing, which the barrier makes certain; the
    requests themselves go to moto one at a time."""
    import threading

    lock, call = threading.Lock(), store._call

    def serialised(operation, **kwargs):
        with lock:
            return call(operation, **kwargs)

    monkeypatch.setattr(store, "_call", serialised)


def test_two_first_registrations_at_once_with_different_deploy_times_one_is_refused(store, monkeypatch):
    """Issue 17.8: the loser of the conditional put used to take the winner's deploy time silently."""
    from tests.test_store import DEPLOYED, one_wins_the_other_is_refused, register_at_once

    one_request_at_a_time(store, monkeypatch)
    times = (DEPLOYED, DEPLOYED + 600)
    outcomes = register_at_once(store, [{"release": "r1", "requested": t, "now": DEPLOYED + 900} for t in times])
    assert store.release("r1")["deployed_at"] == one_wins_the_other_is_refused(outcomes, times)


def test_two_restarts_at_once_with_different_deploy_times_one_is_refused(store, monkeypatch):
    from tests.test_store import DEPLOYED, one_wins_the_other_is_refused, register_at_once

    one_request_at_a_time(store, monkeypatch)
    store.start_release("r1", DEPLOYED - 86400, {"policy": "web"})
    times = (DEPLOYED, DEPLOYED + 600)
    outcomes = register_at_once(store, [{"release": "r1", "requested": t, "now": DEPLOYED + 900} for t in times])
    won = one_wins_the_other_is_refused(outcomes, times)
    assert store.release("r1")["deployed_at"] == won
    assert [e["detail"]["deployed_at"] for e in store.events("r1") if e["kind"] == "redeploy"] == [won]


def test_moments_and_policies_on_dynamodb(store):
    from tests.test_store import moments_and_policies

    moments_and_policies(store)


def test_a_restart_whose_redeploy_event_is_refused_changes_nothing(store):
    """The new deploy time and the `redeploy` event are one write: a throttled event write used to
    leave the new deploy time without the record of the previous deploy."""
    import json

    from botocore.exceptions import ClientError

    store.start_release("r1", 1_000, {"policy": "web"})

    def throttle_the_redeploy_event(params, model, **_):
        if "redeploy" in json.dumps(params, default=str):
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
                              model.name)

    store.client.meta.events.register("before-call.dynamodb", throttle_the_redeploy_event)
    with pytest.raises(StoreError, match="ProvisionedThroughputExceededException"):
        store.restart_release("r1", 90_000, {"policy": "web"}, previous=1_000)
    store.client.meta.events.unregister("before-call.dynamodb", throttle_the_redeploy_event)
    assert store.release("r1")["deployed_at"] == 1_000 and store.events("r1") == []
    assert store.restart_release("r1", 90_000, {"policy": "web"}, previous=1_000) == 90_000
    assert [e["detail"]["previous_deployed_at"] for e in store.events("r1")] == [1_000]


INFO = {"info": {"S": "{}"}}
WHEN = {"deployed_at": {"N": "1000"}}


@pytest.mark.parametrize(("attributes", "message"), [
    ({"deployed_at": {"S": "yesterday"}, **INFO}, "deploy time \\(deployed_at\\) is \"{'S': 'yesterday'}\", not epoch"),
    ({"deployed_at": {"N": "1.5"}, **INFO}, "deploy time \\(deployed_at\\) is '1.5', not epoch seconds"),
    (INFO, "deploy time \\(deployed_at\\) is missing"),
    ({**WHEN, "info": {"S": "{not json"}}, "its info is not JSON"),
    ({**WHEN, "info": {"S": "[]"}}, "its info is not a JSON object"),
    (WHEN, "its info is not JSON"),
])
def test_a_damaged_release_item_is_a_store_error_naming_it(store, attributes, message):
    item = {"release": {"S": "r1"}, "sk": {"S": "release"}, **attributes}
    boto3.client("dynamodb").put_item(TableName="gate-evaluations", Item=item)
    with pytest.raises(StoreError, match=f"DynamoDB store gate-evaluations: release 'r1' is damaged: .*{message}"):
        store.release("r1")
