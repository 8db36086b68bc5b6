"""Keys and webhook URLs never appear anywhere the gate writes: stdout, stderr, logs, JSON, the
store (a full SQLite dump), reports, Slack messages, exception messages. Every channel is
captured, with a failing Datadog (bad keys, a 500) and a failing Slack, and searched."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

import pytest

from gate.analysis import Analysis
from gate.errors import GateError
from gate.policy import load_policy
from gate.sources.datadog import from_policy
from gate.store import SqliteStore
from tests.conftest import run_gate
from tests.fake_datadog import API_KEY, APP_KEY
from tests.fake_slack import SECRET_PATH, FakeSlack
from tests.test_reliability_faults import AA, DOWN, RELEASE, datadog_env, datadog_policy, live

WEBHOOK_TOKEN = SECRET_PATH.rsplit("/", 1)[-1]


def everything_written(tmp_path: Path) -> str:
    """Every file under tmp_path (reports, JUnit, policies aside) and a dump of every SQLite store."""
    parts = []
    for path in tmp_path.rglob("*"):
        if not path.is_file() or path.suffix == ".yaml":
            continue
        if path.suffix == ".sqlite":
            with sqlite3.connect(path) as db:
                parts.extend(db.iterdump())
        parts.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(parts)


def assert_clean(secrets, *channels: str) -> None:
    for secret in secrets:
        assert secret, "an empty secret proves nothing"
        for text in channels:
            assert secret not in text, f"{secret!r} leaked"


@pytest.mark.parametrize("scenario", ["decided, Slack answering 500", "bad keys", "Datadog 500"])
def test_no_secret_in_any_output_of_gate_check(corpus, tmp_path, scenario):
    wrong_key = "wrong-app-key-6a1f0c93e2d7"
    with live(corpus, DOWN) as fake, FakeSlack([(500 if scenario.startswith("decided") else 200, {})]) as slack:
        env = {"SLACK_WEBHOOK_URL": slack.url, "GATE_DEBUG": "", "BUILD_URL": "http://jenkins.local/job/7/"}
        secrets = [API_KEY, APP_KEY, slack.url, WEBHOOK_TOKEN]
        if scenario == "bad keys":
            env["DD_APP_KEY"] = wrong_key
            secrets.append(wrong_key)
        if scenario == "Datadog 500":
            fake.fault = "500"
        result = run_gate("check", RELEASE, "--policy", datadog_policy(tmp_path, events=True), "--json",
                          "--deployed-at", str(fake.deployed_at), "--store", tmp_path / "gate.sqlite",
                          "--junit", tmp_path / "junit.xml", env=datadog_env(fake, **env), cwd=tmp_path,
                          timeout=120)
    if scenario.startswith("decided"):
        assert result.returncode == 1, result.stderr
        assert slack.requests, "the failing Slack was asked"  # the message itself is searched too
        assert list(tmp_path.rglob("*.html")), "a report was written"
    else:
        assert result.returncode == 4, result.stderr
        [(verdict, reason)] = sqlite3.connect(tmp_path / "gate.sqlite").execute(
            "SELECT verdict, reason FROM evaluations").fetchall()
        assert verdict == "error", reason  # the could-not-judge record is in the dump searched below
    if scenario == "Datadog 500":
        assert "server error 500" in result.stderr and "retrying in" in result.stderr, result.stderr
        assert len(fake.timeseries_requests()) >= 2 and all(
            r.get("status") == 500 for r in fake.timeseries_requests())
    messages = [str(p) for p in slack.payloads] + [str(e) for e in fake.events]
    assert_clean(secrets, result.stdout, result.stderr, everything_written(tmp_path), *messages)


def test_no_secret_in_exceptions_or_logs_in_process(corpus, tmp_path, caplog, monkeypatch):
    """The Python API: exception messages and every log record, with bad keys, a dead Datadog and
    a dead Slack."""
    from gate.notify import slack as slack_notify

    caplog.set_level(logging.DEBUG)
    wrong = "wrong-api-key-0b9e4417cafe"
    with live(corpus, AA, ahead=0) as fake, FakeSlack([(500, {})]) as slack:
        policy = load_policy(datadog_policy(tmp_path))
        errors = []
        for key, fault in ((wrong, None), (API_KEY, "500")):
            monkeypatch.setenv("GATE_DATADOG_URL", fake.url)
            monkeypatch.setenv("DD_API_KEY", key)
            monkeypatch.setenv("DD_APP_KEY", APP_KEY)
            fake.fault = fault
            store = SqliteStore(tmp_path / "gate.sqlite")
            analysis = Analysis(policy, from_policy(policy), RELEASE, fake.deployed_at, store=store)
            with pytest.raises(GateError) as caught:
                analysis.evaluate(int(time.time()))
            errors.append(caught.value)
        fake.fault = None
        verdict = analysis.evaluate(int(time.time()))
        slack_notify.notify(verdict, store=store, policy="web", canary="c", baseline="b", url=slack.url)
        dead = f"http://127.0.0.1:9/services/T1/B1/{WEBHOOK_TOKEN}"
        slack_notify.notify(verdict, store=store, policy="web", canary="c", baseline="b", url=dead)
    texts = [str(e) for e in errors] + [repr(e) for e in errors]
    texts += [r.getMessage() for r in caplog.records] + [str(r.__dict__) for r in caplog.records]
    assert any("slack" in r.getMessage().lower() for r in caplog.records), "the Slack failure was logged"
    assert_clean([API_KEY, APP_KEY, wrong, slack.url, WEBHOOK_TOKEN], *texts, everything_written(tmp_path),
                 *(str(p) for p in slack.payloads))


def test_lambda_answers_and_logs_carry_no_secret(corpus, tmp_path, capfd):
    """The Lambda handler in-process: its answer and everything it printed (structured logs)."""
    import sys

    from tests.lambda_module import FakeContext, import_handler

    saved = dict(os.environ)
    os.environ.update(POWERTOOLS_TRACE_DISABLED="true", GATE_STORE=str(tmp_path / "l.sqlite"))
    os.environ.pop("GATE_STORE_TABLE", None)
    os.environ.pop("GATE_IDEMPOTENCY_TABLE", None)
    try:
        try:
            module = import_handler("gate_lambda_handler_secrets")
        except Exception as e:  # noqa: BLE001
            pytest.skip(f"lambda/handler.py not importable: {e}")
        with live(corpus, DOWN) as fake, FakeSlack([(500, {})]) as slack:
            policy = load_policy(datadog_policy(tmp_path)).model_dump(mode="json")
            os.environ.update(GATE_DATADOG_URL=fake.url, DD_API_KEY=API_KEY, DD_APP_KEY=APP_KEY,
                              SLACK_WEBHOOK_URL=slack.url)
            answers = [module.lambda_handler({"release": RELEASE, "policy": policy, "deployed_at": fake.deployed_at},
                                             FakeContext())]
            os.environ["DD_APP_KEY"] = "wrong-app-key-c0ffee1234"
            answers.append(module.lambda_handler({"release": "web-2.0.2", "policy": policy,
                                                  "deployed_at": fake.deployed_at}, FakeContext()))
    finally:
        os.environ.clear()
        os.environ.update(saved)
        sys.modules.pop("gate_lambda_handler_secrets", None)
    assert answers[0]["verdict"] == "fail" and answers[1]["verdict"] == "error", answers
    out, err = capfd.readouterr()
    assert f'"release":"{RELEASE}"' in out.replace(" ", ""), "the handler's structured logs were captured"
    assert_clean([API_KEY, APP_KEY, "wrong-app-key-c0ffee1234", slack.url, WEBHOOK_TOKEN],
                 str(answers), out, err, everything_written(tmp_path), *(str(p) for p in slack.payloads))
