"""A verdict judged from a demo source (`simulate`, `replay`) says so wherever it is shown: the
`--json` field, the HTML report's banner, the Slack header, the JUnit suite. (The Lambda refuses
them: tests/test_lambda_handler.py.)"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET

from gate.verdict import Verdict, iso
from tests.conftest import run_gate
from tests.fake_slack import FakeSlack
from tests.test_cli_check import simulate_policy


def test_a_simulated_verdict_says_so_in_every_output(tmp_path):
    deployed = (int(time.time()) // 60 - 90) * 60  # the lifetime is over: the verdict is final
    policy = simulate_policy(tmp_path, "bad_version", deployed)
    with FakeSlack() as slack:
        result = run_gate("check", "web-7", "--policy", policy, "--deployed-at", iso(deployed), "--examine-past",
                          "--store", tmp_path / "gate.sqlite", "--json", "--junit", tmp_path / "junit.xml",
                          env={"SLACK_WEBHOOK_URL": slack.url}, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    verdict = json.loads(result.stdout)
    assert verdict["verdict"] == "fail" and verdict["demo"] == "simulate"
    html = (tmp_path / "reports" / "web-7.html").read_text()
    assert '<p class="demo">DEMO (simulate): judged on made-up or recorded data' in html
    [message] = slack.payloads
    header = next(b for b in message["blocks"] if b["type"] == "header")["text"]["text"]
    assert header == "DEMO (simulate) FAIL: release web-7" and message["text"].startswith("DEMO (simulate) FAIL")
    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert suite.get("name") == "web-7 DEMO (simulate)"
    assert {p.get("name"): p.get("value") for p in suite.iter("property")}["demo"] == "simulate"
    assert Verdict.from_dict(verdict).demo == "simulate"  # the store and `gate.junit` read it back


def test_a_live_verdict_carries_no_demo_mark():
    verdict = Verdict("web-7", "pass", "fine", 0, 60, True)
    assert "demo" not in verdict.to_dict() and verdict.demo_label is None
