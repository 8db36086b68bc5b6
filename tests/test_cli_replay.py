import json

from tests.conftest import run_gate


def test_replay_prints_one_json_line_per_case_with_the_contract_fields(corpus):
    result = run_gate("replay", corpus / "k1m-aa-000", corpus / "kontrast-000", "--json")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["case"] for line in lines] == ["k1m-aa-000", "kontrast-000"]
    for line in lines:
        assert line["verdict"] in ("pass", "fail", "inconclusive")
        assert line["decided_at"].endswith("Z")
        assert line["evaluations"] >= 1
        assert all({"name", "verdict", "reason"} <= set(m) for m in line["metrics"])
    assert result.returncode == {"pass": 0, "fail": 1, "inconclusive": 3}[lines[-1]["verdict"]]


def test_replay_of_a_missing_case_is_one_clear_line_and_exit_4(tmp_path):
    result = run_gate("replay", tmp_path / "nope", "--json")
    assert result.returncode == 4
    assert "case folder not found" in result.stderr
    assert "Traceback" not in result.stderr
