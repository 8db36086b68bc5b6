"""`gate plan`: the judge's own model, run on the expected canary, says how long a canary needs."""

import json

import yaml

from tests.conftest import run_gate
from tests.test_backtest import one_error_line, recorded_case

AT = "2024-05-10T12:00:00Z"  # a weekday noon of the simulated service


def policy(tmp_path, metrics, **changes):
    data = {"name": "sim-plan", "source": {"type": "simulate", "options": {"scenario": "healthy", "seed": 3}},
            "canary": {"scope": "canary"}, "baseline": {"scope": "baseline"},
            "interval": "1m", "lifetime": "1h", "history": "3d", "metrics": metrics, **changes}
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


ERRORS = [{"name": "errors", "kind": "count", "denominator": "requests", "tolerance": 0.5},
          {"name": "requests", "kind": "count", "bad_direction": "none"}]
CPU = [{"name": "cpu", "kind": "gauge", "tolerance": 0.1}]


def test_at_a_one_percent_share_errors_cannot_be_judged_and_the_plan_says_what_would_do(tmp_path):
    result = run_gate("plan", "rel-1", "--policy", policy(tmp_path, CPU + ERRORS, lifetime="30m"), "--at", AT,
                      "--canary-share", "0.01", "--json")
    assert result.returncode == 3, result.stdout + result.stderr
    plan = json.loads(result.stdout)
    assert plan["verdict"] == "too short" and "errors cannot be judged" in plan["reason"]
    errors = next(m for m in plan["metrics"] if m["name"] == "errors")
    assert errors["seconds_to_fail_2x"] is None
    assert errors["share_needed"] > 0.01 and errors["lifetime_needed"] > 1800
    cpu = next(m for m in plan["metrics"] if m["name"] == "cpu")
    # Moments of the planned canary (simulated seconds since its deploy), not durations measured
    # on this machine: CPU is decided within the 30m lifetime at any share.
    assert 0 < cpu["seconds_to_fail_2x"] < 1800 and cpu["seconds_to_pass"] <= 1800


def test_a_plan_that_fits_is_ok_and_shown_as_a_table(tmp_path):
    result = run_gate("plan", "rel-1", "--policy", policy(tmp_path, CPU), "--at", AT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok:") and "cpu" in result.stdout


def test_a_zero_share_is_a_clear_error(tmp_path):
    one_error_line(run_gate("plan", "rel-1", "--policy", policy(tmp_path, CPU), "--at", AT, "--canary-share", "0"),
                   "--canary-share")


def test_no_history_is_a_clear_error(tmp_path):
    deployed = 1715256000  # 2024-05-09T12:00:00Z: only the canary window was recorded
    case = recorded_case(tmp_path / "case", [(deployed + 60 * i, "canary", 40.0) for i in range(60)])
    data = {"name": "no-history", "source": {"type": "replay", "options": {"case": str(case)}},
            "canary": {"scope": "canary"}, "interval": "1m", "lifetime": "1h", "history": "2d",
            "metrics": [{"name": "cpu", "kind": "gauge", "tolerance": 0.1}]}
    path = tmp_path / "replay.yaml"
    path.write_text(yaml.safe_dump(data))
    one_error_line(run_gate("plan", "rel-1", "--policy", path, "--at", "2024-05-09T12:00:00Z"), "no history")


def test_a_gap_over_the_last_day_is_no_history_not_a_canary_caught_at_once(tmp_path):
    # Three days of history that stop a day before the deploy: the plan's canary window (the same
    # hours of the last day) would be empty, and an empty canary "fails" at once as not reporting.
    deployed = 1715256000  # 2024-05-09T12:00:00Z
    rows = [(t, "canary", 40.0 + (t // 60) % 7) for t in range(deployed - 4 * 86400, deployed - 86400 - 3600, 60)]
    case = recorded_case(tmp_path / "case", rows)
    data = {"name": "gap", "source": {"type": "replay", "options": {"case": str(case)}},
            "canary": {"scope": "canary"}, "interval": "1m", "lifetime": "1h", "history": "4d",
            "metrics": [{"name": "cpu", "kind": "gauge", "tolerance": 0.1}]}
    path = tmp_path / "replay.yaml"
    path.write_text(yaml.safe_dump(data))
    one_error_line(run_gate("plan", "rel-1", "--policy", path, "--at", "2024-05-09T12:00:00Z"),
                   "no history", "last day")


def test_a_policy_without_tolerances_is_a_clear_error(tmp_path):
    one_error_line(run_gate("plan", "rel-1", "--policy", policy(tmp_path, [{**CPU[0], "tolerance": None}]), "--at", AT),
                   "tolerance")
