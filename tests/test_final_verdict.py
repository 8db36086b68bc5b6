"""A final verdict is final: a look after it answers it again, never judges anew (review of the
Jenkins runs with the real analyzer: after another build's final pass at minute 30, later looks
of the same deploy answered inconclusive, then pass again at minute 45; judged again, a longer
window is a new question to the sequential test, and a failed canary could pass a later look
after the pipeline had rolled it back). Recorded cases (clean A/A canaries) on the real store."""

from __future__ import annotations

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
    # A look at a moment before the final verdict is judged as it was then.
    assert look(25).verdict == "inconclusive"


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
