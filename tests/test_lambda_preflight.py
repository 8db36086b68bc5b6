"""The Lambda's pre-flight actions: `plan` and `backtest` answer as the CLI does; a backtest too
long for one invocation is refused with a clear message, never half done."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gate.sources.replay import load_case
from gate.verdict import iso
from tests.lambda_module import FakeContext, import_handler

ROOT = Path(__file__).resolve().parents[1]


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


def test_a_backtest_that_cries_wolf_on_every_window_answers_exit_code_3(handler):
    """Issue 22: 3 of 3 false alarms answered exit_code 0. examples/simulate.yaml: the canary runs
    its faulty version (db_connections) over all its history (the simulated service is this test's
    data: production refuses it)."""
    import yaml

    handler.DEMO_SOURCES = handler.DEMO_SOURCES - {"simulate"}
    policy = yaml.safe_load((ROOT / "examples" / "simulate.yaml").read_text())
    result = handler.lambda_handler({"action": "backtest", "policy": policy, "days": 3, "windows": 3,
                                     "until": "2024-05-10T00:00:00Z"}, FakeContext())
    assert result["overall"]["false_alarms"]["count"] == 3 == result["overall"]["false_alarms"]["of"], result
    assert result["exit_code"] == 3


def test_a_backtest_whose_clean_windows_on_undecided_rolls_back_answers_exit_code_3(handler):
    """Review: every A/A window ended "could not tell", which on_undecided: fail rolls back, and the
    Lambda answered exit_code 0 (no false alarm)."""
    from tests.test_backtest import UNTIL, undecided_errors_policy

    handler.DEMO_SOURCES = handler.DEMO_SOURCES - {"simulate"}
    result = handler.lambda_handler({"action": "backtest", "policy": undecided_errors_policy(), "days": 3,
                                     "windows": 2, "recommend": False, "until": UNTIL}, FakeContext())
    assert result["overall"]["false_alarms"]["count"] == 0 and result["overall"]["rolled_back"]["count"] == 2, result
    assert result["exit_code"] == 3 and "on_undecided: fail rolls back" in result["exit_reasons"][0]


def test_a_plan_the_policy_s_history_cannot_serve_is_a_400_not_a_retryable_503(handler, corpus):
    """Issue 22: a policy history shorter than a day and the lifetime answered 503 "could not judge"
    (asked again, in vain)."""
    case, policy = case_policy(corpus, "k1m-aa-000")
    policy["history"] = "1d"
    result = handler.lambda_handler({"action": "plan", "release": "web-2", "policy": policy,
                                     "at": iso(case.deployed_at)}, FakeContext())
    assert (result["statusCode"], result["exit_code"]) == (400, 4), result
    assert result["error"].startswith("history: 1d is too short to plan")


@pytest.mark.parametrize(("action", "fields", "message"), [
    ("backtest", {"days": 0.05}, "days: "),
    ("backtest", {"until": "1970-01-02T00:00:00Z"},
     "until: 1970-01-02T00:00:00Z leaves no 7 days of history after 1970-01-01: give a moment from "
     "1970-01-08T00:00:00Z on, or fewer days"),
])
def test_a_backtest_span_out_of_range_names_the_event_s_field_not_the_cli_option(handler, corpus, action, fields,
                                                                                  message):
    """Review: the Lambda's refusals named the CLI's options (`--days`, `--until`), which its caller
    never wrote."""
    _, policy = case_policy(corpus, "k1m-aa-000")
    result = handler.lambda_handler({"action": action, "policy": policy, **fields}, FakeContext())
    assert (result["statusCode"], result["exit_code"]) == (400, 4), result
    assert result["error"].startswith(message) and "--" not in result["error"], result["error"]
    assert "leaves no" in result["error"]


@pytest.mark.parametrize("moment", ["2100-01-01T00:00:00Z", "2001-01-01T00:00:00Z"])
@pytest.mark.parametrize(("action", "field"), [("plan", "at"), ("backtest", "until")])
def test_a_moment_with_no_history_is_a_400_naming_the_field_not_a_retryable_503(handler, corpus, action, field,
                                                                                 moment):
    """Review: a plan `at` or a backtest `until` ahead of the clock or long before the source's
    history answered 503 "no history" (asked again, in vain): the request cannot be answered."""
    _, policy = case_policy(corpus, "k1m-aa-000")
    event = {"action": action, "policy": policy, field: moment, **({"release": "web-2"} if action == "plan" else {})}
    result = handler.lambda_handler(event, FakeContext())
    assert (result["statusCode"], result["exit_code"]) == (400, 4), result
    assert result["error"].startswith(f"{field}: "), result["error"]
    assert ("in the future" if moment.startswith("2100") else "no history") in result["error"]


def test_no_history_up_to_now_stays_could_not_judge(handler, corpus):
    """Without `at` the source may only be late: 503, asked again (the recorded case holds no
    history now)."""
    _, policy = case_policy(corpus, "k1m-aa-000")
    result = handler.lambda_handler({"action": "plan", "release": "web-2", "policy": policy}, FakeContext())
    assert (result["statusCode"], result["exit_code"]) == (503, 4), result
    assert result["error"].startswith("could not judge: no history"), result["error"]


@pytest.mark.parametrize(("action", "fields", "field"), [
    ("backtest", {"windows": True}, "windows: Input should be a valid integer"),
    ("backtest", {"days": "7"}, "days: Input should be a valid number"),
    ("backtest", {"days": True}, "days: Input should be a valid number"),
    ("plan", {"release": "web-2", "canary_share": True}, "canary_share: Input should be a valid number"),
    ("backtest", {"canary_share": True}, "canary_share: Input should be a valid number"),
    ("backtest", {"canary_share": 0}, "canary_share: Input should be greater than 0"),
])
def test_a_bool_or_a_string_for_a_number_is_a_400_naming_the_field(handler, corpus, action, fields, field):
    """Review: pydantic's lax mode read `"windows": true` as one window and `"days": "7"` as 7: a
    caller's mistake answered as if it were meant (a backtest of one window says nothing)."""
    _, policy = case_policy(corpus, "k1m-aa-000")
    result = handler.lambda_handler({"action": action, "policy": policy, **fields}, FakeContext())
    assert (result["statusCode"], result["exit_code"]) == (400, 4), result
    assert field in result["error"], result["error"]
