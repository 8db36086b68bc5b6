"""Slack notifications over real HTTP against a local stand-in for the incoming webhook."""

from __future__ import annotations

import json
import logging
import time
from types import SimpleNamespace

import pytest
from slack_sdk.http_retry import builtin_handlers

from gate.analysis import replayed
from gate.notify import slack
from gate.store import SqliteStore
from gate.verdict import MetricResult, Verdict
from tests.conftest import run_gate
from tests.fake_slack import SECRET_PATH, FakeSlack

FAIL_CASE = "k1m-canary-down-012"


@pytest.fixture(scope="module")
def failed(corpus) -> Verdict:
    verdict = replayed(corpus / FAIL_CASE)[0]
    assert verdict.verdict == "fail", verdict.reason  # a dead canary is a clear fail
    return verdict


def context(**extra) -> dict:
    return {"policy": "web", "canary": "canary", "baseline": "baseline", **extra}


def assert_valid_block_kit(payload: dict) -> None:
    """The limits Slack enforces (a message over them is rejected with invalid_blocks)."""
    assert isinstance(payload.get("text"), str) and payload["text"].strip(), "plain text fallback"
    blocks = payload["blocks"]
    assert 1 <= len(blocks) <= slack.MAX_BLOCKS
    header = blocks[0]
    assert header["type"] == "header" and header["text"]["type"] == "plain_text"
    assert 0 < len(header["text"]["text"]) <= 150
    for block in blocks:
        assert block["type"] in ("header", "section", "context", "actions", "divider")
        if block["type"] == "section":
            assert "text" in block or "fields" in block
            assert len(block.get("fields", [])) <= 10
            assert all(len(f["text"]) <= 2000 for f in block.get("fields", []))
            if "text" in block:
                assert len(block["text"]["text"]) <= 3000
        if block["type"] == "context":
            assert 1 <= len(block["elements"]) <= 10
        if block["type"] == "actions":
            assert all(e["type"] == "button" and e["url"].startswith("http") for e in block["elements"])


def test_fail_message_is_valid_block_kit_and_names_the_failing_metrics(failed, tmp_path):
    store = SqliteStore(tmp_path / "s.sqlite")
    with FakeSlack() as fake:
        sent = slack.notify(failed, store=store, url=fake.url, report_url="https://reports.example/r.html",
                            build_url="https://jenkins.example/job/web/42/", **context())
    assert sent is True
    assert len(fake.payloads) == 1 and fake.requests[0]["path"] == SECRET_PATH
    payload = fake.payloads[0]
    assert_valid_block_kit(payload)
    failing = [m.name for m in failed.metrics if m.verdict == "fail"]
    assert failing
    assert "FAIL" in payload["blocks"][0]["text"]["text"] and failed.release in payload["blocks"][0]["text"]["text"]
    fields = [f["text"] for b in payload["blocks"] for f in b.get("fields", [])]
    for name in failing:
        assert any(f"*{name}*: fail" in f for f in fields), name
        assert name in payload["text"]
    buttons = [e["url"] for b in payload["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert buttons == ["https://reports.example/r.html", "https://jenkins.example/job/web/42/"]
    context_text = " ".join(e["text"] for b in payload["blocks"] if b["type"] == "context" for e in b["elements"])
    assert "canary" in context_text and "baseline" in context_text and "web" in context_text
    events = [e for e in store.events(failed.release) if e["kind"] == "notification"]
    assert len(events) == 1 and events[0]["detail"]["ok"] is True


def test_limits_hold_for_a_huge_policy_and_a_long_release_name():
    metrics = [MetricResult(f"metric_{i:03d}", "fail" if i % 7 == 0 else "pass", "x" * 300, "rule",
                            canary=1.5, baseline=1.0, effect=0.5, interval=(0.4, 0.6), tolerance=0.1)
               for i in range(600)]
    verdict = Verdict("r" * 400, "fail", "many metrics failed " * 300, 0, 3600, True, metrics)
    payload = slack.build_message(verdict, **context())
    assert_valid_block_kit(payload)
    assert "more metrics" in payload["blocks"][-2]["text"]["text"]
    assert len(payload["text"]) <= 3000


def test_no_button_for_a_local_report_path(failed):
    payload = slack.build_message(failed, report_url="reports/x.html", build_url=None, **context())
    assert not [b for b in payload["blocks"] if b["type"] == "actions"]


def test_rate_limited_then_accepted_is_sent_once(failed, tmp_path):
    store = SqliteStore(tmp_path / "s.sqlite")
    with FakeSlack([(429, {"Retry-After": "1"}), (200, {})]) as fake:
        started = time.monotonic()
        assert slack.notify(failed, store=store, url=fake.url, **context()) is True
        assert time.monotonic() - started >= 1.0  # it honoured Retry-After
        # The same verdict again (a retried Lambda, a re-run step): not announced twice.
        assert slack.notify(failed, store=store, url=fake.url, **context()) is True
    assert len(fake.requests) == 2  # the 429, then the one accepted message
    assert fake.payloads[0] == fake.payloads[1]
    ok = [e for e in store.events(failed.release) if e["kind"] == "notification" and e["detail"]["ok"]]
    assert len(ok) == 1


def test_a_long_retry_after_is_not_waited_for(failed, tmp_path, monkeypatch):
    waits = []  # slack_sdk's 429 handler sleeps through its module's `time`: counted here, not slept
    monkeypatch.setattr(builtin_handlers, "time", SimpleNamespace(sleep=waits.append))
    store = SqliteStore(tmp_path / "s.sqlite")
    with FakeSlack([(429, {"Retry-After": "3600"})]) as fake:
        assert slack.notify(failed, store=store, url=fake.url, **context()) is False
    assert waits == [] and len(fake.requests) == 1
    (event,) = [e for e in store.events(failed.release) if e["kind"] == "notification"]
    assert event["detail"]["ok"] is False and "429" in event["detail"]["error"]


def test_server_errors_are_retried_within_a_budget_and_never_raise(failed, tmp_path, caplog):
    store = SqliteStore(tmp_path / "s.sqlite")
    caplog.set_level(logging.DEBUG)
    with FakeSlack([(500, {}), (502, {}), (503, {})]) as fake:
        assert slack.notify(failed, store=store, url=fake.url, **context()) is False
    assert len(fake.requests) == 1 + slack.SERVER_ERROR_RETRIES
    (event,) = [e for e in store.events(failed.release) if e["kind"] == "notification"]
    assert event["detail"]["ok"] is False and "503" in event["detail"]["error"]
    assert "not sent" in caplog.text
    assert SECRET_PATH not in caplog.text and "s3cr3t" not in json.dumps(event)


def test_unreachable_webhook_is_reported_without_its_url(failed, tmp_path, caplog):
    store = SqliteStore(tmp_path / "s.sqlite")
    with FakeSlack() as fake:
        url = fake.url
    caplog.set_level(logging.DEBUG)
    assert slack.notify(failed, store=store, url=url, **context()) is False  # the server is gone
    (event,) = [e for e in store.events(failed.release) if e["kind"] == "notification"]
    assert "unreachable" in event["detail"]["error"]
    assert "s3cr3t" not in caplog.text and "s3cr3t" not in json.dumps(event)


def test_waiting_is_not_news(failed, monkeypatch):
    inconclusive = Verdict(failed.release, "inconclusive", "not enough evidence yet", 0, 60, False, [])
    with FakeSlack() as fake:
        monkeypatch.setenv("SLACK_WEBHOOK_URL", fake.url)
        assert slack.notify(inconclusive, **context()) is False
    assert fake.requests == []


def replay_policy(tmp_path, corpus) -> tuple:
    case = corpus / FAIL_CASE
    deployed = json.loads((case / "case.json").read_text())["deploy_at"]
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "name: web\n"
        f"source: {{type: replay, options: {{case: '{case}'}}}}\n"
        "canary: {scope: canary}\nbaseline: {scope: baseline}\ninterval: 1m\nlifetime: 1h\nhistory: 7d\n"
        "metrics:\n"
        "  - {name: cpu, kind: gauge, tolerance: 0.1}\n"
        "  - {name: latency, kind: gauge, tolerance: 0.1}\n"
    )
    return policy, deployed


def test_check_exit_code_is_the_verdicts_whatever_slack_does(corpus, tmp_path):
    """`gate check` with Slack answering 500 to everything: same verdict, same exit code, the
    failure on stderr without the webhook URL, and a notification event in the store."""
    policy, deployed = replay_policy(tmp_path, corpus)
    common = ["check", "rel-1", "--policy", policy, "--deployed-at", deployed, "--json", "--examine-past"]
    quiet = run_gate(*common, "--store", tmp_path / "quiet.sqlite", cwd=tmp_path,
                     env={"SLACK_WEBHOOK_URL": "", "GATE_REPORT_DIR": str(tmp_path / "r1")})
    with FakeSlack([(500, {})]) as fake:
        noisy = run_gate(*common, "--store", tmp_path / "noisy.sqlite", cwd=tmp_path,
                         env={"SLACK_WEBHOOK_URL": fake.url, "GATE_REPORT_DIR": str(tmp_path / "r2"),
                              "BUILD_URL": "https://jenkins.example/job/web/7/"})
    assert quiet.returncode == 1, quiet.stderr  # the canary stopped reporting: fail
    assert noisy.returncode == quiet.returncode
    assert json.loads(noisy.stdout)["verdict"] == json.loads(quiet.stdout)["verdict"] == "fail"
    assert len(fake.requests) == 1 + slack.SERVER_ERROR_RETRIES
    assert "slack: notification not sent" in noisy.stderr and "HTTP 500" in noisy.stderr
    assert "s3cr3t" not in noisy.stderr + noisy.stdout
    events = SqliteStore(tmp_path / "noisy.sqlite").events("rel-1")
    (note,) = [e for e in events if e["kind"] == "notification"]
    assert note["detail"]["ok"] is False and note["detail"]["verdict"] == "fail"
    assert (tmp_path / "r2" / "rel-1.html").is_file()  # the report was still written
    assert_valid_block_kit(fake.payloads[0])


def test_the_fallback_text_is_escaped_so_a_name_cannot_mention_a_channel(failed):
    hostile = Verdict("rel <!channel> & <https://evil.example|click>", "fail", "reason <!here> & co", 0, 600,
                      True, [MetricResult("err<!channel>", "fail", "x <@U123>")])
    message = slack.build_message(hostile, policy="web", canary="canary", baseline="baseline")
    assert "<!channel>" not in message["text"] and "<!here>" not in message["text"]
    assert "&lt;!channel&gt;" in message["text"] and "&amp; co" in message["text"]
    assert "<https://evil" not in message["text"]
    texts = [json.dumps(b) for b in message["blocks"] if b["type"] != "header"]
    assert not any("<!channel>" in t or "<!here>" in t or "<@U123>" in t for t in texts)


def test_a_decisive_verdict_is_posted_once_however_many_checks_find_it(corpus, tmp_path):
    """Two `gate check` runs of the same deploy (a later look finds the same fail): one message.
    A new deploy of the release is news again."""
    policy, deployed = replay_policy(tmp_path, corpus)
    store = tmp_path / "gate.sqlite"
    common = ["check", "rel-1", "--policy", policy, "--store", store, "--json", "--examine-past"]
    with FakeSlack() as fake:
        env = {"SLACK_WEBHOOK_URL": fake.url, "GATE_REPORT_DIR": str(tmp_path / "r")}
        first = run_gate(*common, "--deployed-at", deployed, cwd=tmp_path, env=env)
        second = run_gate(*common, "--deployed-at", deployed, cwd=tmp_path, env=env)
        assert first.returncode == second.returncode == 1, first.stderr + second.stderr
        assert len(fake.requests) == 1
    notes = [e for e in SqliteStore(store).events("rel-1") if e["kind"] == "notification"]
    assert len(notes) == 1 and notes[0]["detail"]["ok"] and notes[0]["detail"]["verdict"] == "fail"


def test_notify_skips_a_verdict_already_sent_for_the_same_deploy_only(failed, tmp_path, monkeypatch):
    from dataclasses import replace

    store = SqliteStore(tmp_path / "gate.sqlite")
    later = replace(failed, evaluated_at=failed.evaluated_at + 60)
    redeployed = replace(failed, deployed_at=failed.deployed_at + 86400, evaluated_at=failed.evaluated_at + 86400)
    with FakeSlack() as fake:
        monkeypatch.setenv("SLACK_WEBHOOK_URL", fake.url)
        assert slack.notify(failed, store=store, **context()) is True
        assert slack.notify(later, store=store, **context()) is True  # already sent: not posted again
        assert len(fake.requests) == 1
        assert slack.notify(redeployed, store=store, **context()) is True  # a new deploy: posted
        assert len(fake.requests) == 2
        # A record from before deploys were told apart (no deploy time) never silences a verdict.
        other = replace(failed, release="rel-old")
        store.record_event("rel-old", "notification", {"channel": "slack", "ok": True, "verdict": "fail"})
        assert slack.notify(other, store=store, **context()) is True
        assert len(fake.requests) == 3
