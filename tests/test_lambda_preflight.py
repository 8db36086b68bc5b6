"""The Lambda's pre-flight actions: `plan` and `backtest` answer as the CLI does; a backtest too
long for one invocation is refused with a clear message, never half done."""

from __future__ import annotations

import sys

import pytest

from gate.sources.replay import load_case
from gate.verdict import iso
from tests.lambda_module import FakeContext, import_handler


@pytest.fixture
def handler(monkeypatch, tmp_path):
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("GATE_STORE", str(tmp_path / "gate.sqlite"))
    for key in ("GATE_STORE_TABLE", "GATE_IDEMPOTENCY_TABLE", "GATE_SECRET_ID"):
        monkeypatch.delenv(key, raising=False)
    module = import_handler("gate_lambda_preflight", replays=True)
    yield module
    sys.modules.pop("gate_lambda_preflight", None)


def case_policy(corpus, name, only=("cpu",)):
    case = load_case(corpus / name)
    policy = case.policy().model_dump(mode="json", exclude_none=True)
    policy["metrics"] = [m for m in policy["metrics"] if m["name"] in only]
    policy["history"] = "5d"
    return case, policy


def test_plan_answers_as_the_cli(handler, corpus):
    case, policy = case_policy(corpus, "k1m-aa-000")
    result = handler.lambda_handler({"action": "plan", "release": "web-2", "policy": policy,
                                     "at": iso(case.deployed_at)}, FakeContext())
    assert result["verdict"] in ("ok", "at the end", "too short") and result["exit_code"] == (0 if result["verdict"] == "ok" else 3)
    assert [m["name"] for m in result["metrics"]] == ["cpu"] and result["canary_share"] == 0.05


def test_a_backtest_too_long_for_the_lambda_is_refused_with_a_clear_message(handler, corpus):
    _, policy = case_policy(corpus, "k1m-aa-000", only=("cpu", "latency"))
    result = handler.lambda_handler({"action": "backtest", "policy": policy, "windows": 500, "recommend": True},
                                    FakeContext())
    assert result["statusCode"] == 400 and result["exit_code"] == 4 and result["verdict"] == "error"
    assert "outlive the Lambda" in result["error"] and "gate backtest" in result["error"]


def test_an_unknown_action_is_a_bad_request(handler):
    result = handler.lambda_handler({"action": "promote-everything", "release": "r"}, FakeContext())
    assert result["statusCode"] == 400 and "action" in result["error"]
