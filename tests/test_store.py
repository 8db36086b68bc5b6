"""The SQLite evaluation store: what is recorded is what is read back, per release, across reopenings."""

import sqlite3

import pytest

from gate.errors import StoreError
from gate.lifecycle import CANONICAL_DIGEST, POLICY_DIGEST, policy_digest, policy_digests
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
    # Registered with its policy's lifetime and the next deploy number (gate.lifecycle.Deploy).
    assert {k: v for k, v in store.release("a")["info"].items() if k not in (POLICY_DIGEST, CANONICAL_DIGEST)} == \
        {"policy": "web", "build": 2, "lifetime": 3600, "deploy": 2}
    (event,) = [e for e in store.events("a") if e["kind"] == "redeploy"]
    assert event["detail"]["previous_deployed_at"] == DEPLOYED and event["detail"]["deployed_at"] == redeploy
    assert event["detail"]["previous_info"] == {"policy": "web", **policy_digests(policy),
                                                "lifetime": 3600, "deploy": 1}
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


# -- registrations racing, moments, policies: the rules hold whoever writes first ------------------

def register_at_once(store, requests: list[dict], *, on_both_read=None) -> list:
    """register_deploy for each request in its own thread, every thread reading the store before
    any writes (`on_both_read` runs then): the race is certain, not lucky. Returns each outcome,
    the deploy time or the exception."""
    import threading

    from gate.lifecycle import register_deploy

    barrier = threading.Barrier(len(requests), action=on_both_read)
    seen = threading.local()

    class ReadThenWait:
        def __getattr__(self, name):
            return getattr(store, name)

        def release(self, release):
            registered = store.release(release)
            if not getattr(seen, "read", False):  # the first read of each thread
                seen.read = True
                barrier.wait(timeout=60)
            return registered

    outcomes = [None] * len(requests)

    def run(i, request):
        try:
            outcomes[i] = register_deploy(ReadThenWait(), **{"policy": web_policy(), "info": {"policy": "web"},
                                                             "clock": lambda: DEPLOYED + 900, **request})
        except Exception as e:  # noqa: BLE001 - the outcome under test
            outcomes[i] = e

    threads = [threading.Thread(target=run, args=(i, r)) for i, r in enumerate(requests)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return outcomes


def one_wins_the_other_is_refused(outcomes, times) -> int:
    from gate.errors import ReleaseError

    won = [o for o in outcomes if isinstance(o, int)]
    refused = [o for o in outcomes if isinstance(o, ReleaseError)]
    assert len(won) == 1 and len(refused) == 1, outcomes
    assert won[0] in times and "contradicts" in str(refused[0]), outcomes
    return won[0]


def holding_the_write_lock(path):
    """A third connection holds SQLite's write lock until both registrations have read the store."""
    lock = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    lock.execute("BEGIN IMMEDIATE")
    return lambda: (lock.execute("ROLLBACK"), lock.close())


def test_two_first_registrations_at_once_with_different_deploy_times_one_is_refused(tmp_path):
    """Issue 15.4: the loser of INSERT OR IGNORE used to take the winner's deploy time silently and
    judge its canary on the wrong window."""
    store = SqliteStore(tmp_path / "gate.sqlite")
    times = (DEPLOYED, DEPLOYED + 600)
    outcomes = register_at_once(store, [{"release": "r1", "requested": t, "now": DEPLOYED + 900} for t in times],
                                on_both_read=holding_the_write_lock(store.path))
    won = one_wins_the_other_is_refused(outcomes, times)
    assert store.release("r1")["deployed_at"] == won


def test_two_restarts_at_once_with_different_deploy_times_one_is_refused(tmp_path):
    store = SqliteStore(tmp_path / "gate.sqlite")
    store.start_release("r1", DEPLOYED - 86400, {"policy": "web"})
    times = (DEPLOYED, DEPLOYED + 600)  # both new deploys after the registered window
    outcomes = register_at_once(store, [{"release": "r1", "requested": t, "now": DEPLOYED + 900} for t in times],
                                on_both_read=holding_the_write_lock(store.path))
    won = one_wins_the_other_is_refused(outcomes, times)
    assert store.release("r1")["deployed_at"] == won
    assert [e["detail"]["deployed_at"] for e in store.events("r1") if e["kind"] == "redeploy"] == [won]


def test_two_first_registrations_of_the_same_deploy_at_once_both_judge_it(tmp_path):
    store = SqliteStore(tmp_path / "gate.sqlite")
    outcomes = register_at_once(store, [{"release": "r1", "requested": DEPLOYED, "now": DEPLOYED + 900},
                                        {"release": "r1", "requested": DEPLOYED + 30, "now": DEPLOYED + 900}],
                                on_both_read=holding_the_write_lock(store.path))
    assert len(set(outcomes)) == 1 and outcomes[0] in (DEPLOYED, DEPLOYED + 30), outcomes


def registering(store, clock=DEPLOYED + 900):
    from gate.lifecycle import register_deploy

    def register(release, requested, now, policy=None, **options):
        return register_deploy(store, release, requested, now, policy or web_policy(), {"policy": "web"},
                               clock=lambda: clock, **options)

    return register


def moments_and_policies(store) -> None:
    """Issues 17.5, 17.6, 17.7 on any store (SQLite here, DynamoDB in test_store_dynamodb.py)."""
    from gate.errors import ReleaseError
    from gate.verdict import iso

    clock = DEPLOYED + 900
    register = registering(store, clock)
    # A first registration whose whole lifetime is over (a time in the wrong zone): refused,
    # unless the caller examines the past on purpose.
    long_ago = clock - 3 * 3600
    with pytest.raises(ReleaseError, match=f"--deployed-at {iso(long_ago)}: .*ended .*add --examine-past"):
        register("old", long_ago, clock)
    assert store.release("old") is None
    assert register("old", long_ago, long_ago + 600, examine_past=True) == long_ago
    # ... and so is a restart into a window that is over.
    with pytest.raises(ReleaseError, match="add --examine-past"):
        register("old", long_ago + 3600, clock)
    # `now` ahead of the clock: refused; a first call must not register a deploy in the future.
    with pytest.raises(ReleaseError, match="now: .* is in the future"):
        register("ahead", None, clock + 120)
    assert store.release("ahead") is None
    assert register("ahead", None, clock + 30) == clock + 30  # clocks a little apart
    # A policy changed under a running canary: refused, naming both.
    assert register("p", DEPLOYED, clock) == DEPLOYED
    store.record(verdict("p", 5))  # judged by it
    shorter = web_policy(lifetime="20m")
    with pytest.raises(ReleaseError, match="policy 'web' differs from the policy release 'p' was registered with"):
        register("p", DEPLOYED, clock, shorter)
    with pytest.raises(ReleaseError, match="differs"):
        register("p", None, clock, shorter)
    assert register("p", None, clock) == DEPLOYED  # the same policy still judges it
    # Before anything was judged (only errors: the source could not be read), it may be corrected.
    assert register("q", DEPLOYED, clock) == DEPLOYED
    store.record_error("q", DEPLOYED + 60, "case folder not found")
    assert register("q", DEPLOYED, clock, shorter) == DEPLOYED
    assert store.release("q")["info"][CANONICAL_DIGEST] == policy_digest(shorter)
    store.record(verdict("q", 5))
    with pytest.raises(ReleaseError, match="differs"):
        register("q", DEPLOYED, clock)
    # A new deploy after the window starts with the new policy.
    later = registering(store, DEPLOYED + 3700)
    assert later("p", DEPLOYED + 3600, DEPLOYED + 3700, shorter) == DEPLOYED + 3600
    assert later("p", None, DEPLOYED + 3700, shorter) == DEPLOYED + 3600


def test_moments_and_policies_on_sqlite(tmp_path):
    moments_and_policies(SqliteStore(tmp_path / "gate.sqlite"))


def test_a_deploy_time_stored_in_the_future_is_refused_clearly(tmp_path):
    from gate.errors import ReleaseError

    store = SqliteStore(tmp_path / "gate.sqlite")
    year_2100 = 4_102_444_800
    store.start_release("r1", year_2100, {"policy": "web"})
    register = registering(store)
    for requested in (None, DEPLOYED):
        with pytest.raises(ReleaseError, match="registered as deployed at 2100-01-01T00:00:00Z, in the future"):
            register("r1", requested, DEPLOYED + 900)


@pytest.mark.parametrize(("column", "value", "message"), [
    ("deployed_at", "'yesterday'", "deploy time \\(deployed_at\\) is 'yesterday', not epoch seconds"),
    ("deployed_at", "1.5", "deploy time \\(deployed_at\\) is '1.5', not epoch seconds"),
    ("deployed_at", "-1", "deploy time \\(deployed_at\\) is '-1', not epoch seconds"),
    ("info", "'{not json'", "its info is not JSON"),
    ("info", "'[1, 2]'", "its info is not a JSON object"),
])
def test_a_damaged_release_row_is_a_store_error_naming_it(tmp_path, column, value, message):
    store = SqliteStore(tmp_path / "gate.sqlite")
    store.start_release("r1", DEPLOYED, {"policy": "web"})
    with sqlite3.connect(store.path) as db:
        db.execute(f"UPDATE releases SET {column} = {value}")  # noqa: S608 - the test's own values
    with pytest.raises(StoreError, match=f"store .*gate.sqlite: release 'r1' is damaged: .*{message}"):
        registering(store)("r1", None, DEPLOYED + 900)


def test_damaged_evaluations_and_events_are_store_errors(tmp_path):
    store = SqliteStore(tmp_path / "gate.sqlite")
    store.record(verdict("r1", 1))
    store.record_event("r1", "notify", {})
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE evaluations SET payload = 'garbage'")
        db.execute("UPDATE events SET detail = '{'")
    with pytest.raises(StoreError, match="an evaluation of 'r1' is not JSON"):
        store.evaluations("r1")
    with pytest.raises(StoreError, match="an event of 'r1' is not JSON"):
        store.events("r1")
