"""gate.notify: one protocol every notifier implements, one registry `announce` tells."""

from __future__ import annotations

from pathlib import Path

import pytest

from gate import notify
from gate.analysis import announce, open_release
from gate.notify import NOTIFIERS, News, Notifier, notifier, register
from gate.policy import load_policy
from gate.sources import open_source
from gate.store import SqliteStore

ROOT = Path(__file__).resolve().parent.parent
DEPLOYED_AT = 1714996800  # 2024-05-06T12:00:00Z, the simulated demo's deploy


@pytest.fixture
def registry(monkeypatch):
    """NOTIFIERS as shipped, restored after the test."""
    monkeypatch.setattr(notify, "NOTIFIERS", dict(NOTIFIERS))
    for name in ("SLACK_WEBHOOK_URL", "GATE_WEBHOOK_URL", "GATE_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    return notify.NOTIFIERS


def test_slack_the_datadog_event_and_the_webhook_are_notifiers_told_in_that_order(registry):
    assert list(registry) == ["slack", "datadog_event", "webhook"]
    for name in registry:
        assert isinstance(notifier(name), Notifier) and notifier(name).name == name


def test_a_new_notifier_registered_once_hears_every_decisive_verdict_and_nothing_else(registry, tmp_path):
    heard: list[News] = []

    class Pager:  # a new channel: a name and notify(news), nothing else
        name = "pager"

        def notify(self, news: News) -> None:
            heard.append(news)

    register("pager", Pager())
    policy = load_policy(ROOT / "examples" / "simulate.yaml")  # db_connections: a failing canary
    analysis = open_release(policy, "web-1", DEPLOYED_AT + 3600, open_source=open_source,
                            store=SqliteStore(tmp_path / "gate.sqlite"), requested=DEPLOYED_AT, examine_past=True)
    waiting = analysis.evaluation(DEPLOYED_AT + 60)
    assert not waiting.verdict.decisive
    assert announce(analysis, waiting, report=False) is None and heard == []  # a wait tells nobody

    decided = analysis.evaluation(analysis.end_at)
    assert decided.verdict.verdict == "fail"
    announce(analysis, decided, report=False, build_url="https://ci.example/1")
    assert [(n.verdict.verdict, n.policy.name, n.canary, n.baseline, n.build_url) for n in heard] == [
        ("fail", "demo-shop", "canary", "baseline", "https://ci.example/1")]


def test_a_notifier_that_raises_costs_neither_the_verdict_nor_the_notifiers_after_it(registry, tmp_path):
    """Review: a Datadog event answered with an id of null raised TypeError out of notify(); tell()
    trusted every notifier's promise not to raise, so the webhook after it was never called and
    `gate check` answered could-not-judge (exit 4) for a judged canary."""
    heard: list[str] = []

    class Broken:
        name = "broken"

        def notify(self, news: News) -> None:
            raise TypeError("int() argument must be ... not 'NoneType'")

    class Pager:
        name = "pager"

        def notify(self, news: News) -> None:
            heard.append(news.verdict.verdict)

    register("broken", Broken())
    register("pager", Pager())
    policy = load_policy(ROOT / "examples" / "simulate.yaml")
    analysis = open_release(policy, "web-1", DEPLOYED_AT + 3600, open_source=open_source,
                            store=SqliteStore(tmp_path / "gate.sqlite"), requested=DEPLOYED_AT, examine_past=True)
    decided = analysis.evaluation(analysis.end_at)
    announce(analysis, decided, report=False)
    assert heard == ["fail"]
