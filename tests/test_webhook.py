"""The generic webhook (gate/notify/webhook.py) against a real local receiver (tests/fake_slack.py):
signed JSON, retries within a budget, once per decisive verdict of a deploy, never a changed verdict."""

import hashlib
import hmac
import json
import logging
import threading

import pytest
import yaml

from gate.notify import webhook
from gate.policy import json_schema, parse_policy
from gate.store import SqliteStore
from gate.verdict import MetricResult, Verdict
from tests.conftest import ROOT, run_gate
from tests.fake_slack import SECRET_PATH, FakeSlack

SECRET = "whsec-test-0123456789"
SIMULATE = yaml.safe_load((ROOT / "examples" / "simulate.yaml").read_text())

FAILED = Verdict(
    "web-1.2.3", "fail", "latency: canary mean +42.0% vs baseline (tolerance 10%): beyond tolerance",
    1_700_000_000, 1_700_000_960, True,
    [MetricResult("latency", "fail", "canary mean +42.0% vs baseline (tolerance 10%): shown beyond tolerance",
                  "margin-test", canary=412.5, baseline=290.49, effect=0.42, interval=(0.31, 0.53), tolerance=0.1,
                  critical=True),
     MetricResult("cpu", "pass", "shown within tolerance", "margin-test", canary=44.0, baseline=44.1, effect=-0.002,
                  interval=(-0.015, 0.012), tolerance=0.1)],
)


def policy(enabled: bool = True):
    return parse_policy({**SIMULATE, "notify": {"webhook": enabled}})


@pytest.fixture
def receiver(monkeypatch):
    def start(script=None):
        fake = FakeSlack(script).__enter__()
        started.append(fake)
        monkeypatch.setenv(webhook.ENV_URL, fake.url)
        monkeypatch.setenv(webhook.ENV_SECRET, SECRET)
        return fake

    started: list[FakeSlack] = []
    yield start
    for fake in started:
        fake.__exit__(None)


def send(store=None, verdict=FAILED, enabled=True) -> bool:
    return webhook.notify(verdict, policy(enabled), store=store, canary="web-canary", baseline="web-baseline",
                          report_url="https://reports.example/web-1.2.3.html", build_url="https://ci.example/42")


def test_a_decisive_verdict_is_posted_as_signed_json_once_per_deploy(receiver, tmp_path):
    fake = receiver()
    store = SqliteStore(tmp_path / "s.sqlite")
    assert send(store) is True
    assert send(store) is True  # found again by a later check: not sent again
    (request,) = fake.requests
    headers = {k.lower(): v for k, v in request["headers"].items()}
    expected = hmac.new(SECRET.encode(), headers["x-gate-timestamp"].encode() + b"." + request["raw"],
                        hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-gate-signature"], f"sha256={expected}")
    assert headers["content-type"] == "application/json"
    body = request["body"]
    assert body["version"] == 1 and body["event"] == "canary.verdict"
    assert (body["release"], body["verdict"], body["severity"]) == ("web-1.2.3", "fail", "error")
    assert [m["name"] for m in body["failing_metrics"]] == ["latency"] and body["deciding_metrics"] == ["latency"]
    assert body["failing_metrics"][0]["effect"] == 0.42 and body["failing_metrics"][0]["tolerance"] == 0.1
    assert body["links"] == {"report": "https://reports.example/web-1.2.3.html", "build": "https://ci.example/42"}
    assert (body["canary"], body["baseline"]) == ("web-canary", "web-baseline")
    assert body["deployed_at"] == "2023-11-14T22:13:20Z" and body["summary"].startswith("canary fail: demo-shop web-1.2.3")
    (event,) = [e["detail"] for e in store.events("web-1.2.3") if e["detail"].get("channel") == "webhook"]
    assert event["ok"] and event["attempts"] == 1 and SECRET_PATH not in json.dumps(event)


def test_a_tampered_body_does_not_match_its_signature(receiver):
    fake = receiver()
    send()
    (request,) = fake.requests
    headers = {k.lower(): v for k, v in request["headers"].items()}
    forged = request["raw"].replace(b'"fail"', b'"pass"')
    assert forged != request["raw"]
    assert headers["x-gate-signature"] != webhook.signature(SECRET, headers["x-gate-timestamp"], forged)


def test_server_errors_and_rate_limits_are_retried_within_the_budget(receiver, monkeypatch):
    fake = receiver([(500, {}), (429, {"Retry-After": "0"}), (200, {})])
    monkeypatch.setattr(webhook.time, "sleep", lambda s: None)  # the waits' lengths are not what is tested
    assert send() is True
    assert len(fake.requests) == 3
    assert len({r["raw"] for r in fake.requests}) == 1  # the same body each time


def test_a_receiver_that_keeps_failing_is_given_up_without_raising_or_naming_the_url(receiver, tmp_path, caplog,
                                                                                        monkeypatch):
    fake = receiver([(503, {})])
    monkeypatch.setattr(webhook.time, "sleep", lambda s: None)
    store = SqliteStore(tmp_path / "s.sqlite")
    with caplog.at_level(logging.WARNING, logger="gate.notify.webhook"):
        assert send(store) is False
    assert 1 < len(fake.requests) <= webhook.MAX_ATTEMPTS
    (event,) = [e["detail"] for e in store.events("web-1.2.3") if e["detail"].get("channel") == "webhook"]
    assert not event["ok"] and "HTTP 503" in event["error"]
    assert SECRET_PATH not in caplog.text and SECRET_PATH not in json.dumps(event)


def test_the_budget_bounds_the_time_spent_on_a_dead_receiver(monkeypatch):
    """No timing assertion: a fake clock counts the waits the budget allows."""
    now = {"t": 0.0}

    def sleep(seconds):
        now["t"] += seconds

    with pytest.raises(webhook.WebhookError, match="within the 3s budget"):
        webhook.send(b"{}", "http://127.0.0.1:9/hook", SECRET, budget=3, sleep=sleep, clock=lambda: now["t"])
    assert now["t"] < 3


def test_a_refusal_is_an_answer_not_retried(receiver):
    fake = receiver([(400, {})])
    assert send() is False
    assert len(fake.requests) == 1


def test_nothing_is_sent_without_the_secret_or_when_the_policy_does_not_ask(receiver, monkeypatch, tmp_path):
    fake = receiver()
    assert send(enabled=False) is False
    monkeypatch.delenv(webhook.ENV_SECRET)
    store = SqliteStore(tmp_path / "s.sqlite")
    assert send(store) is False
    assert fake.requests == []
    (event,) = [e["detail"] for e in store.events("web-1.2.3")]
    assert webhook.ENV_SECRET in event["error"]


def test_a_wait_is_not_news(receiver):
    fake = receiver()
    assert send(verdict=Verdict("r", "inconclusive", "waiting", 0, 60, False, [])) is False
    assert fake.requests == []


def test_the_schema_has_notify_webhook():
    schema = json.loads(json_schema())
    assert "webhook" in schema["$defs"]["Notify"]["properties"]


def test_check_posts_the_verdict_and_exits_with_it_whatever_the_receiver_does(receiver, tmp_path):
    fake = receiver([(500, {})])
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({**SIMULATE, "notify": {"webhook": True}}))
    result = run_gate("check", "rel", "--policy", path, "--deployed-at", "2024-05-06T12:00:00Z", "--examine-past",
                      "--store", tmp_path / "s.sqlite", "--json",
                      env={"GATE_LOG_LEVEL": "", "SLACK_WEBHOOK_URL": "", "GATE_STORE_TABLE": ""})
    assert result.returncode == 1, result.stdout + result.stderr  # db_connections fails, the receiver's 500s change nothing
    assert json.loads(result.stdout)["verdict"] == "fail"
    assert fake.requests and all(r["body"]["verdict"] == "fail" for r in fake.requests)


def send_in_thread(url: str) -> dict:
    """webhook.send in a thread joined with a generous bound: whether it returned, and what."""
    outcome: dict = {}

    def run():
        try:
            outcome["attempts"] = webhook.send(b'{"verdict":"fail"}', url, SECRET, budget=2)
        except webhook.WebhookError as e:
            outcome["error"] = str(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=60)
    outcome["returned"] = not thread.is_alive()
    return outcome


def test_a_receiver_trickling_its_headers_is_cut_off_within_the_budget():
    """A receiver sending header lines a byte at a time held `send` for ever (a timeout per read,
    not a deadline): in the Lambda a recorded verdict became a function timeout."""
    with FakeSlack(trickle="headers") as fake:
        outcome = send_in_thread(fake.url)
        assert outcome["returned"], "send is still waiting on a trickling receiver"
        assert "unreachable" in outcome["error"] and "within the 2s budget" in outcome["error"]
        assert len(fake.requests) == 1  # the budget left no room for a second attempt


def test_a_receiver_trickling_its_body_after_a_2xx_has_taken_the_verdict():
    """200 then a body a byte a second held `send` 40s: the status is the answer, the body is not
    waited for."""
    with FakeSlack(trickle="body") as fake:
        outcome = send_in_thread(fake.url)
        assert outcome["returned"], "send is still reading a trickling body"
        assert outcome.get("attempts") == 1 and len(fake.requests) == 1


@pytest.mark.parametrize("status", [301, 302, 303, 307])
def test_a_redirect_is_a_failed_delivery_not_followed(receiver, tmp_path, status):
    """urllib followed a 302/303 and replayed the POST as a bodiless GET to the Location (carrying
    the signature), and counted that as delivered: `ok: true`, never sent again."""
    fake = receiver([(status, {"Location": "/elsewhere"})])
    store = SqliteStore(tmp_path / "s.sqlite")
    assert send(store) is False
    assert [r["method"] for r in fake.requests] == ["POST"]  # not followed, not retried
    (event,) = [e["detail"] for e in store.events("web-1.2.3") if e["detail"].get("channel") == "webhook"]
    assert not event["ok"] and f"HTTP {status}" in event["error"]
