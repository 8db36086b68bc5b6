"""`gate backtest`: the real judge on pseudo-canaries cut from a policy's history, read once."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from gate.backtest import AA, Injection, exit_code, inject
from gate.policy import parse_policy
from gate.series import Frame
from tests.conftest import run_gate

UNTIL = "2024-05-10T00:00:00Z"  # the simulated service's history is made up at any moment: fixed for repeatability


def noisy_policy(**changes) -> dict:
    """Latency with a tolerance (2%) below its minute-to-minute noise (~6%): a 2x regression
    hides in the noise, and a clean window may end "could not tell", which on_undecided (fail,
    the default) rolls back: not fit as it is (exit 3). CPU's 10% is generous for its ~3% noise."""
    return {"name": "sim-noisy", "source": {"type": "simulate", "options": {"scenario": "healthy", "seed": 3}},
            "canary": {"scope": "canary"}, "baseline": {"scope": "baseline"},
            "interval": "1m", "lifetime": "20m", "history": "7d", "alpha": 0.05,
            "metrics": [{"name": "cpu", "kind": "gauge", "tolerance": 0.10},
                        {"name": "latency", "kind": "gauge", "unit": "ms", "tolerance": 0.02, "tail": False}],
            **changes}


def write(tmp_path, data, name="policy.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def backtest(*args):
    return run_gate("backtest", *args)


def one_error_line(result, *words):
    assert result.returncode == 4, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for word in words:
        assert word in lines[0]
    assert "recommend" not in result.stdout and "tolerance:" not in result.stdout


def test_a_noisy_metric_gets_a_wider_tolerance_and_a_quiet_one_a_tighter_one(tmp_path):
    result = backtest("--policy", write(tmp_path, noisy_policy()), "--days", "3", "--windows", "3",
                      "--until", UNTIL, "--jobs", "1", "--json")
    report = json.loads(result.stdout)
    # Exit 3 exactly when the report says why the policy is not fit (latency's 2% may leave a
    # clean window undecided, which on_undecided: fail rolls back; how many depends on the history
    # each window learns from).
    assert result.returncode == exit_code(report) == (3 if report["exit_reasons"] else 0), result.stderr
    assert report["mode"] == "paired" and report["windows"] == 3
    assert report["history"]["source_requests"] == 1  # the history is read once, not per window
    advised = report["recommendation"]["tolerances"]
    assert advised["latency"] > 0.02
    assert advised["cpu"] < 0.10
    fragment = yaml.safe_load(report["recommendation"]["yaml"])
    assert {m["name"]: m["tolerance"] for m in fragment["metrics"]} == advised
    latency = next(m for m in report["metrics"] if m["name"] == "latency")
    assert latency["false_alarms"]["of"] == 3 and len(latency["false_alarms"]["ci95"]) == 2
    assert report["overall"]["canary_down"]["detected"]["count"] == 3


def test_the_terminal_shows_the_table_and_the_yaml_to_paste(tmp_path):
    result = backtest("--policy", write(tmp_path, noisy_policy(lifetime="10m")), "--days", "3", "--windows", "2",
                      "--until", UNTIL)
    assert result.returncode in (0, 3), result.stderr
    assert "false alarms" in result.stdout and "tolerance:" in result.stdout and "latency" in result.stdout
    assert "rolled back" in result.stdout
    assert ("not fit for this service (exit 3)" in result.stdout) == (result.returncode == 3)


def test_days_zero_is_a_clear_error(tmp_path):
    one_error_line(backtest("--policy", write(tmp_path, noisy_policy()), "--days", "0", "--until", UNTIL), "--days")


def test_a_policy_without_tolerances_is_a_clear_error(tmp_path):
    data = noisy_policy()
    data["metrics"] = [{**m, "tolerance": None} for m in data["metrics"]]
    one_error_line(backtest("--policy", write(tmp_path, data), "--days", "3", "--until", UNTIL), "tolerance")


def test_too_little_history_for_one_window_is_a_clear_error(tmp_path):
    one_error_line(backtest("--policy", write(tmp_path, noisy_policy(lifetime="2h")), "--days", "0.1",
                            "--until", UNTIL), "--days", "no room")


def recorded_case(folder, rows, deploy="2024-05-09T12:00:00Z", end="2024-05-09T13:00:00Z"):
    folder.mkdir()
    (folder / "case.json").write_text(json.dumps({
        "id": "no-history", "step_seconds": 60, "deploy_at": deploy, "end_at": end,
        "metrics": [{"name": "cpu", "kind": "gauge", "bad_direction": "increase", "tolerance": 0.1}]}))
    with gzip.open(folder / "series.csv.gz", "wt") as f:
        f.write("timestamp,scope,cpu\n" + "".join(f"{t},{scope},{v}\n" for t, scope, v in rows))
    return folder


def test_no_history_before_a_recorded_canary_is_a_clear_error(tmp_path):
    # Only the canary window was recorded: there is nothing before the deploy to cut windows from.
    deployed = 1715256000  # 2024-05-09T12:00:00Z
    case = recorded_case(tmp_path / "case", [(deployed + 60 * i, "canary", 40.0) for i in range(60)])
    data = {"name": "no-history", "source": {"type": "replay", "options": {"case": str(case)}},
            "canary": {"scope": "canary"}, "interval": "1m", "lifetime": "1h",
            "metrics": [{"name": "cpu", "kind": "gauge", "tolerance": 0.1}]}
    one_error_line(backtest("--policy", write(tmp_path, data), "--days", "2"), "no history")


def test_injections_act_on_the_canary_window_only_and_at_their_size():
    policy = parse_policy(noisy_policy(), "test")
    t = 1_000_000 - 1_000_000 % 60 + 60 * np.arange(120)
    frame = Frame(60, t, {"cpu": np.full(120, 50.0), "latency": np.full(120, 100.0)})
    deployed = int(t[60])
    assert inject(frame, policy, AA, deployed, 1200) is frame
    shifted = inject(frame, policy, Injection("shift", "cpu", 2.0), deployed, 1200)
    assert (shifted.values["cpu"][:60] == 50).all() and (abs(shifted.values["cpu"][60:] - 60.0) < 1e-9).all()
    ramp = inject(frame, policy, Injection("ramp", "cpu", 3.0), deployed, 1200).values["cpu"]
    assert ramp[60] == 50 and abs(ramp[80] - 65.0) < 1e-9  # 3 x 10% reached at the end of the lifetime
    down = inject(frame, policy, Injection("down"), deployed, 1200)
    assert np.isnan(down.values["cpu"][65:]).all() and not np.isnan(down.values["cpu"][:65]).any()


def test_the_html_page_draws_each_metric_and_stays_offline(tmp_path):
    page = tmp_path / "backtest.html"
    result = backtest("--policy", write(tmp_path, noisy_policy(lifetime="10m")), "--days", "3", "--windows", "2",
                      "--until", UNTIL, "--no-recommend", "--html", page, "--json")
    assert result.returncode == exit_code(json.loads(result.stdout)) != 4, result.stderr
    text = page.read_text()
    assert "default-src 'none'" in text and "<script" not in text
    assert text.count("<svg") == 1 + 2 * 2  # the timeline, then per metric detection and timeline
    assert json.loads(result.stdout)["recommendation"]["yaml"] is None
    assert "could not tell" in text and "rolled back" in text  # the undecided windows, beside the false alarms
    assert ("not fit for this service" in text) == (result.returncode == 3)


def test_the_html_page_of_windows_that_never_passed_says_so_not_none(tmp_path):
    from gate.report.backtest import render

    result = backtest("--policy", write(tmp_path, noisy_policy(lifetime="10m")), "--days", "3", "--windows", "2",
                      "--until", UNTIL, "--no-recommend", "--json")
    report = json.loads(result.stdout)
    report["overall"]["median_minutes_to_pass"] = None  # no A/A window passed
    page = render(report)
    assert "None" not in page and "median time to pass -." in page


def test_without_a_baseline_history_the_windows_are_judged_against_their_own_history(tmp_path):
    # No baseline group and no tolerance: --no-recommend still measures the false alarms.
    data = noisy_policy(baseline=None, lifetime="10m")
    data["metrics"] = [{"name": "cpu", "kind": "gauge", "tolerance": None}]
    result = backtest("--policy", write(tmp_path, data), "--days", "3", "--windows", "2", "--until", UNTIL,
                      "--no-recommend", "--jobs", "1", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["mode"] == "history-only" and "own history" in report["mode_reason"]
    assert report["overall"]["false_alarms"]["of"] == 2
    assert [m["name"] for m in report["metrics"]] == ["cpu"] and report["metrics"][0]["injections"] == []


def test_a_clean_record_is_an_interval_not_a_zero_and_trials_for_says_how_many_show_alpha():
    from gate.stats.rates import proportion_interval, trials_for

    lo, hi = proportion_interval(0, 24)
    assert lo == 0 and 0.13 < hi < 0.15  # 0 false alarms in 24 windows: up to ~14%
    n = trials_for(0.01)
    assert proportion_interval(0, n)[1] <= 0.01 < proportion_interval(0, n - 1)[1]


def test_a_regression_counts_as_caught_only_when_its_own_metric_fails_for_it():
    from gate.backtest import DOWN, Run, caught

    shift = Injection("shift", "cpu", 2.0)
    assert caught(Run("policy", 0, shift, "fail", 5, (("cpu", "mean-beyond-tolerance", "..."),)))
    assert not caught(Run("policy", 0, shift, "fail", 5, (("latency", "mean-beyond-tolerance", "..."),)))
    assert not caught(Run("policy", 0, shift, "fail", 5, (("cpu", "canary-not-reporting", "a gap"),)))
    assert not caught(Run("policy", 0, shift, "pass", 30, ()))
    assert caught(Run("policy", 0, DOWN, "fail", 18, (("cpu", "canary-not-reporting", "..."),)))


def test_over_real_http_the_history_is_read_once_whatever_the_number_of_windows(tmp_path, corpus):
    # The fake Datadog serves a recorded case as if it were happening now; the backtest ends its
    # history at the served deploy. The requests it makes do not grow with the windows.
    from tests.fake_datadog import API_KEY, APP_KEY
    from tests.test_datadog_cli import live, write_policy

    with live(corpus, "k1m-aa-000") as fake:
        env = {"GATE_DATADOG_URL": fake.url, "DD_API_KEY": API_KEY, "DD_APP_KEY": APP_KEY}
        counts = []
        for windows in ("2", "3"):
            before = len(fake.timeseries_requests())
            result = run_gate("backtest", "--policy", write_policy(tmp_path), "--days", "6", "--windows", windows,
                              "--until", str(fake.deployed_at - 60), "--no-recommend", "--jobs", "1", "--json",
                              env=env, cwd=tmp_path)
            report = json.loads(result.stdout)
            assert result.returncode == exit_code(report) != 4, result.stderr  # history-only: false alarms may exceed alpha
            # two reads: the group, then host by host (issue 27: one host here, nothing to split)
            assert report["windows"] == int(windows) and report["history"]["source_requests"] == 2
            counts.append(len(fake.timeseries_requests()) - before)
    assert counts[0] == counts[1] > 0
    assert report["mode"] == "history-only"  # the canary scope has no history before the deploy


def test_a_policy_that_cries_wolf_on_every_window_exits_3_not_0():
    """Issue 22: a backtest whose every A/A window raised a false alarm exited 0, as one that raised
    none: a pipeline checking a policy before trusting it read that as fine. examples/simulate.yaml:
    the canary runs its faulty version (db_connections) over all its history."""
    result = backtest("--policy", EXAMPLES / "simulate.yaml", "--days", "3", "--windows", "3", "--until", UNTIL,
                      "--no-recommend", "--jobs", "1", "--json")
    report = json.loads(result.stdout)
    assert report["overall"]["false_alarms"]["count"] == 3 and report["overall"]["false_alarms"]["of"] == 3
    assert result.returncode == 3, result.stderr


@pytest.mark.parametrize("option, value, words", [
    ("--days", "1e300", ["--days: must be more than 0 and at most 366", "1e+300"]),
    ("--days", "367", ["--days: must be more than 0 and at most 366"]),
    ("--until", "0", ["--until: 1970-01-01T00:00:00Z leaves no 3 days of history after 1970-01-01",
                      "from 1970-01-04T00:00:00Z on"]),
])
def test_a_span_out_of_range_is_one_line_naming_the_option_and_its_range(tmp_path, option, value, words):
    """Issue 22: `--days 1e300` and `--until 0` ended in `internal error: ValueError`."""
    args = {"--days": "3", "--until": UNTIL, option: value}
    one_error_line(backtest("--policy", write(tmp_path, noisy_policy()), *(x for kv in args.items() for x in kv),
                            "--no-recommend"), *words)


def undecided_errors_policy(**changes) -> dict:
    """Errors the canary can never have enough requests to judge (min_events far above any
    window's volume): every window ends undecided on them, and on_undecided: fail fails it."""
    return noisy_policy(**{"lifetime": "10m", "on_undecided": "fail", "metrics": [
        {"name": "cpu", "kind": "gauge", "tolerance": 0.10},
        {"name": "errors", "kind": "count", "denominator": "requests", "tolerance": 0.5, "min_events": 10**9},
        {"name": "requests", "kind": "count", "bad_direction": "none"}], **changes})


def test_windows_the_judge_could_not_tell_at_the_end_are_undecided_not_false_alarms(tmp_path):
    result = backtest("--policy", write(tmp_path, undecided_errors_policy()), "--days", "3", "--windows", "3",
                      "--until", UNTIL, "--no-recommend", "--jobs", "1", "--json")
    report = json.loads(result.stdout)
    overall = report["overall"]
    assert overall["undecided"]["count"] == 3 and overall["undecided"]["of"] == 3
    assert overall["false_alarms"]["count"] == 0  # failed only through on_undecided: not the judge's false alarm
    errors = next(m for m in report["metrics"] if m["name"] == "errors")
    assert errors["undecided"]["count"] == 3 and errors["false_alarms"]["count"] == 0
    assert report["false_alarm_windows"] == []
    assert result.returncode == 3, result.stderr  # ... but a rollback of every clean canary all the same (below)


def test_clean_windows_that_on_undecided_fails_are_rollbacks_of_the_policy_exit_3_not_0(tmp_path):
    """Review: every A/A window ended "could not tell" and on_undecided: fail (the default) rolls
    each back, yet the backtest exited 0 ("false alarms 0 <= alpha"): a pipeline read that as a
    policy fit for the service, and the live gate would roll back every clean release."""
    result = backtest("--policy", write(tmp_path, undecided_errors_policy()), "--days", "3", "--windows", "3",
                      "--until", UNTIL, "--no-recommend", "--jobs", "1", "--json")
    assert result.returncode == 3, result.stderr
    report = json.loads(result.stdout)
    assert report["overall"]["rolled_back"]["count"] == 3 == report["overall"]["rolled_back"]["of"]
    assert next(m for m in report["metrics"] if m["name"] == "errors")["rolled_back"]["count"] == 3
    assert report["exit_reasons"] == [
        "3 of 3 clean (A/A) windows rolled back (3 the judge could not tell at the end, which on_undecided: fail "
        "rolls back): 100%, more than alpha 0.05 allows"]
    shown = backtest("--policy", write(tmp_path, undecided_errors_policy()), "--days", "3", "--windows", "3",
                     "--until", UNTIL, "--no-recommend", "--jobs", "1")
    assert shown.returncode == 3 and "not fit for this service (exit 3): 3 of 3 clean" in shown.stdout


def test_clean_windows_held_as_inconclusive_are_no_rollbacks_but_still_not_fit(tmp_path):
    """on_undecided: inconclusive holds an undecided canary for a person instead of rolling it
    back: not a rollback, yet a gate that holds every clean release is no fit either (exit 3)."""
    result = backtest("--policy", write(tmp_path, undecided_errors_policy(on_undecided="inconclusive")), "--days",
                      "3", "--windows", "3", "--until", UNTIL, "--no-recommend", "--jobs", "1", "--json")
    assert result.returncode == 3, result.stderr
    report = json.loads(result.stdout)
    assert report["overall"]["rolled_back"]["count"] == 0 and report["overall"]["undecided"]["count"] == 3
    assert len(report["exit_reasons"]) == 1
    assert "held for a person (inconclusive) by on_undecided: inconclusive" in report["exit_reasons"][0]


def test_the_exit_code_holds_rollbacks_to_alpha_and_undecided_windows_to_a_tenth():
    from gate.backtest import Rate

    def report(alarms, untold, of=40, on_undecided="fail", alpha=0.05):
        back = alarms + (untold if on_undecided == "fail" else 0)
        return {"alpha": alpha, "on_undecided": on_undecided,
                "overall": {"false_alarms": Rate(alarms, of).to_dict(), "undecided": Rate(untold, of).to_dict(),
                            "rolled_back": Rate(back, of).to_dict()}}

    assert exit_code(report(0, 0)) == 0 and exit_code(report(2, 0)) == 0  # 5%: within alpha
    assert exit_code(report(3, 0)) == 3
    assert exit_code(report(1, 2)) == 3  # 1 false alarm + 2 rolled back as undecided: 7.5% > 5%
    assert exit_code(report(1, 2, on_undecided="inconclusive")) == 0  # held, not rolled back; 5% untold
    assert exit_code(report(0, 5, on_undecided="inconclusive")) == 3  # 12.5% held: more than a tenth
    assert exit_code(report(0, 5, alpha=0.2)) == 3  # within a loose alpha, yet not told in 12.5%
    assert exit_code(report(0, 0, of=0)) == 3  # nothing judged: never fit


def test_the_recommendation_never_picks_a_tolerance_whose_clean_windows_end_undecided(tmp_path):
    result = backtest("--policy", write(tmp_path, undecided_errors_policy()), "--days", "3", "--windows", "2",
                      "--until", UNTIL, "--jobs", "1", "--json")
    assert result.returncode == 3, result.stderr
    report = json.loads(result.stdout)
    assert report["recommendation"]["tolerances"]["errors"] is None
    assert any("could not tell" in note for note in report["recommendation"]["notes"])
    assert "could not tell" in backtest("--policy", write(tmp_path, undecided_errors_policy()), "--days", "3",
                                        "--windows", "2", "--until", UNTIL, "--jobs", "1", "--no-recommend").stdout


def test_a_metric_the_judge_could_not_tell_is_undecided_whatever_verdict_it_carries():
    from gate.backtest import could_not_tell
    from gate.verdict import MetricResult

    assert could_not_tell(MetricResult("cpu", "inconclusive", "...", "minimum-volume"))
    assert could_not_tell(MetricResult("cpu", "fail", "...", "mean-could-not-tell-at-end"))
    assert not could_not_tell(MetricResult("cpu", "fail", "...", "mean-beyond-tolerance"))
    assert not could_not_tell(MetricResult("cpu", "pass", "...", "mean-within-tolerance"))


def test_in_a_log_the_backtest_prints_progress_lines_on_stderr(tmp_path):
    # run_gate's stderr is a pipe, not a terminal: a CI log, where a progress bar prints nothing.
    result = backtest("--policy", write(tmp_path, noisy_policy(lifetime="10m")), "--days", "3", "--windows", "2",
                      "--until", UNTIL, "--no-recommend", "--jobs", "1")
    assert result.returncode in (0, 3), result.stderr  # judged (fit or not), said after the progress
    progress = [line for line in result.stderr.splitlines() if line.startswith("backtest: judging the windows")]
    assert len(progress) >= 2
    done, total = progress[-1].split()[4].split("/")
    assert done == total  # the last line says the stage is complete


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_a_history_failed_wholesale_is_reported_broken_not_a_policy_to_loosen():
    # examples/simulate.yaml: the canary runs its faulty version (db_connections) over all its history.
    result = backtest("--policy", EXAMPLES / "simulate.yaml", "--days", "3", "--windows", "2", "--until", UNTIL,
                      "--json")
    assert result.returncode == 3, result.stderr  # its windows' false alarms are far above alpha: not ok
    report = json.loads(result.stdout)
    # Every window fails at its second minute on errors x15 (the gross-fault rule, issue 23 item 5),
    # before latency has shown its fault: errors is the history reported broken.
    assert "errors" in report["broken_history"]
    assert all(w["rule"] == "rate-grossly-beyond-tolerance" for w in report["false_alarm_windows"])
    assert report["recommendation"]["yaml"] is None and not report["recommendation"]["tolerances"]
    assert any("broken" in note for note in report["recommendation"]["notes"])
    shown = backtest("--policy", EXAMPLES / "simulate.yaml", "--days", "3", "--windows", "2", "--until", UNTIL).stdout
    assert "broken history" in shown and "tolerance: null" not in shown


def test_the_documented_backtest_example_measures_a_healthy_history():
    result = backtest("--policy", EXAMPLES / "backtest.yaml", "--days", "3", "--windows", "3", "--until", UNTIL,
                      "--no-recommend", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["mode"] == "paired" and report["broken_history"] == {}
    assert report["overall"]["false_alarms"]["count"] == 0
    assert report["overall"]["detection"]["3x"]["detected"]["rate"] > 0.9


def test_a_metric_no_candidate_suits_keeps_its_tolerance_never_null():
    from gate.backtest import Recommendation

    policy = parse_policy(noisy_policy(), "test")
    text = Recommendation({"cpu": 0.05, "latency": None}, None).yaml(policy, {})
    tolerances = {m["name"]: m["tolerance"] for m in yaml.safe_load(text)["metrics"]}
    assert tolerances == {"cpu": 0.05, "latency": 0.02}  # latency kept at the policy's, not null


def test_in_80_columns_the_table_wraps_a_long_metric_name_and_cuts_no_number(tmp_path):
    import io

    from rich.console import Console

    from gate.console import print_backtest

    result = backtest("--policy", write(tmp_path, noisy_policy(lifetime="10m")), "--days", "3", "--windows", "2",
                      "--until", UNTIL, "--jobs", "1", "--json")
    report = json.loads(result.stdout)
    assert result.returncode == exit_code(report) != 4, result.stderr
    report["metrics"][1]["name"] = "checkout.request.latency.p99"
    shown = io.StringIO()
    print_backtest(report, Console(file=shown, width=80, color_system=None))
    lines = shown.getvalue().splitlines()
    start = lines.index(next(line for line in lines if line.startswith("metric")))
    end = lines.index(next(line for line in lines[start:] if line.startswith(("not fit", "note:", "windows", "recommended"))))
    table = lines[start:end]
    assert any(line.startswith("checkout.") for line in table)
    assert "…" not in "\n".join(table) and all(len(line) <= 80 for line in table)
    advised = [m["recommended_tolerance"] for m in report["metrics"]]
    assert all(f"{a:g}" in "\n".join(table) for a in advised if a is not None)


@pytest.mark.parametrize("on_undecided, advised", [("fail", 0.075), ("inconclusive", 0.05)])
def test_the_recommendation_counts_clean_windows_on_undecided_rolls_back_against_alpha(on_undecided, advised):
    """At half the tolerance 2 of 20 clean windows end "could not tell" on cpu (told in 90%, the
    target): under on_undecided: fail the live gate rolls both back, 10% > alpha 5%: not advised."""
    from gate.backtest import TOLERANCE_FACTORS, Run, recommend_tolerances, tolerance_label

    policy = parse_policy(noisy_policy(on_undecided=on_undecided), "test")
    runs = []
    for factor in TOLERANCE_FACTORS:
        label = tolerance_label(factor)
        for window in range(20):
            untold = ("cpu",) if factor == 0.5 and window < 2 else ()
            runs.append(Run(label, window, AA, "fail" if untold else "pass", 20, (), untold))
            for name in ("cpu", "latency"):
                shift = Injection("shift", name, 2.0)
                runs.append(Run(label, window, shift, "fail", 5, ((name, "mean-beyond-tolerance", "..."),)))
    tolerances, _, _ = recommend_tolerances(policy, runs)
    assert tolerances["cpu"] == advised and tolerances["latency"] == 0.01


def test_a_tenth_of_clean_windows_undecided_is_within_the_target_not_beyond():
    """Review: 1 of 10 undecided exited 3 ("more than 10%"): 1 - 0.9 is 0.0999...98 in floats."""
    from gate.backtest import Rate, exit_reasons

    report = {"alpha": 0.1, "on_undecided": "inconclusive",
              "overall": {"rolled_back": Rate(0, 10).to_dict(), "undecided": Rate(1, 10).to_dict(),
                          "false_alarms": Rate(0, 10).to_dict()}}
    assert exit_reasons(report) == []
    report["overall"]["undecided"] = Rate(2, 10).to_dict()
    assert "could not be told" in exit_reasons(report)[0]


def test_recommended_tolerances_stay_within_what_a_policy_accepts():
    """Review round 4: `recommend_tolerances` rounded tolerance x factor itself: 0.001 x 0.5 was
    recommended as 0.0005, a policy the gate then refuses (and 50 x 3 beyond the 100 maximum)."""
    from gate.backtest import scaled
    from gate.policy import MAX_TOLERANCE, MIN_TOLERANCE, parse_policy

    data = noisy_policy()
    first, second = data["metrics"][0]["name"], data["metrics"][1]["name"]
    data["metrics"][0]["tolerance"], data["metrics"][1]["tolerance"] = 0.001, 50
    policy = parse_policy(data)
    assert scaled(policy, 0.5)[first] == MIN_TOLERANCE and scaled(policy, 3.0)[second] == MAX_TOLERANCE
    assert scaled(policy, 1.5)[first] == 0.0015 and scaled(policy, 0.5)[second] == 25.0
