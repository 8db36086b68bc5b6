"""`gate check` through the real console script: exit codes, JSON, the store, fail-closed errors."""

import json
import re
import time

import pytest
import yaml

from gate.verdict import iso, parse_time
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
                          "--store", store, "--json", "--examine-past")
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
                      "--store", tmp_path / "gate.sqlite", "--examine-past")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL" in result.stdout


def test_a_replay_policy_names_its_case_relative_to_itself_and_judges_it_from_its_deploy(corpus, tmp_path):
    """From another folder and without --deployed-at: the case is found next to the policy, and
    judged from its recorded deploy (not from now, against data years old)."""
    import os

    folder = tmp_path / "policies"
    folder.mkdir()
    relative = os.path.relpath(corpus / "k1m-canary-down-012", folder)
    policy = write_policy(folder, {**REPLAY, "source": {"type": "replay", "options": {"case": relative}}})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_gate("check", "rel", "--policy", policy, "--store", tmp_path / "gate.sqlite", "--json", cwd=elsewhere)
    assert result.returncode == 1, result.stdout + result.stderr
    verdict = json.loads(result.stdout)
    case = json.loads((corpus / "k1m-canary-down-012" / "case.json").read_text())
    assert verdict["verdict"] == "fail" and verdict["deployed_at"] == iso(parse_time(case["deploy_at"]))


def test_the_replay_example_finds_its_case_from_any_folder(tmp_path):
    example = ROOT / "examples" / "replay.yaml"  # its case ships beside it: no corpus needed
    result = run_gate("check", "rel", "--policy", example, "--store", tmp_path / "gate.sqlite", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr  # an A/A case: the same code on both groups
    assert json.loads(result.stdout)["verdict"] == "pass"


def test_the_first_check_of_a_release_is_its_deploy_time(tmp_path):
    # Without --deployed-at the canary starts now: no data yet, so nothing can be decided yet.
    policy = simulate_policy(tmp_path, "healthy", None)
    result = run_gate("check", "fresh", "--policy", policy, "--store", tmp_path / "gate.sqlite", "--json")
    assert result.returncode == 3, result.stdout + result.stderr
    assert json.loads(result.stdout)["verdict"] == "inconclusive"


def test_check_judges_at_the_start_of_the_current_interval_as_the_lambda_does(tmp_path):
    """Issue 14.1: the CLI judged at the raw clock, the Lambda at the start of the interval."""
    policy = simulate_policy(tmp_path, "healthy", None)
    result = run_gate("check", "fresh", "--policy", policy, "--store", tmp_path / "gate.sqlite", "--json")
    verdict = json.loads(result.stdout)
    interval = 60  # examples/simulate.yaml
    assert parse_time(verdict["evaluated_at"]) % interval == 0, verdict["evaluated_at"]
    assert verdict["deployed_at"] == verdict["evaluated_at"]  # the first check is the deploy


def test_a_source_that_cannot_be_opened_is_recorded_as_an_error(tmp_path):
    """Issue 14.1: as the Lambda did, the CLI records the error of a source it cannot open."""
    from gate.store import SqliteStore

    policy = write_policy(tmp_path, {**REPLAY, "source": {"type": "replay", "options": {"case": str(tmp_path / "gone")}}})
    store = tmp_path / "gate.sqlite"
    one_error_line(run_gate("check", "rel", "--policy", policy, "--store", store), "case folder not found")
    recorded = SqliteStore(store).evaluations("rel")
    assert [r["verdict"] for r in recorded] == ["error"] and "case folder not found" in recorded[0]["reason"]


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


# -- the deploy time: bad values, the future, re-deploys ------------------------------------------

def test_a_deploy_time_without_a_zone_is_refused_naming_the_option(tmp_path):
    """Issue 17.5: `2026-12-01T09:30:00` used to be read as UTC; from a machine hours off UTC the
    window moved onto another canary's minutes."""
    policy = simulate_policy(tmp_path, "healthy", None)
    naive = iso(int(time.time()) - 600).removesuffix("Z")
    for value in (naive, naive[:10]):
        result = run_gate("check", "rel", "--policy", policy, "--deployed-at", value, "--store", tmp_path / "g.sqlite")
        one_error_line(result, "--deployed-at", "has no time zone", "add Z for UTC")
    assert run_gate("check", "rel", "--policy", policy, "--deployed-at", naive + "+00:00",
                    "--store", tmp_path / "g.sqlite").returncode == 3  # with its zone: judged (10 min in)


def test_a_first_check_of_a_deploy_whose_window_is_over_needs_examine_past(tmp_path):
    """Issue 17.5: a first registration whose whole lifetime is over would be judged at once, final,
    on minutes nobody watched; only on purpose."""
    deployed = (int(time.time()) // 60 - 180) * 60  # the 1 h lifetime ended two hours ago
    policy = simulate_policy(tmp_path, "healthy", deployed)
    check = ["check", "rel", "--policy", policy, "--deployed-at", iso(deployed), "--store", tmp_path / "g.sqlite"]
    one_error_line(run_gate(*check), "--deployed-at", "window", "ended", "--examine-past")
    assert run_gate(*check, "--examine-past").returncode == 0


def test_another_policy_for_a_running_canary_is_refused(tmp_path):
    """Issue 17.6: a policy edited mid-canary (a shorter lifetime) used to judge the same deploy."""
    deployed = (int(time.time()) // 60 - 30) * 60
    policy = simulate_policy(tmp_path, "healthy", deployed)
    check = ["check", "rel", "--policy", policy, "--deployed-at", iso(deployed), "--store", tmp_path / "g.sqlite"]
    assert run_gate(*check).returncode in (0, 3)
    one_error_line(run_gate(*check, "--lifetime", "20m"), "differs from the policy release 'rel' was registered with")
    edited = simulate_policy(tmp_path, "bad_version", deployed)
    one_error_line(run_gate("check", "rel", "--policy", edited, "--store", tmp_path / "g.sqlite"), "differs")


def test_another_group_for_a_judged_canary_is_refused(tmp_path):
    """A later check naming another canary group under the same release and deploy once judged
    that group and recorded its verdict in the first group's history: one deploy, one pair of groups."""
    deployed = (int(time.time()) // 60 - 30) * 60
    policy = simulate_policy(tmp_path, "healthy", deployed)
    check = ["check", "rel", "--policy", policy, "--deployed-at", iso(deployed), "--store", tmp_path / "g.sqlite"]
    assert run_gate(*check).returncode in (0, 3)
    one_error_line(run_gate(*check, "--canary", "web-other"),
                   "canary scope 'web-other' differs from the one release 'rel' was registered with")
    one_error_line(run_gate(*check, "--baseline", "prod-other"), "baseline scope 'prod-other' differs")
    assert run_gate(*check).returncode in (0, 3)  # its own groups still judge it


def test_a_damaged_store_row_is_one_line_naming_it(tmp_path):
    import sqlite3

    policy = simulate_policy(tmp_path, "healthy", None)
    for column, value in (("deployed_at", "'soon'"), ("info", "'{'")):
        store = tmp_path / f"{column}.sqlite"
        assert run_gate("check", "rel", "--policy", policy, "--store", store).returncode == 3
        with sqlite3.connect(store) as db:
            db.execute(f"UPDATE releases SET {column} = {value}")  # noqa: S608 - the test's own values
        result = run_gate("check", "rel", "--policy", policy, "--store", store)
        one_error_line(result, "release 'rel' is damaged", column if column == "deployed_at" else "its info")
        assert "internal error" not in result.stderr


def test_a_bad_deployed_at_is_one_line_naming_the_option(tmp_path):
    policy = simulate_policy(tmp_path, "healthy", None)
    future = iso(int(time.time()) + 3600)
    for value in ("nan", "yesterday", "2017-13-45", "99999999999999999999", "", future):
        result = run_gate("check", "rel", "--policy", policy, "--deployed-at", value, "--store", tmp_path / "g.sqlite")
        one_error_line(result, "--deployed-at")
        assert "internal error" not in result.stderr
        assert ("in the future" in result.stderr) == (value == future)


def test_a_redeployed_release_is_judged_on_its_new_window_never_on_the_old_one(tmp_path):
    store = tmp_path / "gate.sqlite"
    policy = simulate_policy(tmp_path, "healthy", None)
    first = (int(time.time()) // 60 - 200) * 60  # its 1 h window ended long ago
    check = ["check", "web-1.2", "--policy", policy, "--store", store, "--json"]
    passed = run_gate(*check, "--deployed-at", iso(first), "--examine-past")
    assert passed.returncode == 0, passed.stderr
    # The same deploy again: the same window, the same verdict.
    again = run_gate(*check, "--deployed-at", str(first))
    assert again.returncode == 0 and json.loads(again.stdout)["deployed_at"] == iso(first)
    # No deploy time, long after the window: refused, saying how to judge a new deploy.
    one_error_line(run_gate(*check), "window ended", "--deployed-at", "web-1.2")
    # A deploy time inside the registered window: refused.
    one_error_line(run_gate(*check, "--deployed-at", iso(first + 600)), "contradicts", iso(first))
    # A new deploy of the same release: judged from its own start (10 min of data: not yet decided).
    second = (int(time.time()) // 60 - 10) * 60
    fresh = run_gate(*check, "--deployed-at", iso(second))
    assert fresh.returncode == 3, fresh.stdout + fresh.stderr
    verdict = json.loads(fresh.stdout)
    assert verdict["deployed_at"] == iso(second) and verdict["verdict"] == "inconclusive"
    # ...and the next check without a deploy time follows the new deploy.
    follow = run_gate(*check)
    assert follow.returncode == 3 and json.loads(follow.stdout)["deployed_at"] == iso(second)
    from gate.store import SqliteStore

    (redeploy,) = [e for e in SqliteStore(store).events("web-1.2") if e["kind"] == "redeploy"]
    assert redeploy["detail"]["previous_deployed_at"] == first and redeploy["detail"]["deployed_at"] == second


# -- release names -------------------------------------------------------------------------------

BAD_RELEASES = ["", "a\nb", "web\r\n[Pipeline] echo forged", "\x1b[2Jweb", "x" * 5000, "tab\there", " web"]


def test_bad_release_names_are_refused_by_every_command(tmp_path):
    policy = simulate_policy(tmp_path, "healthy", None)
    store = tmp_path / "gate.sqlite"
    for name in BAD_RELEASES:
        result = run_gate("check", name, "--policy", policy, "--store", store)
        one_error_line(result, "release")
        assert "\x1b" not in result.stderr and len(result.stderr) < 400
    for command in (["history"], ["report"], ["promote", "--dry-run", "--production-asg", "p", "--canary-asg", "c"],
                    ["rollback", "--dry-run", "--canary-asg", "c"]):
        result = run_gate(command[0], "a\nb", *command[1:], "--store", store)
        one_error_line(result, "release 'a\\nb'", "printable")
    assert not store.exists() or SqliteStore_releases(store) == []


def SqliteStore_releases(path):  # noqa: N802
    import sqlite3

    return sqlite3.connect(path).execute("SELECT release FROM releases").fetchall()


def test_a_release_name_with_spaces_slashes_and_markup_is_judged_and_shown_verbatim(tmp_path):
    deployed = (int(time.time()) // 60 - 90) * 60
    policy = simulate_policy(tmp_path, "healthy", deployed)
    result = run_gate("check", "web/[bold]1.2 é", "--policy", policy, "--deployed-at", str(deployed),
                      "--store", tmp_path / "gate.sqlite", "--examine-past", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "web/[bold]1.2 é" in result.stdout


def test_report_files_of_different_releases_never_collide():
    from gate.release import file_name as safe_name

    names = ["web/1.2", "web_1.2", "web 1.2", "web:1.2", "../web_1.2", "x" * 200, "x" * 199 + "y"]
    files = [safe_name(n) for n in names]
    assert len(set(files)) == len(names), files
    assert safe_name("web_1.2") == "web_1.2"  # a name that needs no change keeps it
    assert all("/" not in f and ".." not in f and len(f) <= 150 for f in files)


# -- GATE_LOG_LEVEL ------------------------------------------------------------------------------

def test_gate_log_level_shows_the_gates_debug_lines_on_stderr(corpus, tmp_path):
    """GATE_LOG_LEVEL=DEBUG shows e.g. Datadog's rate-limit headroom; by default nothing, and
    never the keys."""
    from tests.test_reliability_faults import AA, API_KEY, APP_KEY, check, live

    with live(corpus, AA) as fake:
        quiet = check(fake, tmp_path, store=tmp_path / "q.sqlite")
        loud = check(fake, tmp_path, store=tmp_path / "l.sqlite", env={"GATE_LOG_LEVEL": "debug"})
        odd = check(fake, tmp_path, store=tmp_path / "o.sqlite", env={"GATE_LOG_LEVEL": "chatty"})
    assert quiet.returncode == loud.returncode == odd.returncode, loud.stderr
    assert quiet.returncode in (0, 1, 3)
    assert "Datadog rate limit" not in quiet.stderr
    assert "DEBUG gate.sources.datadog: Datadog rate limit" in loud.stderr and "requests left" in loud.stderr
    assert API_KEY not in loud.stderr and APP_KEY not in loud.stderr
    assert "GATE_LOG_LEVEL='chatty'" in odd.stderr and "Datadog rate limit" not in odd.stderr


# -- issue 15: inputs that passed a canary the gate could not judge -----------------------------


def replay_policy(tmp_path, corpus, name):
    case = corpus / name
    policy = write_policy(tmp_path, {**REPLAY, "source": {"type": "replay", "options": {"case": str(case)}}})
    return policy, json.loads((case / "case.json").read_text())["deploy_at"]


def test_a_release_named_like_an_option_is_refused_even_after_double_dash(tmp_path, corpus):
    """`--` makes `--help` the release (as the Jenkins step now passes it): refused, not judged."""
    policy, deployed = replay_policy(tmp_path, corpus, "k1m-aa-000")  # a canary that passes
    for name in ("--help", "-v"):
        result = run_gate("check", "--policy", policy, "--deployed-at", deployed, "--store", tmp_path / "g.db",
                          "--json", "--", name)
        one_error_line(result, f"release {name!r}: must not start with '-'")


def test_a_canary_compared_with_itself_is_refused_before_any_fetch(tmp_path, corpus):
    """A canary with CPU +52% passed when its baseline scope was its own (`--baseline canary`)."""
    policy, deployed = replay_policy(tmp_path, corpus, "k1m-cpu-shift-060")
    result = run_gate("check", "web-1", "--policy", policy, "--deployed-at", deployed, "--store", tmp_path / "g.db",
                      "--baseline", "canary", "--json")
    one_error_line(result, "canary scope 'canary' and baseline scope 'canary' are the same group")


@pytest.mark.parametrize("canary, baseline, problem", [
    ("version:{release}", "version:{release}", "are the same group"),
    ("asg:web-1", "ASG:WEB-1", "are the same group"),  # Datadog tags know no case
    ("env:prod,version:2", "env:prod", "the baseline's scope contains the canary's"),
    ("env:prod", "env:prod,version:2", "the canary's scope contains the baseline's"),
])
def test_scopes_that_render_equal_or_contain_each_other_are_refused(canary, baseline, problem):
    from gate.analysis import Analysis
    from gate.errors import PolicyError
    from gate.policy import parse_policy

    policy = parse_policy({**SIMULATE, "canary": {"scope": canary}, "baseline": {"scope": baseline}})
    with pytest.raises(PolicyError, match=problem):
        Analysis(policy, source=None, release="2", deployed_at=0)  # refused before it could fetch


def test_distinct_scopes_are_judged():
    from gate.analysis import Analysis
    from gate.policy import parse_policy

    for canary, baseline in [("version:2", "version:1"), ("env:prod,version:2", "env:prod,version:1")]:
        policy = parse_policy({**SIMULATE, "canary": {"scope": canary}, "baseline": {"scope": baseline}})
        assert Analysis(policy, source=None, release="2", deployed_at=0).baseline == baseline


@pytest.mark.parametrize("args", [
    ("check", "--help", "--policy", "p.yaml", "web-1"),
    ("check", "web-1", "--policy", "p.yaml", "--help"),
    ("rollout", "--help", "--policy", "p.yaml", "web-1"),
    ("promote", "--help", "web-1"),
    ("policy", "validate", "--help", "p.yaml"),
    ("--help", "check", "web-1"),
], ids=lambda args: " ".join(args))
def test_help_asked_with_other_arguments_is_a_usage_error_not_exit_0(args):
    """Issue 22: `gate check --help --policy P ...` printed the help and exited 0, which a script
    that put the release where an option is read took for a pass."""
    result = run_gate(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    said = " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.stderr).split())  # the message as the box wraps it
    assert "would only print the help and exit 0, which reads as a pass: ask for it alone" in said, said
    assert "Usage:" not in result.stdout  # no help printed as if asked


@pytest.mark.parametrize("args", [("check", "--help"), ("rollout", "--help"), ("--help",),
                                  ("policy", "validate", "--help")])
def test_help_asked_alone_is_help_and_exit_0(args):
    result = run_gate(*args)
    assert result.returncode == 0, result.stderr
    assert "Usage: gate" in result.stdout


def check_that_crashes(monkeypatch, capsys, tmp_path, debug: str | None):
    """`gate check` in this process, with a bug in a step of the look (the failing metrics' links):
    what the operator sees, and what the store kept."""
    import gate.evidence
    from gate import cli
    from gate.store import SqliteStore

    def bug(*args, **kwargs):
        return {}["links"]

    monkeypatch.setattr(gate.evidence, "with_links", bug)
    if debug is None:
        monkeypatch.delenv("GATE_DEBUG", raising=False)
    else:
        monkeypatch.setenv("GATE_DEBUG", debug)
    deployed = (int(time.time()) // 60 - 90) * 60
    policy = simulate_policy(tmp_path, "healthy", deployed)
    store = tmp_path / "gate.sqlite"
    monkeypatch.setattr("sys.argv", ["gate", "check", "rel", "--policy", str(policy), "--deployed-at", iso(deployed),
                                     "--store", str(store), "--examine-past"])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    (recorded,) = SqliteStore(store).evaluations("rel")
    return exit_.value.code, capsys.readouterr(), recorded


def test_a_crash_while_judging_shows_its_traceback_with_gate_debug(monkeypatch, capsys, tmp_path):
    """Review: a crash while judging is a CrashError (could not judge, exit 4, recorded), which the
    entry point took for a named fault: GATE_DEBUG showed no traceback, nothing said where the bug was."""
    code, shown, recorded = check_that_crashes(monkeypatch, capsys, tmp_path, "1")
    assert code == 4 and shown.out == "" and recorded["verdict"] == "error"
    assert "Traceback (most recent call last)" in shown.err and "KeyError: 'links'" in shown.err
    assert "in bug" in shown.err  # the bug's own frame, not only the CrashError's
    assert shown.err.strip().splitlines()[-1] == ("error: could not judge: the gate failed at this look (KeyError: "
                                                  "'links') (set GATE_DEBUG=1 for the traceback)")


def test_a_crash_while_judging_is_one_line_without_gate_debug(monkeypatch, capsys, tmp_path):
    code, shown, recorded = check_that_crashes(monkeypatch, capsys, tmp_path, None)
    assert code == 4 and recorded["verdict"] == "error" and "Traceback" not in shown.err
    assert shown.err.strip().splitlines() == ["error: could not judge: the gate failed at this look (KeyError: "
                                              "'links') (set GATE_DEBUG=1 for the traceback)"]
