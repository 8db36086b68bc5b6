"""A final verdict is final: a look after it answers it again, never judges anew (review of the
Jenkins runs with the real analyzer: after another build's final pass at minute 30, later looks
of the same deploy answered inconclusive, then pass again at minute 45; judged again, a longer
window is a new question to the sequential test, and a failed canary could pass a later look
after the pipeline had rolled it back). Recorded cases (clean A/A canaries) on the real store."""

from __future__ import annotations

import re

import pytest

from gate.analysis import announce, open_release
from gate.sources import open_source
from gate.sources.replay import load_case
from gate.store import SqliteStore
from gate.verdict import iso
from tests.lambda_module import FakeContext
from tests.test_lambda_handler import case_event, handler  # noqa: F401 (fixture)

CASE = "k1m-aa-001"  # judged as recorded: a final pass at minute 30, inconclusive at minute 31


def test_a_look_after_a_final_pass_answers_that_pass(corpus, tmp_path, monkeypatch):
    case = load_case(corpus / CASE)
    store = SqliteStore(tmp_path / "gate.sqlite")
    told = []
    monkeypatch.setattr("gate.notify.tell", lambda news: told.append(news.verdict.verdict))

    def look(minute: int):
        now = case.deployed_at + 60 * minute
        analysis = open_release(case.policy(), CASE, now, open_source=open_source, store=store,
                                requested=case.deployed_at, canary="canary", baseline="baseline",
                                examine_past=True, clock=lambda: now)
        evaluation = analysis.evaluation(now)
        announce(analysis, evaluation, report=False)
        return evaluation.verdict

    early = look(20)
    assert (early.verdict, early.final) == ("inconclusive", False)
    final = look(30)
    assert (final.verdict, final.final) == ("pass", True)
    for minute in (31, 45, 60, 61):
        again = look(minute)
        assert (again.verdict, again.final, again.evaluated_at) == ("pass", True, final.evaluated_at), minute
        assert again.notes[-1] == (f"the deploy's final verdict, reached at {iso(final.evaluated_at)}, answered "
                                   "again: a final verdict is never judged anew")
    assert [e["verdict"] for e in store.evaluations(CASE)] == ["inconclusive", "pass"]  # nothing judged after
    assert told == ["pass"]  # told once, when reached
    # A look at a moment before the final verdict answers it too: the deploy's verdict is given.
    before = look(25)
    assert (before.verdict, before.final, before.evaluated_at) == ("pass", True, final.evaluated_at)
    assert [e["verdict"] for e in store.evaluations(CASE)] == ["inconclusive", "pass"] and told == ["pass"]


def test_the_lambda_answers_a_later_look_with_the_recorded_final_verdict(handler, corpus):  # noqa: F811
    case = load_case(corpus / CASE)
    event = case_event(corpus, CASE)
    first = handler.lambda_handler({**event, "now": iso(case.deployed_at + 30 * 60)}, FakeContext())
    assert (first["verdict"], first["final"], first["exit_code"]) == ("pass", True, 0)
    later = handler.lambda_handler({**event, "now": iso(case.deployed_at + 31 * 60)}, FakeContext())
    assert (later["verdict"], later["final"], later["exit_code"]) == ("pass", True, 0), later
    assert later["evaluated_at"] == first["evaluated_at"] and later["deploy"] == first["deploy"] == 1
    assert later["same_deploy"] == first["same_deploy"]


def test_a_damaged_final_verdict_is_a_store_error_naming_it(corpus, tmp_path):
    import json
    import sqlite3

    import pytest

    from gate.errors import StoreError

    case = load_case(corpus / CASE)
    path = tmp_path / "gate.sqlite"
    store = SqliteStore(path)

    def look(minute: int):
        now = case.deployed_at + 60 * minute
        return open_release(case.policy(), CASE, now, open_source=open_source, store=store,
                            requested=case.deployed_at, canary="canary", baseline="baseline",
                            examine_past=True, clock=lambda: now).evaluation(now).verdict

    assert look(30).final
    with sqlite3.connect(path) as db:
        (payload,) = db.execute("SELECT payload FROM evaluations").fetchone()
        db.execute("UPDATE evaluations SET payload = ?", (json.dumps({**json.loads(payload), "metrics": [{"x": 1}]}),))
    with pytest.raises(StoreError, match=rf"the final verdict of '{CASE}' recorded at .* is damaged \(TypeError: "):
        look(31)


class FailsFromMinute40:
    """The real judge, but a canary shown bad from minute 40 on (as a real regression would be)."""

    def __init__(self, deployed_at: int):
        self.deployed_at = deployed_at

    def __getattr__(self, name):
        from gate import judge

        return getattr(judge, name)

    def evaluate(self, policy, reference, window, deployed_at, now):
        from dataclasses import replace

        from gate import judge

        verdict = judge.evaluate(policy, reference, window, deployed_at, now)
        if now >= self.deployed_at + 2400:
            return replace(verdict, verdict="fail", final=True, reason="error_rate: canary worse")
        return verdict


def looks_of(case, store, judge=None):
    def look(minute: int):
        now = case.deployed_at + 60 * minute
        analysis = open_release(case.policy(), CASE, now, open_source=open_source, store=store,
                                requested=case.deployed_at, canary="canary", baseline="baseline",
                                examine_past=True, clock=lambda: now + 3600)
        if judge is not None:
            analysis.judge = judge
        return analysis.evaluation(now).verdict
    return look


def test_a_look_at_an_earlier_moment_answers_the_final_fail_never_a_pass(corpus, tmp_path):
    """Review (doors): a final fail recorded at minute 40; a look asked at minute 30 (a Lambda
    `now`, a retry) was judged anew, recorded a final pass there, and that pass (the first final
    verdict by moment) answered every later look."""
    case = load_case(corpus / CASE)
    store = SqliteStore(tmp_path / "gate.sqlite")
    failing = looks_of(case, store, FailsFromMinute40(case.deployed_at))
    fail = failing(40)
    assert (fail.verdict, fail.final) == ("fail", True)
    for look, minute in ((looks_of(case, store), 30), (failing, 50), (looks_of(case, store), 20)):
        again = look(minute)
        assert (again.verdict, again.final, again.evaluated_at) == ("fail", True, fail.evaluated_at), minute
    assert [e["verdict"] for e in store.evaluations(CASE)] == ["fail"]  # nothing judged nor recorded after


def test_the_first_final_verdict_recorded_wins_not_the_earliest_moment(corpus, tmp_path):
    """Two final verdicts recorded (an earlier gate judged a look at an earlier moment anew): the
    one recorded first is the deploy's, though the other was reached at an earlier moment."""
    from dataclasses import replace

    case = load_case(corpus / CASE)
    store = SqliteStore(tmp_path / "gate.sqlite")
    fail = looks_of(case, store, FailsFromMinute40(case.deployed_at))(40)
    store.record(replace(fail, verdict="pass", reason="all metrics ok", evaluated_at=case.deployed_at + 1800))
    assert [e["verdict"] for e in store.evaluations(CASE)] == ["pass", "fail"]  # by moment
    again = looks_of(case, store)(45)
    assert (again.verdict, again.evaluated_at) == ("fail", fail.evaluated_at)


def damage(path, statement: str, change=None) -> None:
    import json
    import sqlite3

    with sqlite3.connect(path) as db:
        if change is None:
            db.execute(statement)
            return
        (row_id, payload) = db.execute("SELECT id, payload FROM evaluations WHERE final = 1").fetchone()
        db.execute("UPDATE evaluations SET payload = ? WHERE id = ?", (json.dumps(change(json.loads(payload))), row_id))


@pytest.mark.parametrize("statement, change, said", [
    ("UPDATE evaluations SET verdict = 'fail' WHERE final = 1", None, "the record says fail final of"),
    ("", lambda p: {**p, "verdict": "fail"}, "its payload fail final of"),
    ("", lambda p: {**p, "final": False}, "its payload pass of"),
    ("", lambda p: {**p, "release": "another-release"}, "its payload pass final of 'another-release'"),
    ("UPDATE evaluations SET evaluated_at = evaluated_at + 60 WHERE final = 1", None, "its payload pass final of"),
    ("", lambda p: {k: v for k, v in p.items() if k != "deployed_at"}, "its payload names no deploy time"),
    ("UPDATE evaluations SET final = 0 WHERE final = 1", None, "the record says pass of"),
    ("UPDATE evaluations SET verdict = 'error' WHERE final = 1", None, "the record says error final of"),
], ids=["row verdict", "payload verdict", "payload final", "payload release", "row moment", "no deploy time",
        "row not final", "row error"])
def test_a_final_verdict_whose_row_and_payload_disagree_is_a_store_error(corpus, tmp_path, statement, change, said):
    """Review (doors): the short-cut chose by the row's verdict and final columns but answered the
    payload's verdict, never checking its release: a row saying fail with a payload saying pass
    answered pass."""
    from gate.errors import StoreError

    case = load_case(corpus / CASE)
    path = tmp_path / "gate.sqlite"
    store = SqliteStore(path)
    assert looks_of(case, store)(30).final
    damage(path, statement, change)
    with pytest.raises(StoreError, match=rf"the final verdict of '{CASE}' recorded at .* is damaged \(.*"
                                         rf"{re.escape(said)}.*repair or remove that record"):
        looks_of(case, store)(45)
