"""The Jenkins step (jenkins/vars/canaryGate.groovy) and jenkins/Jenkinsfile, run by the real Groovy
interpreter with stubbed pipeline steps (jenkins/test/run_tests.groovy), once of them with the
real `gate check` behind `sh`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import ROOT

JENKINS = ROOT / "jenkins"
REAL_CASE = "k1m-cpu-shift-060"  # canary CPU x1.5: the gate must fail cpu, and only cpu
pytestmark = pytest.mark.slow("Groovy")


def groovy_env() -> dict:
    """Groovy needs JAVA_HOME: keep a valid one, else the JDK of the `java` on PATH."""
    if shutil.which("groovy") is None:
        pytest.fail("groovy is not installed: apt-get install groovy (listed in scripts/apt-packages.txt)")
    env = dict(os.environ)
    home = env.get("JAVA_HOME", "")
    if not (home and Path(home, "bin", "java").exists()):
        java = shutil.which("java")
        if java is None:
            pytest.fail("no java on PATH for groovy (apt-get install default-jre-headless)")
        env["JAVA_HOME"] = str(Path(java).resolve().parents[1])
    return env


def run_harness(jenkins_dir: Path, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**groovy_env(), "GATE_PYTHON": sys.executable, **(extra_env or {})}
    return subprocess.run(
        ["groovy", "-cp", str(JENKINS / "test"), str(JENKINS / "test" / "run_tests.groovy"), str(jenkins_dir)],
        capture_output=True, text=True, env=env, timeout=180,
    )


def outcomes(output: str) -> dict[str, str]:
    """Test name -> PASS or FAIL, from the harness' output."""
    return {m[2]: m[1] for m in re.finditer(r"^(PASS|FAIL) (.+)$", output, re.M)}


@pytest.fixture(scope="module")
def real_workspace(tmp_path_factory, corpus) -> Path:
    """A Jenkins workspace with a policy replaying a recorded canary, for the real `gate check`."""
    case = corpus / REAL_CASE
    workspace = tmp_path_factory.mktemp("jenkins-workspace")
    (workspace / "policy.yaml").write_text(
        "name: web\n"
        f"source: {{type: replay, options: {{case: '{case}'}}}}\n"
        "canary: {scope: canary}\n"
        "baseline: {scope: baseline}\n"
        "interval: 1m\n"
        "lifetime: 1h\n"
        "metrics:\n"
        "  - {name: cpu, kind: gauge, tolerance: 0.1}\n"
        "  - {name: memory, kind: gauge, tolerance: 0.1}\n"
        "  - {name: latency, kind: gauge, tolerance: 0.1}\n"
    )
    return workspace


@pytest.fixture(scope="module")
def harness(real_workspace, corpus) -> subprocess.CompletedProcess:
    deployed_at = json.loads((corpus / REAL_CASE / "case.json").read_text())["deploy_at"]
    return run_harness(JENKINS, {
        "GATE_BIN": str(Path(sys.executable).parent / "gate"),
        "GATE_REAL_POLICY": str(real_workspace / "policy.yaml"),
        "GATE_REAL_DEPLOYED_AT": deployed_at,  # the lifetime is over: one evaluation decides
        "GATE_REAL_WORKSPACE": str(real_workspace),
    })


def test_every_harness_test_passes(harness):
    summary = re.search(r"^(\d+) passed, (\d+) failed$", harness.stdout, re.M)
    assert summary, harness.stdout + harness.stderr
    assert harness.returncode == 0 and summary[2] == "0", harness.stdout + harness.stderr[-3000:]
    assert int(summary[1]) == len(outcomes(harness.stdout)) >= 30


def test_the_harness_covers_every_exit_code_a_missing_argument_and_the_override(harness):
    passed = {name for name, result in outcomes(harness.stdout).items() if result == "PASS"}
    for code in (0, 1, 3, 4, 137):
        assert any(n.startswith(f"step cli: gate check exit {code} ") for n in passed), code
    assert "Jenkinsfile: pass -> promote, build SUCCESS, summary" in passed
    for code in (1, 3, 4, 137):
        assert any(n.startswith(f"Jenkinsfile: gate exit {code} ") for n in passed), code
    assert "step: missing 'release' fails with a clear message, nothing runs" in passed
    assert any(n.startswith("Jenkinsfile: override offered and approved") for n in passed)
    assert any(n.startswith("Jenkinsfile: override offered, timeout") for n in passed)
    assert any(n.startswith("step lambda state machine") for n in passed)
    assert "step lambda state machine: start-execution with the bare event, poll describe-execution, " \
           "the answer is the verdict" in passed
    for what in ("aborted by hand while the gate waits", "the pipeline timeout firing while the gate waits",
                 "the pipeline timeout firing during the deploy"):
        assert f"Jenkinsfile: {what} -> roll back in post, build ABORTED" in passed
    assert any(n.startswith("step cli: hostile values") for n in passed)
    # Promote waits for the instance refresh under its own timeout, outside the canary's 4 h.
    assert any(n.startswith("Jenkinsfile: promote has its own timeout") for n in passed)
    assert any(n.startswith("Jenkinsfile: promote --wait failing") for n in passed)
    # Traffic steps: the cli step runs `gate rollout`, the function mode takes each step by an invocation.
    assert any(n.startswith("step lambda function rollout: a passed step is followed") for n in passed)
    assert any(n.startswith("Jenkinsfile: TRAFFIC_STEPS -> the gate steps the traffic") for n in passed)


def test_the_step_with_the_real_gate_publishes_one_test_case_per_metric(harness, real_workspace):
    assert outcomes(harness.stdout).get(
        "step cli with the real gate: the verdict, the JSON and the JUnit report agree") == "PASS", harness.stdout
    verdict = json.loads((real_workspace / "canary-gate" / "web-1.2.3.json").read_text())
    assert verdict["verdict"] == "fail" and verdict["final"] is True
    assert {m["name"]: m["verdict"] for m in verdict["metrics"]}["cpu"] == "fail"

    root = ET.parse(real_workspace / "canary-gate" / "web-1.2.3.xml").getroot()
    suite = root.find("testsuite")
    assert suite.get("name") == "web-1.2.3 DEMO (replay)"  # the policy replays a recorded case: said so
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert sorted(cases) == sorted(m["name"] for m in verdict["metrics"]) == ["cpu", "latency", "memory"]
    failed = sorted(name for name, c in cases.items() if c.find("failure") is not None)
    assert failed == sorted(m["name"] for m in verdict["metrics"] if m["verdict"] == "fail")
    failure = cases["cpu"].find("failure")
    cpu = next(m for m in verdict["metrics"] if m["name"] == "cpu")
    assert failure.get("message") == cpu["reason"]
    assert "tolerance: 10%" in failure.text and f"effect: {cpu['effect']:+.2%}" in failure.text
    assert suite.get("tests") == "3" and suite.get("failures") == str(len(failed))


def test_the_harness_catches_a_broken_step_and_a_broken_jenkinsfile(tmp_path):
    """The harness can fail: a step that maps exit 1 to pass, and a Jenkinsfile that promotes on
    anything but an error, are both caught."""
    broken = tmp_path / "jenkins"
    shutil.copytree(JENKINS, broken, ignore=shutil.ignore_patterns("test"))
    step = broken / "vars" / "canaryGate.groovy"
    original = "[0: 'pass', 1: 'fail', 3: 'inconclusive', 4: 'error']"
    assert original in step.read_text()
    step.write_text(step.read_text().replace(original, "[0: 'pass', 1: 'pass', 3: 'inconclusive', 4: 'error']"))
    jenkinsfile = broken / "Jenkinsfile"
    decision = "env.GATE_VERDICT == 'pass' ? 'promote' : 'rollback'"
    assert decision in jenkinsfile.read_text()
    jenkinsfile.write_text(jenkinsfile.read_text().replace(decision, "env.GATE_VERDICT != 'error' ? 'promote' : 'rollback'"))

    result = run_harness(broken, {"GATE_TESTS": "exit (1|3) "})
    assert result.returncode == 1
    got = outcomes(result.stdout)
    assert got["step cli: gate check exit 1 -> 'fail'"] == "FAIL"
    assert got["Jenkinsfile: gate exit 3 ('inconclusive') -> roll back, build FAILURE"] == "FAIL"
    assert re.search(r"^\d+ passed, [1-9]\d* failed$", result.stdout, re.M)


def test_the_lambda_step_never_judges_a_redeploy_made_between_its_polls(tmp_path):
    """Review (issue 22 for Jenkins): the step in function mode sent the same event at every poll,
    so another build's redeploy registered between two polls was judged by this build: deploy 1
    (12:00) undecided at 12:58, deploy 2 registered at 13:00, and this build then read deploy 2's
    looks, up to its pass at 13:30, instead of deploy 1's end. The real step (Groovy) and the real
    analyzer (a process per invocation on one store, its clock moved): pinned after its first
    answer, the step is refused once the release is redeployed, and never reads deploy 2."""
    import yaml

    from gate.release import parse_time

    policy = yaml.safe_load((ROOT / "examples" / "simulate.yaml").read_text())
    policy["source"]["options"] = {"scenario": "healthy", "seed": 7}  # deploy 2 passes by 13:30
    start = parse_time("2024-05-06T12:00:00Z")
    redeploy = {"deployed_at": "2024-05-06T13:00:00Z"}  # another build of the pipeline, same event
    plan = [{"at": start + 5}, {"at": start + 58 * 60 + 5}, {"at": start + 61 * 60 + 5, "others": [redeploy]},
            {"at": start + 90 * 60 + 5}]
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    log = tmp_path / "invocations.jsonl"
    result = run_harness(JENKINS, {
        "GATE_TESTS": "with the real analyzer", "GATE_FAKE_POLICY": json.dumps(policy),
        "GATE_FAKE_AWS": f"'{sys.executable}' '{ROOT / 'tests' / 'fake_aws_lambda.py'}'",
        "FAKE_LAMBDA_PLAN": str(tmp_path / "plan.json"), "FAKE_LAMBDA_LOG": str(log),
        "GATE_STORE": str(tmp_path / "gate.sqlite"), "TMPDIR": str(tmp_path), "POWERTOOLS_LOG_LEVEL": "ERROR",
        "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_NAMESPACE": "CanaryGateTest",
        **{key: "" for key in ("GATE_STORE_TABLE", "GATE_IDEMPOTENCY_TABLE", "GATE_SECRET_ID")},
    })
    invocations = [json.loads(line) for line in log.read_text().splitlines()]
    step = [i for i in invocations if i["by"] == "step"]
    seen = [(i["answer"].get("deploy"), i["answer"]["verdict"]) for i in step]
    assert outcomes(result.stdout) == {
        "step lambda function with the real analyzer: a redeploy between two polls is never judged by this "
        "build": "PASS"}, f"{seen}\n{result.stdout}{result.stderr[-2000:]}"
    other = [i for i in invocations if i["by"] == "other"]
    assert [i["answer"]["deploy"] for i in other] == [2]  # the redeploy was registered
    assert seen == [(1, "inconclusive"), (1, "inconclusive"), (None, "error")]
    assert [i["event"].get("deployed_at") for i in step] == [None, "2024-05-06T12:00:00Z", "2024-05-06T12:00:00Z"]
    assert step[-1]["answer"]["statusCode"] == 400  # final: asking again cannot make it this build's deploy


def test_the_readme_examples_name_what_the_stack_lets_the_analyzer_read():
    """The lambda-mode examples use a policy the analyzer's role may read (the stack's bucket,
    under policies/, or SSM under /canary-gate/) and the state machine the stack names."""
    readme = (JENKINS / "README.md").read_text()
    template = (ROOT / "infra" / "template.yaml").read_text()
    assert "Resource: !Sub ${ReportsBucket.Arn}/policies/*" in template
    references = re.findall(r"""policy: ["']((?:s3://|ssm:)[^"']+)["']""", readme)
    assert references
    for reference in references:
        assert re.fullmatch(r"s3://\$\{env\.GATE_BUCKET\}/policies/.+|ssm:/canary-gate/.+", reference), reference
    assert "Name: !Sub ${FunctionName}-loop" in template and "Default: canary-gate-analyzer" in template
    for arn in re.findall(r"stateMachine: '([^']+)'", readme):
        assert arn.endswith(":stateMachine:canary-gate-analyzer-loop"), arn


def test_the_step_and_the_jenkinsfile_pass_npm_groovy_lint():
    """CodeNarc through npm-groovy-lint@15 (the last version for Node 20), installed once into
    build/ from the npm registry, with the rules of jenkins/.groovylintrc.json: no warning."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is not installed (Node.js): npm-groovy-lint needs it")
    prefix = ROOT / "build" / "npm-groovy-lint"
    lint = prefix / "node_modules" / ".bin" / "npm-groovy-lint"
    if not lint.exists():
        prefix.mkdir(parents=True, exist_ok=True)
        install = subprocess.run([npm, "install", "--no-save", "--silent", "--prefix", str(prefix),
                                  "npm-groovy-lint@15"], capture_output=True, text=True, timeout=600)
        assert install.returncode == 0, install.stderr[-2000:]
    run = subprocess.run([str(lint), "--noserver", "--failon", "warning", "--config",
                          str(JENKINS / ".groovylintrc.json"), str(JENKINS / "vars" / "canaryGate.groovy"),
                          str(JENKINS / "Jenkinsfile")], capture_output=True, text=True, timeout=300,
                         cwd=ROOT, env=groovy_env())
    assert run.returncode == 0, re.sub(r"\x1b\[[0-9;]*m", "", run.stdout + run.stderr)[-3000:]
