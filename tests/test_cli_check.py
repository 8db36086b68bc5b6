"""`gate check` through the real console script: exit codes, JSON, the store, fail-closed errors."""

import json
import time

import yaml

from gate.verdict import iso
from tests.conftest import ROOT, run_gate

SIMULATE = yaml.safe_load((ROOT / "examples" / "simulate.yaml").read_text())
REPLAY = yaml.safe_load((ROOT / "examples" / "replay.yaml").read_text())


def write_policy(tmp_path, data, name="policy.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def simulate_policy(tmp_path, scenario, deployed_at):
    data = {**SIMULATE, "source": {"type": "simulate",
                                   "options": {"scenario": scenario, "seed": 3, "deployed_at": deployed_at}}}
    return write_policy(tmp_path, data, f"{scenario}.yaml")


def one_error_line(result, *words):
    assert result.returncode == 4, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    for word in words:
        assert word in lines[0]
    assert result.stdout == ""


def test_check_on_a_simulated_release_passes_a_healthy_canary_and_fails_a_slow_one(tmp_path):
    # Deployed 90 minutes ago: the 1 h lifetime is over, so this check is the final one.
    deployed = (int(time.time()) // 60 - 90) * 60
    store = tmp_path / "gate.sqlite"
    for scenario, code, outcome in [("healthy", 0, "pass"), ("bad_version", 1, "fail")]:
        policy = simulate_policy(tmp_path, scenario, deployed)
        result = run_gate("check", f"rel-{scenario}", "--policy", policy, "--deployed-at", iso(deployed),
                          "--store", store, "--json")
        assert result.returncode == code, result.stdout + result.stderr
        verdict = json.loads(result.stdout)
        assert verdict["verdict"] == outcome and verdict["release"] == f"rel-{scenario}"
        assert verdict["deployed_at"] == iso(deployed) and verdict["final"]
        assert {m["name"] for m in verdict["metrics"]} == {"cpu", "memory", "latency", "errors"}
        if outcome == "fail":
            latency = next(m for m in verdict["metrics"] if m["name"] == "latency")
            assert latency["verdict"] == "fail" and latency["reason"]

    shown = run_gate("history", "rel-bad_version", "--store", store, "--json")
    assert shown.returncode == 0
    records = json.loads(shown.stdout)
    assert [r["verdict"] for r in records] == ["fail"]
    assert records[0]["payload"]["release"] == "rel-bad_version"


def test_check_on_a_replayed_case(corpus, tmp_path):
    case = json.loads((corpus / "k1m-canary-down-012" / "case.json").read_text())
    policy = write_policy(tmp_path, {**REPLAY, "source": {"type": "replay",
                                                          "options": {"case": str(corpus / "k1m-canary-down-012")}}})
    result = run_gate("check", "rel", "--policy", policy, "--deployed-at", case["deploy_at"],
                      "--store", tmp_path / "gate.sqlite")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL" in result.stdout


def test_the_first_check_of_a_release_is_its_deploy_time(tmp_path):
    # Without --deployed-at the canary starts now: no data yet, so nothing can be decided yet.
    policy = simulate_policy(tmp_path, "healthy", None)
    result = run_gate("check", "fresh", "--policy", policy, "--store", tmp_path / "gate.sqlite", "--json")
    assert result.returncode == 3, result.stdout + result.stderr
    assert json.loads(result.stdout)["verdict"] == "inconclusive"


def test_a_malformed_policy_is_one_line_and_exit_4(tmp_path):
    bad = write_policy(tmp_path, {**SIMULATE, "interval": "soon"})
    one_error_line(run_gate("check", "rel", "--policy", bad), "interval", "soon")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: web\nmetrics: [\n")
    one_error_line(run_gate("check", "rel", "--policy", broken), "broken.yaml", "line")
    one_error_line(run_gate("check", "rel", "--policy", tmp_path / "missing.yaml"), "policy file not found")


def test_an_unknown_scenario_is_one_line_and_exit_4(tmp_path):
    policy = simulate_policy(tmp_path, "meteor_strike", None)
    one_error_line(run_gate("check", "rel", "--policy", policy, "--store", tmp_path / "gate.sqlite"),
                   "meteor_strike", "healthy", "gateway_killed")


def test_a_missing_case_folder_is_one_line_and_exit_4(tmp_path):
    policy = write_policy(tmp_path, {**REPLAY, "source": {"type": "replay", "options": {"case": str(tmp_path / "gone")}}})
    one_error_line(run_gate("check", "rel", "--policy", policy, "--store", tmp_path / "gate.sqlite"),
                   "case folder not found")
