"""gate/junit.py: a verdict as JUnit XML, and `gate check --junit` writing it from a real verdict."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

from gate import junit
from gate.verdict import MetricResult, Verdict, iso, parse_time
from tests.conftest import run_gate

T0 = 1_714_557_600  # 2024-05-01T10:00:00Z


def metric(name: str, outcome: str, **kw) -> MetricResult:
    defaults = dict(reason=f"{name} is {outcome}", rule=f"rule-{outcome}", canary=110.0, baseline=100.0,
                    effect=0.1, interval=(0.05, 0.15), tolerance=0.1)
    return MetricResult(name=name, verdict=outcome, **{**defaults, **kw})


def verdict(outcome: str, *metrics: MetricResult, release: str = "web-1.2.3", final: bool = True) -> Verdict:
    return Verdict(release=release, verdict=outcome, reason=f"the canary is {outcome}", deployed_at=T0,
                   evaluated_at=T0 + 3600, final=final, metrics=list(metrics))


def parse(xml: str) -> tuple[ET.Element, dict[str, ET.Element]]:
    root = ET.fromstring(xml.encode())
    suite = root.find("testsuite")
    return suite, {c.get("name"): c for c in suite.findall("testcase")}


def kind(case: ET.Element) -> str:
    for child in ("failure", "error", "skipped"):
        if case.find(child) is not None:
            return child
    return "passed"


def test_one_test_case_per_metric_a_failed_metric_is_a_failure_with_its_numbers():
    suite, cases = parse(junit.report(verdict(
        "fail",
        metric("cpu", "fail", reason="canary +40% vs baseline", rule="mean-above-tolerance",
               canary=56.0, baseline=40.0, expected=41.5, effect=0.4, interval=(0.3, 0.5), critical=True),
        metric("latency", "pass"),
        metric("memory", "inconclusive"),
    )))
    assert suite.get("name") == "web-1.2.3"
    assert list(cases) == ["cpu", "latency", "memory"]
    assert {n: kind(c) for n, c in cases.items()} == {"cpu": "failure", "latency": "passed", "memory": "skipped"}
    failure = cases["cpu"].find("failure")
    assert failure.get("message") == "canary +40% vs baseline"
    assert failure.get("type") == "mean-above-tolerance"
    for text in ("canary: 56  baseline: 40  expected: 41.5", "effect: +40.00% [+30.00%, +50.00%]",
                 "tolerance: 10%", "critical"):
        assert text in failure.text
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped"), suite.get("errors")) == ("3", "1", "1", "0")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["verdict"] == "fail" and props["reason"] == "the canary is fail"
    assert cases["latency"].get("classname") == "canary-gate.web-1_2_3"  # no dots: one class in Jenkins


def test_undecided_metrics_are_failures_only_when_they_are_why_the_canary_failed():
    # Failed at the end of the lifetime because nothing was decided (on_undecided: fail).
    _, cases = parse(junit.report(verdict("fail", metric("cpu", "inconclusive"), metric("latency", "pass"))))
    assert kind(cases["cpu"]) == "failure" and kind(cases["latency"]) == "passed"
    # Still waiting, or ended undecided by a policy that allows it: not evidence of a regression.
    for outcome, final in (("inconclusive", False), ("inconclusive", True), ("pass", True)):
        _, cases = parse(junit.report(verdict(outcome, metric("cpu", "inconclusive"), final=final)))
        assert kind(cases["cpu"]) == "skipped", (outcome, final)


def test_muted_and_skipped_metrics_never_count():
    _, cases = parse(junit.report(verdict(
        "pass", metric("cpu", "fail", muted=True), metric("requests", "skipped"), metric("latency", "pass"))))
    assert {n: kind(c) for n, c in cases.items()} == {"cpu": "skipped", "requests": "skipped", "latency": "passed"}
    assert cases["cpu"].find("skipped").get("message").startswith("muted: ")


def test_hostile_text_stays_well_formed_xml():
    nasty = 'a <b> & "c" \x00\x1b[31m ]]> \ud800'
    suite, cases = parse(junit.report(verdict("fail", metric("cpu", "fail", reason=nasty), release="r<&>")))
    assert suite.get("name") == "r<&>"
    assert cases["cpu"].find("failure").get("message") == 'a <b> & "c" [31m ]]> '


def test_a_gate_that_could_not_judge_is_one_error_never_an_empty_report():
    suite, cases = parse(junit.error_report("web-1.2.3", "Datadog answered 403"))
    assert list(cases) == ["canary gate"]
    error = cases["canary gate"].find("error")
    assert error.get("message") == "Datadog answered 403" and error.get("type") == "could-not-judge"
    assert (suite.get("tests"), suite.get("errors")) == ("1", "1")


def test_the_module_converts_a_lambda_answer_and_reports_an_error_answer(tmp_path):
    answer = verdict("fail", metric("cpu", "fail")).to_dict() | {"exit_code": 1}
    (tmp_path / "v.json").write_text(json.dumps(answer, indent=2))  # whole-file JSON, pretty or not
    (tmp_path / "e.json").write_text(json.dumps({"verdict": "error", "error": "could not judge: no data",
                                                 "release": "web-1.2.3", "exit_code": 4}))
    (tmp_path / "g.json").write_text("<html>502</html>")

    def convert(name: str):
        out = tmp_path / f"{name}.xml"
        result = subprocess.run([sys.executable, "-m", "gate.junit", str(tmp_path / f"{name}.json"),
                                 "--output", str(out), "--release", "web-1.2.3"], capture_output=True, text=True)
        return result.returncode, parse(out.read_text())

    code, (_, cases) = convert("v")
    assert code == 0 and kind(cases["cpu"]) == "failure"
    code, (_, cases) = convert("e")
    assert code == 4 and cases["canary gate"].find("error").get("message") == "could not judge: no data"
    code, (suite, cases) = convert("g")
    assert code == 4 and suite.get("name") == "web-1.2.3" and "cannot read the verdict" in (
        cases["canary gate"].find("error").get("message"))


def test_gate_check_junit_from_a_real_verdict(tmp_path, corpus):
    case = corpus / "k1m-canary-down-012"  # the canary stops reporting: every metric fails
    deployed_at = json.loads((case / "case.json").read_text())["deploy_at"]
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        f"name: web\nsource: {{type: replay, options: {{case: '{case}'}}}}\n"
        "canary: {scope: canary}\nbaseline: {scope: baseline}\ninterval: 1m\nlifetime: 1h\n"
        "metrics:\n  - {name: cpu, kind: gauge}\n  - {name: latency, kind: gauge}\n")
    report = tmp_path / "out" / "junit.xml"
    result = run_gate("check", "web-9", "--policy", policy, "--deployed-at", deployed_at, "--watch", "--json",
                      "--store", tmp_path / "gate.db", "--junit", report, "--lifetime", "30m", "--examine-past",
                      cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    out = json.loads(result.stdout)
    assert out["verdict"] == "fail"
    assert out["evaluated_at"] <= iso(parse_time(deployed_at) + 30 * 60)  # --lifetime 30m, not the policy's 1h
    suite, cases = parse(report.read_text())
    assert suite.get("name") == "web-9 DEMO (replay)"  # a recorded case, not a live release: said so
    assert sorted(cases) == sorted(m["name"] for m in out["metrics"]) == ["cpu", "latency"]
    failed = [m for m in out["metrics"] if m["verdict"] == "fail"]
    assert failed
    assert sorted(n for n, c in cases.items() if kind(c) == "failure") == sorted(m["name"] for m in failed)
    for m in failed:
        assert cases[m["name"]].find("failure").get("message") == m["reason"]


def test_gate_check_that_cannot_judge_leaves_an_error_report_saying_why(tmp_path):
    report = tmp_path / "junit.xml"
    for release, cause in [("web-9", "policy file not found"), ("--help", "must not start with '-'")]:
        result = run_gate("check", "--policy", tmp_path / "missing.yaml", "--junit", report, "--", release)
        line = result.stderr.strip()
        assert result.returncode == 4 and cause in line
        _, cases = parse(report.read_text())
        assert kind(cases["canary gate"]) == "error"
        # The Jenkins test report shows the cause itself, not "see its log".
        assert cases["canary gate"].find("error").get("message") == line.removeprefix("error: ")


def test_an_unwritable_junit_path_is_one_line_naming_the_option(tmp_path):
    (tmp_path / "a-file").write_text("")
    for report in (tmp_path / "a-file" / "junit.xml", tmp_path):  # under a file; a directory
        result = run_gate("check", "web-9", "--policy", tmp_path / "missing.yaml", "--junit", report)
        assert result.returncode == 4 and result.stdout == ""
        assert result.stderr.startswith(f"error: --junit {report}: cannot write the report (")
        assert result.stderr.count("\n") == 1 and "internal error" not in result.stderr


def test_gate_check_timing_overrides_are_validated(tmp_path, corpus):
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        f"name: web\nsource: {{type: replay, options: {{case: '{corpus / 'k1m-aa-000'}'}}}}\n"
        "canary: {scope: canary}\ninterval: 1m\nmetrics:\n  - {name: cpu, kind: gauge}\n")
    result = run_gate("check", "web-9", "--policy", policy, "--lifetime", "30s", "--store", tmp_path / "g.db")
    assert result.returncode == 4
    assert "lifetime must be at least one interval" in result.stderr and "Traceback" not in result.stderr

