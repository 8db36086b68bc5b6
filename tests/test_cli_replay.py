import json
import shlex
import shutil
from datetime import datetime

import pytest

from tests.conftest import ROOT, run_gate


def test_replay_prints_one_json_line_per_case_with_the_contract_fields(corpus):
    result = run_gate("replay", corpus / "k1m-aa-000", corpus / "kontrast-000", "--json")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["case"] for line in lines] == ["k1m-aa-000", "kontrast-000"]
    for line in lines:
        assert line["verdict"] in ("pass", "fail", "inconclusive")
        assert line["decided_at"].endswith("Z")
        assert line["evaluations"] >= 1
        assert all({"name", "verdict", "reason"} <= set(m) for m in line["metrics"])
        assert isinstance(line["notes"], list)
    assert result.returncode == {"pass": 0, "fail": 1, "inconclusive": 3}[lines[-1]["verdict"]]


def test_replay_json_carries_the_verdicts_notes(corpus):
    """Held-out moments and other caveats are part of the judgement: whoever scores replays must
    see them (issue 18)."""
    from gate.analysis import replay_case

    case = corpus / "k1m-fleet-anomaly-235"  # a real fleet-wide anomaly hits both groups
    line = json.loads(run_gate("replay", case, "--json").stdout)
    assert line["notes"] == replay_case(case).verdict.notes
    assert any("held out" in note for note in line["notes"]), line["notes"]


def test_replay_of_a_missing_case_is_one_clear_line_and_exit_4(tmp_path):
    result = run_gate("replay", tmp_path / "nope", "--json")
    assert result.returncode == 4
    assert "case folder not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_replay_exits_with_the_worst_verdict_of_its_cases(corpus, tmp_path):
    passed = run_gate("replay", corpus / "k1m-aa-014", "--json")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert json.loads(passed.stdout)["verdict"] == "pass"

    # Several cases in one process; a broken one in the middle is reported and the others go on.
    result = run_gate("replay", corpus / "k1m-aa-014", tmp_path / "missing", corpus / "k1m-canary-down-012", "--json")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["verdict"] for line in lines] == ["pass", "error", "fail"]
    assert "case folder not found" in lines[1]["error"]
    assert lines[2]["case"] == "k1m-canary-down-012"
    assert any(m["verdict"] == "fail" and m["reason"] for m in lines[2]["metrics"])
    assert result.returncode == 4, result.stderr  # one case could not be judged: never hidden

    # A failed or unjudged case before a passing one is not hidden by it (it once was: exit 0).
    result = run_gate("replay", corpus / "k1m-canary-down-012", corpus / "k1m-aa-014", "--json")
    assert result.returncode == 1, result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_gate("replay", empty, corpus / "k1m-aa-014", "--json")
    assert result.returncode == 4, result.stderr


def test_replay_with_a_policy_file(corpus):
    result = run_gate("replay", corpus / "k1m-canary-down-012", "--policy", ROOT / "examples" / "replay.yaml", "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    assert json.loads(result.stdout)["verdict"] == "fail"


def test_replay_with_a_malformed_policy_is_one_line_and_exit_4(corpus, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "examples" / "replay.yaml").read_text().replace("lifetime: 1h", "lifetime: forever"))
    result = run_gate("replay", corpus / "k1m-aa-014", "--policy", bad, "--json")
    assert result.returncode == 4
    assert result.stdout == "" and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "lifetime" in lines[0] and "forever" in lines[0]


def test_every_case_gets_its_line_even_malformed_ones(corpus, tmp_path):
    """A malformed case.json (numeric deploy_at, an infinite step) is that case's error; the
    cases around it are still judged, each line names its case folder."""
    import shutil

    broken = {}
    for name, change in (("numeric-deploy", {"deploy_at": 1495640000}), ("huge-step", {"step_seconds": "1e400"})):
        folder = tmp_path / name
        shutil.copytree(corpus / "k1m-aa-014", folder)
        meta = json.loads((folder / "case.json").read_text())
        meta.update(change)
        text = json.dumps(meta).replace('"1e400"', "1e400")
        (folder / "case.json").write_text(text)
        broken[name] = folder
    result = run_gate("replay", broken["numeric-deploy"], corpus / "k1m-aa-014", broken["huge-step"],
                      corpus / "k1m-canary-down-012", "--json")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(line["case"], line["verdict"]) for line in lines] == [
        ("numeric-deploy", "error"), ("k1m-aa-014", "pass"), ("huge-step", "error"), ("k1m-canary-down-012", "fail")]
    assert all(line["error"] for line in lines if line["verdict"] == "error")
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error: ")]) == 2
    assert result.returncode == 4  # the worst of the cases: two could not be judged


def edited_case(case, folder, edit):
    """A copy of a corpus case at `folder` with `edit(row, deploy_at)` applied to every row of its
    series (rows as csv.DictReader reads them: strings; an edit changes them in place)."""
    import csv
    import gzip

    shutil.copytree(case, folder)
    deploy = datetime.fromisoformat(json.loads((folder / "case.json").read_text())["deploy_at"]
                                    .replace("Z", "+00:00")).timestamp()
    with gzip.open(folder / "series.csv.gz", "rt", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        edit(row, deploy)
    with gzip.open(folder / "series.csv.gz", "wt", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder


def test_a_real_history_with_glitch_points_does_not_pass_a_tripled_window(corpus, tmp_path):
    """A real history-only case (kontrast-000) whose history has 1% of its points written as 1e6:
    the model learned from it once expected -200 of a KPI near 4, with noise scales in the
    thousands, and the window at three times the KPI passed (the worst bug: a pass on a canary
    it could not judge)."""
    import random

    from gate.analysis import replay_case

    chance = random.Random(2)

    def glitch(row, deploy):
        if not row["kpi"]:
            return
        if int(row["timestamp"]) >= deploy:
            row["kpi"] = repr(float(row["kpi"]) * 3)
        elif chance.random() < 0.01:
            row["kpi"] = "1e6"

    folder = edited_case(corpus / "kontrast-000", tmp_path / "glitched", glitch)
    verdict = replay_case(folder).verdict
    assert verdict.verdict == "fail", verdict.reason



@pytest.mark.parametrize("minute", [6, 20])
def test_a_real_canary_whose_error_series_stops_partway_is_not_passed(corpus, tmp_path, minute):
    """A fail-open found in review: a real clean canary (k1m-aa-000, ~1300 requests and ~10
    errors a minute) whose error series reads zero from minute `minute` on (a crashed agent, a
    renamed counter) passed at a checkpoint, "rate -64% vs baseline: shown within tolerance":
    its first minutes carried the window's sum past the whole-window missing-series check."""
    from gate.analysis import replay_case

    def stop(row, deploy):
        if row["scope"] == "canary" and int(row["timestamp"]) >= deploy + minute * 60:
            row["errors"] = "0"

    folder = edited_case(corpus / "k1m-aa-000", tmp_path / "stopped", stop)
    verdict = replay_case(folder).verdict
    errors = next(m for m in verdict.metrics if m.name == "errors")
    assert verdict.verdict != "pass", verdict.reason
    assert errors.rule == "implausibly-clean", errors.reason


@pytest.mark.parametrize("case", ["k1m-aa-079", "nab5m-aa-266"])
def test_clean_real_canaries_with_lulls_in_their_errors_are_not_held_as_stopped(corpus, case):
    """Real error counts come in bursts and lulls (36, 30, then 0, 0, 0 at ~4 a minute; 12 errors
    over 6 minutes where 156 were expected): the stopped-series test, with a dispersion learned
    as Poisson-like from other hours, held these clean canaries; the window's own dispersion
    explains their lulls."""
    from gate.analysis import replay_case

    verdict = replay_case(corpus / case).verdict
    errors = next(m for m in verdict.metrics if m.name == "errors")
    assert errors.rule != "implausibly-clean", errors.reason
    assert verdict.verdict == "pass", verdict.reason

EXAMPLE_CASES = ROOT / "examples" / "cases"


def documented_commands(path) -> list[list[str]]:
    """The `gate ...` commands a file's comments document."""
    return [shlex.split(line.lstrip("# ").strip()) for line in path.read_text().splitlines()
            if line.startswith("#   gate ")]


def test_the_replay_examples_run_in_a_clone_without_the_shared_corpus(tmp_path):
    """A clone has no ../shared: the example's cases ship in examples/cases, and its commands,
    run as documented from the clone's root, find everything inside the clone."""
    clone = tmp_path / "clone"
    shutil.copytree(ROOT / "examples", clone / "examples")
    replay, check = documented_commands(clone / "examples" / "replay.yaml")
    assert replay[:2] == ["gate", "replay"] and check[:2] == ["gate", "check"]
    replayed = run_gate(*replay[1:], cwd=clone, env={"COLUMNS": "80"})
    assert replayed.returncode == 1, replayed.stdout + replayed.stderr  # a pass and a fail: the worst
    assert replayed.stdout.strip().splitlines()[-1] == "2 cases: 1 fail, 1 pass (exit 1)"
    checked = run_gate(*check[1:], "--store", tmp_path / "gate.sqlite", "--json", cwd=clone)
    assert checked.returncode == 0, checked.stdout + checked.stderr  # the A/A case passes


def test_the_shipped_cases_are_the_corpus_own(corpus):
    """examples/cases are copies of corpus cases, byte for byte: the bench's numbers hold for them."""
    shipped = sorted(p for p in EXAMPLE_CASES.iterdir() if p.is_dir())
    assert [p.name for p in shipped] == ["k1m-aa-000", "k1m-error-rate-010"]
    for case in shipped:
        for f in ("case.json", "series.csv.gz"):
            assert (case / f).read_bytes() == (corpus / case.name / f).read_bytes(), (case.name, f)


def test_a_replay_of_several_cases_ends_with_a_line_counting_their_verdicts(tmp_path):
    result = run_gate("replay", EXAMPLE_CASES / "k1m-aa-000", tmp_path / "gone", "--policy",
                      ROOT / "examples" / "replay.yaml")
    assert result.returncode == 4, result.stdout + result.stderr  # one could not be judged: the worst
    assert result.stdout.strip().splitlines()[-1] == "2 cases: 1 error, 1 pass (exit 4)"


def _from_minute(scope, column, minute, value):
    """An edit for edited_case: `column` of `scope`'s rows from `minute` after the deploy set to
    value(old) (a string, as the CSV holds it)."""
    def edit(row, deploy):
        if row["scope"] == scope and row.get(column) and int(row["timestamp"]) >= deploy + minute * 60:
            row[column] = value(row[column])
    return edit


@pytest.mark.parametrize(("case", "column", "minute"), [
    ("replicas/replica-cpu-shift-001", "cpu", 0), ("dev/k1m-latency-shift-045", "latency", 3),
])
def test_a_gauge_filled_with_zeros_is_not_passed_as_far_below_its_baseline(corpus, tmp_path, case, column, minute):
    """Review: a real regressed canary whose gauge reads 0 from minute `minute` (a query filling a
    dead agent's minutes with zeros) passed "canary mean -90% ... shown within tolerance"."""
    from gate.analysis import replay_case

    folder = edited_case(corpus.parent / case, tmp_path / "zeros", _from_minute("canary", column, minute, lambda v: "0"))
    verdict = replay_case(folder).verdict
    gauge = next(m for m in verdict.metrics if m.name == column)
    assert verdict.verdict != "pass", verdict.reason
    assert gauge.verdict != "pass", gauge.reason


def test_a_denominator_that_stops_while_errors_rise_is_not_passed(corpus, tmp_path):
    """Review: k1m-aa-000's canary stops sending requests at minute 24 while its errors go up
    tenfold: the pairs end at minute 24 and the canary passed at its checkpoint on the first 24
    minutes ("rate +5.9% over 24 points: shown within tolerance")."""
    from gate.analysis import replay_case

    def edit(row, deploy):
        _from_minute("canary", "requests", 24, lambda v: "")(row, deploy)
        _from_minute("canary", "errors", 24, lambda v: str(int(float(v)) * 10))(row, deploy)

    verdict = replay_case(edited_case(corpus / "k1m-aa-000", tmp_path / "stopped", edit)).verdict
    errors = next(m for m in verdict.metrics if m.name == "errors")
    assert verdict.verdict != "pass", verdict.reason
    assert errors.verdict != "pass", errors.reason


@pytest.mark.parametrize("scope", ["canary", "baseline"])
def test_a_series_that_stops_halfway_is_not_passed_on_its_first_half(corpus, tmp_path, scope):
    """Review: k1m-aa-000's latency blank from minute 24 in one group (the canary's doubled from
    then on): 24 points cover half of the 45 so far, and the checkpoint passed on the first half."""
    from gate.analysis import replay_case

    def edit(row, deploy):
        _from_minute(scope, "latency", 24, lambda v: "")(row, deploy)
        _from_minute("canary", "latency", 24, lambda v: repr(float(v) * 2) if v else v)(row, deploy)

    verdict = replay_case(edited_case(corpus / "k1m-aa-000", tmp_path / "stopped", edit)).verdict
    latency = next(m for m in verdict.metrics if m.name == "latency")
    assert verdict.verdict != "pass", verdict.reason
    assert latency.verdict != "pass", latency.reason


def test_one_burst_in_the_baseline_does_not_hide_a_stopped_error_series(corpus, tmp_path):
    """Review: the stopped-series test took the baseline window's dispersion, a moment estimate
    that one burst (one minute at 10x, ordinary for this series) sets: k1m-aa-000's errors reading
    0 from minute 20 then passed at its checkpoint."""
    from gate.analysis import replay_case

    stop = _from_minute("canary", "errors", 20, lambda v: "0")

    def edit(row, deploy):
        stop(row, deploy)
        if row["scope"] == "baseline" and int(row["timestamp"]) == deploy + 5 * 60 and row["errors"]:
            row["errors"] = str(int(float(row["errors"])) * 10)

    verdict = replay_case(edited_case(corpus / "k1m-aa-000", tmp_path / "burst", edit)).verdict
    errors = next(m for m in verdict.metrics if m.name == "errors")
    assert verdict.verdict != "pass", verdict.reason
    assert errors.rule == "implausibly-clean", errors.reason
