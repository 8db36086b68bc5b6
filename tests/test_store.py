"""The SQLite evaluation store: what is recorded is what is read back, per release, across reopenings."""

import sqlite3

import pytest

from gate.errors import StoreError
from gate.lifecycle import POLICY_DIGEST, policy_digest
from gate.store import SqliteStore, open_store
from gate.verdict import MetricResult, Verdict

DEPLOYED = 1_700_000_000


def verdict(release: str, minutes: int, outcome: str = "inconclusive", final: bool = False) -> Verdict:
    latency = MetricResult(
        name="latency", verdict="fail" if outcome == "fail" else "pass", reason="canary +40% vs baseline",
        rule="mean-above-tolerance", canary=140.0, baseline=100.0, effect=0.4, interval=(0.3, 0.5),
        tolerance=0.1, critical=True,
    )
    return Verdict(release, outcome, f"{outcome} after {minutes} min", DEPLOYED, DEPLOYED + 60 * minutes,
                   final, [latency], notes=["a note"])


def test_evaluations_are_read_back_in_time_order_with_their_payload(tmp_path):
    store = SqliteStore(tmp_path / "gate.sqlite")
    store.record(verdict("r1", 2))
    store.record(verdict("r1", 1))
    store.record(verdict("r1", 3, "fail", final=True))
    records = store.evaluations("r1")
    assert [r["evaluated_at"] for r in records] == [DEPLOYED + 60, DEPLOYED + 120, DEPLOYED + 180]
    assert [r["verdict"] for r in records] == ["inconclusive", "inconclusive", "fail"]
    assert [r["final"] for r in records] == [False, False, True]
    last = records[-1]
    assert last["reason"] == "fail after 3 min"
    assert Verdict.from_dict(last["payload"]) == verdict("r1", 3, "fail", final=True)


def test_errors_are_recorded_as_evaluations_that_could_not_judge(tmp_path):
    store = SqliteStore(tmp_path / "gate.sqlite")
    store.record(verdict("r1", 1))
    store.record_error("r1", DEPLOYED + 120, "datadog: 403 Forbidden")
    records = store.evaluations("r1")
    assert [r["verdict"] for r in records] == ["inconclusive", "error"]
    assert records[1]["reason"] == "datadog: 403 Forbidden"
    assert records[1]["final"] is False


def test_events_are_kept_in_order(tmp_path):
    store = SqliteStore(tmp_path / "gate.sqlite")
    store.record_event("r1", "rollback", {"group": "web-canary"})
    store.record_event("r1", "notify", {"channel": "slack", "ok": True})
    events = store.events("r1")
    assert [(e["kind"], e["detail"]) for e in events] == [
        ("rollback", {"group": "web-canary"}), ("notify", {"channel": "slack", "ok": True})]
    assert all(e["recorded_at"] > 0 for e in events)


def test_the_first_registration_of_a_release_wins(tmp_path):
    store = SqliteStore(tmp_path / "gate.sqlite")
    assert store.release("r1") is None
    assert store.start_release("r1", DEPLOYED, {"policy": "web"}) == DEPLOYED
    assert store.start_release("r1", DEPLOYED + 600, {"policy": "other"}) == DEPLOYED
    assert store.release("r1") == {"release": "r1", "deployed_at": DEPLOYED, "info": {"policy": "web"}}


def test_two_releases_do_not_mix(tmp_path):
    store = SqliteStore(tmp_path / "gate.sqlite")
    store.start_release("r1", DEPLOYED, {})
    store.start_release("r2", DEPLOYED + 60, {})
    store.record(verdict("r1", 1))
    store.record(verdict("r2", 1, "fail", final=True))
    store.record(verdict("r1", 2, "pass", final=True))
    store.record_error("r2", DEPLOYED + 300, "boom")
    store.record_event("r1", "promote", {})
    assert [r["verdict"] for r in store.evaluations("r1")] == ["inconclusive", "pass"]
    assert [r["verdict"] for r in store.evaluations("r2")] == ["fail", "error"]
    assert [e["kind"] for e in store.events("r1")] == ["promote"]
    assert store.events("r2") == []
    assert store.evaluations("r3") == []


def test_a_reopened_file_has_everything(tmp_path):
    path = tmp_path / "deep" / "folder" / "gate.sqlite"  # missing folders are created
    first = SqliteStore(path)
    first.start_release("r1", DEPLOYED, {"policy": "web"})
    first.record(verdict("r1", 1, "fail", final=True))
    first.record_event("r1", "rollback", {})
    again = SqliteStore(path)
    assert again.release("r1")["info"] == {"policy": "web"}
    assert [r["verdict"] for r in again.evaluations("r1")] == ["fail"]
    assert [e["kind"] for e in again.events("r1")] == ["rollback"]
    with sqlite3.connect(path) as db:  # a plain SQLite file, readable by any tool
        assert db.execute("SELECT count(*) FROM evaluations").fetchone() == (1,)


def test_the_path_comes_from_gate_store_or_defaults_under_dot_gate(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GATE_STORE_TABLE", raising=False)
    monkeypatch.delenv("GATE_STORE", raising=False)
    assert SqliteStore().path == tmp_path.joinpath(".gate", "gate.sqlite").relative_to(tmp_path)
    assert (tmp_path / ".gate" / "gate.sqlite").is_file()
    monkeypatch.setenv("GATE_STORE", str(tmp_path / "env.sqlite"))
    store = open_store()
    assert isinstance(store, SqliteStore) and store.path == tmp_path / "env.sqlite"
    assert open_store(tmp_path / "explicit.sqlite").path == tmp_path / "explicit.sqlite"


def test_an_unusable_path_is_a_store_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="cannot open the store"):
        SqliteStore(blocker / "gate.sqlite")
    not_sqlite = tmp_path / "garbage.sqlite"
    not_sqlite.write_bytes(b"this is not a database, just bytes" * 100)
    with pytest.raises(StoreError, match="garbage.sqlite"):
        SqliteStore(not_sqlite)


def test_a_broken_file_after_opening_is_a_store_error(tmp_path):
    path = tmp_path / "gate.sqlite"
    store = SqliteStore(path)
    path.write_bytes(b"overwritten by something else" * 200)
    with pytest.raises(StoreError, match="cannot write to the store"):
        store.record(verdict("r1", 1))
    with pytest.raises(StoreError, match="cannot read the store"):
        store.evaluations("r1")


# -- the release lifecycle: one registration per deploy, a re-deploy restarts the release --------

def web_policy(**changes):
    from gate.policy import parse_policy

    return parse_policy({"name": "web", "source": {"type": "simulate"}, "canary": {"scope": "c"},
                         "interval": "1m", "lifetime": "1h", "metrics": [{"name": "latency", "kind": "gauge"}],
                         **changes})


def lifecycle(store) -> None:
    """register_deploy on any store (SQLite here, DynamoDB in test_store_dynamodb.py)."""
    from gate.errors import ReleaseError
    from gate.lifecycle import register_deploy

    policy = web_policy()
    clock = lambda: DEPLOYED + 10 * 86400  # noqa: E731 - "now" of the machine, long after all of this

    def register(release, requested, now, info=None):
        return register_deploy(store, release, requested, now, policy, info or {"policy": "web"}, clock=clock,
                               examine_past=True)  # the past of `clock`, on purpose

    # Not registered: the requested deploy time, or now.
    assert register("a", None, DEPLOYED) == DEPLOYED
    assert register("b", DEPLOYED - 600, DEPLOYED) == DEPLOYED - 600
    # The same deploy again, with or without its time, inside its window (plus one interval).
    assert register("a", DEPLOYED, DEPLOYED + 1800) == DEPLOYED
    assert register("a", None, DEPLOYED + 3600 + 60) == DEPLOYED
    # Another deploy time inside the registered window: refused, naming both.
    with pytest.raises(ReleaseError, match="--deployed-at .* contradicts release 'a'"):
        register("a", DEPLOYED + 600, DEPLOYED + 900)
    with pytest.raises(ReleaseError, match="contradicts"):
        register("a", DEPLOYED - 61, DEPLOYED + 900)
    # Clocks a little apart (up to a minute) tell the same deploy.
    assert register("a", DEPLOYED - 60, DEPLOYED + 900) == register("a", DEPLOYED + 45, DEPLOYED + 900) == DEPLOYED
    # No deploy time once the window is over: refused, saying how to judge a new deploy.
    with pytest.raises(ReleaseError, match="window ended .* give its start \\(--deployed-at\\)"):
        register("a", None, DEPLOYED + 3600 + 61)
    # A deploy time in the future of this machine: refused.
    with pytest.raises(ReleaseError, match="in the future"):
        register("a", clock() + 3600, clock())
    assert store.release("a")["deployed_at"] == DEPLOYED  # none of the refusals changed anything
    # A new deploy after the window: the release restarts there, the old deploy stays recorded.
    redeploy = DEPLOYED + 86400
    assert register("a", redeploy, redeploy + 60, {"policy": "web", "build": 2}) == redeploy
    assert store.release("a")["deployed_at"] == redeploy
    assert {k: v for k, v in store.release("a")["info"].items() if k != POLICY_DIGEST} == {"policy": "web", "build": 2}
    (event,) = [e for e in store.events("a") if e["kind"] == "redeploy"]
    assert event["detail"]["previous_deployed_at"] == DEPLOYED and event["detail"]["deployed_at"] == redeploy
    assert event["detail"]["previous_info"] == {"policy": "web", POLICY_DIGEST: policy_digest(policy)}
    assert register("a", None, redeploy + 120) == redeploy
    # A restart racing another one: only the first applies, the other reads what is registered.
    assert store.restart_release("a", redeploy + 7 * 86400, {}, previous=DEPLOYED) == redeploy
    assert len([e for e in store.events("a") if e["kind"] == "redeploy"]) == 1


def test_the_release_lifecycle_on_sqlite(tmp_path):
    lifecycle(SqliteStore(tmp_path / "gate.sqlite"))


def test_a_restart_survives_reopening_the_store(tmp_path):
    store = SqliteStore(tmp_path / "gate.sqlite")
    store.start_release("r1", DEPLOYED, {"policy": "web"})
    assert store.restart_release("r1", DEPLOYED + 86400, {"policy": "web2"}, previous=DEPLOYED) == DEPLOYED + 86400
    again = SqliteStore(tmp_path / "gate.sqlite")
    assert again.release("r1") == {"release": "r1", "deployed_at": DEPLOYED + 86400, "info": {"policy": "web2"}}
