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


def test_a_regression_caught_only_at_the_last_look_is_at_the_end_a_risk_not_ok(tmp_path):
    # At a 5% share the simulated service's errors at 2x their tolerance fail at the last look.
    result = run_gate("plan", "rel-1", "--policy", policy(tmp_path, CPU + ERRORS), "--at", AT,
                      "--canary-share", "0.05", "--json")
    assert result.returncode == 3, result.stdout + result.stderr
    plan = json.loads(result.stdout)
    errors = next(m for m in plan["metrics"] if m["name"] == "errors")
    assert errors["seconds_to_fail_2x"] == plan["lifetime"]  # the premise: caught at the last look
    assert errors["answer"] == "at the end" and plan["verdict"] == "at the end"
    assert "errors" in plan["reason"] and "end" in plan["reason"]
    assert errors["lifetime_needed"] > plan["lifetime"]  # what catches it before the end
    assert next(m for m in plan["metrics"] if m["name"] == "cpu")["answer"] == "ok"


def test_plan_and_backtest_share_one_rule_a_clean_canary_left_undecided_is_too_short():
    from gate.plan import answer

    hour = 3600
    assert answer(0.1, hour, 1800, 600) == "ok"
    assert answer(0.1, hour, 1800, hour) == "at the end"
    assert answer(0.1, hour, 1800, None) == "too short"  # the regression not caught
    assert answer(0.1, hour, None, 600) == "too short"  # a clean canary could not be told from it
    # No tolerance (history-only): judged only on a departure from its history, never `ok`: the
    # plan answered ok for it until issue 23's review, whatever the judge would miss.
    assert answer(None, hour, 1800, 600) == answer(0.0, hour, 1800, 600) == "no tolerance"


def test_a_history_only_metric_without_a_tolerance_is_a_risk_the_plan_names(tmp_path):
    data = yaml.safe_load(policy(tmp_path, CPU + [{"name": "memory", "kind": "gauge", "tolerance": None}]).read_text())
    del data["baseline"]
    path = tmp_path / "history-only.yaml"
    path.write_text(yaml.safe_dump(data))
    result = run_gate("plan", "rel-1", "--policy", path, "--at", AT, "--json")
    assert result.returncode == 3, result.stdout + result.stderr
    plan = json.loads(result.stdout)
    assert plan["mode"] == "history-only" and plan["verdict"] == "no tolerance", plan["reason"]
    answers = {m["name"]: m["answer"] for m in plan["metrics"]}
    assert answers["memory"] == "no tolerance" and answers["cpu"] != "no tolerance"
    assert "memory has no tolerance" in plan["reason"]


def test_at_a_one_percent_share_the_plan_fits_80_columns_with_every_name_and_answer(tmp_path):
    metrics = [{"name": n, "kind": "gauge", "tolerance": 0.1} for n in ("cpu", "memory", "latency")] + ERRORS
    result = run_gate("plan", "rel-1", "--policy", policy(tmp_path, metrics), "--at", AT,
                      "--canary-share", "0.01", env={"COLUMNS": "80"})
    assert result.returncode == 3, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    assert "…" not in result.stdout
    rows = {line.split()[0]: line for line in lines if line.split() and line.split()[0] in
            ("cpu", "memory", "latency", "errors")}
    assert set(rows) == {"cpu", "memory", "latency", "errors"}
    assert rows["errors"].rstrip().endswith("too short") and rows["cpu"].rstrip().endswith("ok")


def test_in_a_log_the_plan_prints_progress_lines_on_stderr(tmp_path):
    # run_gate's stderr is a pipe, not a terminal: a CI log.
    result = run_gate("plan", "rel-1", "--policy", policy(tmp_path, CPU + ERRORS, lifetime="30m"), "--at", AT,
                      "--canary-share", "0.01")
    progress = [line for line in result.stderr.splitlines() if line.startswith("plan: ")]
    assert any("canary as good as the baseline" in line for line in progress)
    assert any("errors" in line and "share" in line for line in progress)


def test_a_deploy_moment_in_the_future_is_refused_naming_the_option(tmp_path):
    """Review: the CLI planned a deploy in 2031 (exit 0) where the Lambda refused the same moment
    naming its field; both now name theirs."""
    one_error_line(run_gate("plan", "rel-1", "--policy", policy(tmp_path, CPU), "--at", "2031-01-01T00:00:00Z"),
                   "--at", "in the future")
