"""`gate demo` through the real console script, as the README runs it."""

import json
import re
import shlex
import sqlite3
import tomllib
from pathlib import Path

import pytest

from gate.sources.simulate import SCENARIOS
from gate.store import SqliteStore
from tests.conftest import ROOT, run_gate


def test_the_readme_demo_shows_a_failure_with_its_reasons_and_its_report_from_any_folder(tmp_path):
    result = run_gate("demo", cwd=tmp_path, env={"GATE_STORE": ""})  # exactly the README's command
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL" in result.stdout
    assert "db_connections" in result.stderr  # the progress names the scenario
    assert "latency" in result.stdout and "tolerance" in result.stdout  # the reasons, with numbers
    assert "Traceback" not in result.stderr
    # Every evaluation went to the default store, under the folder it ran in.
    database = tmp_path / ".gate" / "gate.sqlite"
    with sqlite3.connect(database) as db:
        (release,) = db.execute("SELECT release FROM releases").fetchone()
        verdicts = [v for (v,) in db.execute("SELECT verdict FROM evaluations WHERE release = ?", (release,))]
    assert release.startswith("demo-db_connections-")
    assert verdicts[-1] == "fail" and len(verdicts) >= 2
    assert set(verdicts[:-1]) <= {"inconclusive"}
    assert f"{len(verdicts)} evaluations recorded" in " ".join(result.stdout.split())
    # The report is written as `gate check` writes it, the demo says where, and `gate report` rebuilds it.
    (report,) = [line.removeprefix("report: ") for line in result.stdout.splitlines() if line.startswith("report: ")]
    assert Path(report).name == f"{release}.html" and "FAIL" in Path(report).read_text()
    again = run_gate("report", release, "--out", tmp_path / "again.html", cwd=tmp_path, env={"GATE_STORE": ""})
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "again.html").read_text().count('class="chart"') == Path(report).read_text().count('class="chart"')


def test_a_healthy_release_passes_and_its_json_matches_the_store(tmp_path):
    store = tmp_path / "demo.sqlite"
    result = run_gate("demo", "healthy", "--pace", "0", "--json", "--store", store)
    assert result.returncode == 0, result.stdout + result.stderr
    verdict = json.loads(result.stdout)
    assert verdict["verdict"] == "pass" and verdict["scenario"] == "healthy" and verdict["seed"] == 7
    assert all(m["verdict"] == "pass" for m in verdict["metrics"])
    assert result.stderr == ""  # no progress display in JSON mode
    records = SqliteStore(store).evaluations(verdict["release"])
    assert len(records) == verdict["evaluations"]
    assert records[-1]["payload"] == {k: verdict[k] for k in records[-1]["payload"]}
    events = SqliteStore(store).events(verdict["release"])
    assert [e["kind"] for e in events] == ["demo", "verdict", "report-data", "report"]  # its report, as check writes it
    assert events[1]["detail"] == {"verdict": "pass", "evaluations": verdict["evaluations"]}


def test_the_same_seed_gives_the_same_release_whenever_it_runs(tmp_path, monkeypatch, capsys):
    """The simulated clock is the seed's, not the wall clock's: an hour apart, the same numbers."""
    import gate.demo

    outcomes = []
    for wall_clock in (1_790_000_000, 1_790_003_600):
        monkeypatch.setattr(gate.demo.time, "time", lambda: wall_clock)
        gate.demo.run_demo("bad_version", seed=5, pace=0, as_json=True, store=tmp_path / f"{wall_clock}.sqlite")
        verdict = json.loads(capsys.readouterr().out)
        outcomes.append({k: v for k, v in verdict.items() if k not in ("release", "store", "report")})
    assert outcomes[0] == outcomes[1]


# One fault through the CLI is enough here: test_simulate judges every scenario in-process.
@pytest.mark.parametrize("scenario", ["payment_failures"])
def test_each_fault_fails_with_its_culprit(tmp_path, scenario):
    result = run_gate("demo", scenario, "--seed", "1", "--pace", "0", "--json", "--store", tmp_path / "s.sqlite")
    assert result.returncode == 1, result.stdout + result.stderr
    verdict = json.loads(result.stdout)
    assert verdict["verdict"] == "fail" and verdict["seed"] == 1
    failed = {m["name"] for m in verdict["metrics"] if m["verdict"] == "fail"}
    culprits = {"payment_failures": {"errors"}, "bad_version": {"latency", "cpu"},
                "gateway_killed": {"cpu", "memory", "latency", "errors"}}[scenario]
    assert failed and failed <= culprits
    assert verdict["evaluations"] < 60


def test_an_unknown_scenario_is_one_line_and_exit_4(tmp_path):
    result = run_gate("demo", "meteor_strike", "--store", tmp_path / "s.sqlite")
    assert result.returncode == 4
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "'meteor_strike'" in lines[0] and all(s in lines[0] for s in SCENARIOS)
    assert not (tmp_path / "s.sqlite").exists() or SqliteStore(tmp_path / "s.sqlite").evaluations("x") == []


def readme_first_command() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme.split("```bash\n", 1)[1].split("```", 1)[0].strip()


# The dev extra's packages, by the name they are imported as (the test tooling, ~800 MB).
DEV_IMPORTS = {"aws-lambda-powertools": "aws_lambda_powertools", "aws-sam-translator": "samtranslator",
               "cfn-lint": "cfnlint", "pytest": "pytest", "hypothesis": "hypothesis", "moto": "moto"}


def test_the_readme_first_command_installs_the_gate_alone_and_the_demo_runs_without_the_test_tooling(tmp_path):
    command = readme_first_command()
    assert "pip install -q -e . " in command and "[dev]" not in command, command
    assert command.endswith("gate demo"), command
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    assert {re.split(r"[\[<>=]", d)[0] for d in extra} == set(DEV_IMPORTS)  # the list below is the whole extra
    # The demo in an interpreter where the dev extra is not installed: importing it fails.
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import sys\n"
        f"HIDDEN = {sorted(DEV_IMPORTS.values())!r}\n"
        "class Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in HIDDEN:\n"
        "            raise ImportError(f'{name} is not installed (test tooling)')\n"
        "sys.meta_path.insert(0, Hide())\n")
    result = run_gate("demo", "--pace", "0", "--store", tmp_path / "s.sqlite", env={"PYTHONPATH": str(hide)})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL" in result.stdout and "Traceback" not in result.stderr


def test_the_default_demo_says_its_fail_is_on_purpose_and_how_to_see_a_pass(tmp_path):
    result = run_gate("demo", "--pace", "0", cwd=tmp_path, env={"GATE_STORE": "", "COLUMNS": "80"})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "it should fail" in " ".join(result.stderr.split())  # said before the first look
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert "this fail is the gate working" in " ".join(result.stdout.split())
    assert "gate demo healthy" in lines  # the way to a pass, a command on a line of its own


def test_the_demo_history_hint_is_a_whole_command_at_80_columns(tmp_path):
    """CI logs are 80 columns: the command to see the evaluations is one line a person can paste."""
    store = tmp_path / "a folder" / "s.sqlite"
    result = run_gate("demo", "--pace", "0", "--store", store, env={"COLUMNS": "80"})
    with sqlite3.connect(store) as db:
        (release,) = db.execute("SELECT release FROM releases").fetchone()
    (hint,) = [line.strip() for line in result.stdout.splitlines() if "gate history" in line]
    assert shlex.split(hint) == ["gate", "history", release, "--store", str(store)], result.stdout
