"""A decisive verdict as a Datadog event, posted with the official client to the fake API."""

from __future__ import annotations

import logging
import time

import pytest

from gate.notify import datadog_event
from gate.store import SqliteStore
from gate.verdict import MetricResult, Verdict
from tests.fake_datadog import API_KEY, APP_KEY, FakeDatadog
from tests.test_datadog_source import datadog_policy

VERDICT = Verdict(
    release="web-1.4.2", verdict="fail", reason="latency: canary +45% vs baseline",
    deployed_at=1_700_000_000, evaluated_at=1_700_001_800, final=True,
    metrics=[MetricResult("latency", "fail", "canary +45% vs baseline, beyond tolerance 10%")],
)


@pytest.fixture
def fake(monkeypatch):
    with FakeDatadog(None) as fake:
        monkeypatch.setenv("GATE_DATADOG_URL", fake.url)
        monkeypatch.setenv("DD_API_KEY", API_KEY)
        monkeypatch.setenv("DD_APP_KEY", APP_KEY)
        yield fake


def test_a_verdict_is_posted_as_an_event_tagged_with_release_and_service(fake, tmp_path):
    store = SqliteStore(tmp_path / "gate.sqlite")
    event_id = datadog_event.notify(VERDICT, datadog_policy(events=True), store)
    assert event_id == 1 and len(fake.events) == 1
    event = fake.events[0]
    assert event["title"] == "canary fail: web web-1.4.2"
    assert event["alert_type"] == "error" and event["date_happened"] == VERDICT.evaluated_at
    assert {"service:web", "release:web-1.4.2", "canary_verdict:fail"} <= set(event["tags"])
    assert "latency: fail" in event["text"]
    assert store.events("web-1.4.2")[0]["detail"] == {"posted": True, "event_id": 1, "verdict": "fail",
                                                      "deployed_at": "2023-11-14T22:13:20Z", "deploy": None}


def test_one_verdict_of_one_deploy_is_posted_once(fake, tmp_path):
    """Review: every announce of the same verdict posted the event again (Slack and the webhook
    send once per verdict of a deploy): three `gate check` runs, three events. A new deploy of
    the release is news again."""
    store = SqliteStore(tmp_path / "gate.sqlite")
    policy = datadog_policy(events=True)
    ids = [datadog_event.notify(VERDICT, policy, store) for _ in range(3)]
    assert ids == [1, 1, 1] and len(fake.events) == 1
    redeployed = Verdict(**{**VERDICT.__dict__, "deployed_at": VERDICT.deployed_at + 3600})
    assert datadog_event.notify(redeployed, policy, store) == 2 and len(fake.events) == 2


def test_nothing_is_posted_unless_the_policy_asks(fake):
    assert datadog_event.notify(VERDICT, datadog_policy(), None) is None
    assert fake.requests == []


def test_tags_follow_the_datadog_grammar():
    assert datadog_event.tag("release", "Web 1.4.2,rc{1}") == "release:web_1.4.2_rc_1_"


def test_a_refused_event_never_raises_nor_shows_the_keys(fake, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("DD_API_KEY", "wrong-key-31337")
    assert datadog_event.post(VERDICT, "web") is None
    assert "Datadog event not posted: 403" in caplog.text
    assert "wrong-key-31337" not in caplog.text and fake.events == []


def test_an_unreachable_datadog_never_raises(monkeypatch, caplog):
    monkeypatch.setenv("GATE_DATADOG_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("DD_API_KEY", API_KEY)
    monkeypatch.setenv("DD_APP_KEY", APP_KEY)
    assert datadog_event.post(VERDICT, "web") is None
    assert "Datadog event not posted" in caplog.text


def test_trickled_headers_never_hold_the_announcement(fake, monkeypatch, caplog):
    """The verdict is recorded before it is announced; a server trickling its headers must not
    hold the gate (the CLI, a Lambda's time) for ever after it."""
    monkeypatch.setattr(datadog_event, "TIMEOUT", 1)
    fake.fault, fake.trickle_for = "trickle_headers", 60.0
    assert datadog_event.post(VERDICT, "web") is None
    assert "Datadog event not posted" in caplog.text and fake.events == []
    # The gate hung up on the answer, not the server after its minute (it notices at its next write).
    for _ in range(100):
        if fake.hung_up:
            break
        time.sleep(0.1)
    assert fake.hung_up == 1
