"""Terminal output: readable at 80 columns, the verdict, why, and the numbers per metric."""

from __future__ import annotations

from rich.console import Console

from gate.console import WatchProgress, print_verdict
from gate.verdict import MetricResult, Verdict

VERDICT = Verdict(
    "web-1.2.3", "fail", "latency: canary mean +42.0% vs baseline (tolerance 10%): beyond tolerance",
    1_700_000_000, 1_700_000_960, True,
    [
        MetricResult("latency_p99_checkout", "fail", "canary mean +42.0% vs baseline (tolerance 10%) over 16 "
                     "points: shown beyond tolerance", "margin-test", canary=412.5, baseline=290.49, expected=301.2,
                     effect=0.42, interval=(0.3142, 0.5311), tolerance=0.1, critical=True),
        MetricResult("errors", "inconclusive", "canary rate +19.0% vs baseline (tolerance 50%): not yet conclusive",
                     "interval-straddles-tolerance", canary=0.00543, baseline=0.00457, expected=0.0049,
                     effect=0.19, interval=(-0.87, 1.249), tolerance=0.5),
        MetricResult("cpu", "pass", "canary mean -0.2% vs baseline: shown within tolerance", "margin-test",
                     canary=44.05, baseline=44.13, effect=-0.002, interval=(-0.015, 0.012), tolerance=0.1),
    ],
    notes=["memory: 1 point held out: fleet-wide anomaly"],
)


def rendered(verdict: Verdict, width: int = 80) -> str:
    console = Console(width=width, record=True, force_terminal=False, color_system=None)
    print_verdict(verdict, console)
    return console.export_text()


def test_fits_80_columns_without_breaking_numbers():
    short = Verdict(**{**VERDICT.__dict__, "metrics": [
        MetricResult(**{**m.__dict__, "name": m.name.replace("_p99_checkout", "")}) for m in VERDICT.metrics]})
    text = rendered(short)
    lines = text.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80
    assert lines[0].startswith(" FAIL  release web-1.2.3")
    assert "16 min after the deploy" in lines[0]
    assert "why: latency: canary mean +42.0%" in text
    row = next(line for line in lines if line.startswith("latency "))
    for cell in ("✗ fail", "412.5", "290.5", "301.2", "+42.0%", "[+31.4%, +53.1%]", "10%"):
        assert cell in row, (cell, row)
    errors = next(line for line in lines if line.startswith("errors "))
    for cell in ("? inconclusive", "0.00543", "[-87.0%, +125%]", "50%"):
        assert cell in errors, (cell, errors)
    # each metric's reason on its own line(s), with its rule, and the critical flag
    assert "✗ latency" in text and "(critical) canary mean +42.0%" in text
    assert "[margin-test]" in text and "note: memory: 1 point held out" in text


def test_long_names_or_a_narrow_terminal_get_a_few_lines_per_metric():
    for width in (80, 60):
        text = rendered(VERDICT, width=width)  # a 20-character metric name: the table would not fit
        assert max(len(line.rstrip()) for line in text.splitlines()) <= width
        for cell in ("✗ latency_p99_checkout  fail (critical)", "canary 412.5 · baseline 290.5 · expected 301.2",
                     "effect +42.0% [+31.4%, +53.1%] · tolerance 10%", "0.00543", "44.05", "[margin-test]"):
            assert cell in text, (width, cell)


def test_no_expected_column_when_nothing_was_expected():
    bare = Verdict("r", "pass", "ok", 0, 600, True,
                   [MetricResult("cpu", "pass", "within", canary=1.0, baseline=1.0, effect=0.0,
                                 interval=(-0.01, 0.01), tolerance=0.1)])
    text = rendered(bare)
    assert "expect" not in text and " PASS  release r" in text


def test_watch_progress_in_a_log_prints_one_line_per_look():
    console = Console(width=100, record=True, force_terminal=False, color_system=None)
    looks = [Verdict("r", "inconclusive", "not enough evidence yet for cpu", 0, 60 * i, False) for i in (1, 2)]
    with WatchProgress(console, deployed_at=0, end_at=3600, interval=60) as progress:
        for v in looks:
            progress.update(v)
    lines = console.export_text().splitlines()
    assert lines == ["look 1 at 1/60 min: inconclusive: not enough evidence yet for cpu",
                     "look 2 at 2/60 min: inconclusive: not enough evidence yet for cpu"]


def test_watch_progress_on_a_terminal_draws_a_bar():
    console = Console(width=100, record=True, force_terminal=True, color_system=None)
    progress = WatchProgress(console, deployed_at=0, end_at=3600, interval=60)
    progress.update(Verdict("r", "inconclusive", "waiting for cpu", 0, 60, False))
    console.print(progress)
    text = console.export_text()
    assert "60/60 min, look 1" in text and "inconclusive: waiting for cpu" in text


def test_the_terminal_says_what_decided_the_groups_and_the_policy():
    """The same content as the report's summary: deciding metrics, groups, policy."""
    from gate.demo import demo_policy

    policy = demo_policy("healthy", 7)
    console = Console(width=100, record=True, force_terminal=False, color_system=None)
    print_verdict(VERDICT, console, policy=policy, canary="version:1.2.3", baseline="version:stable")
    lines = console.export_text().splitlines()
    assert "decided by: latency_p99_checkout" in lines
    assert "groups: canary 'version:1.2.3' vs baseline 'version:stable'" in lines
    (line,) = [line for line in lines if line.startswith("policy: ")]
    for part in ("demo-shop", "source simulate", "every 1 min", "lifetime 60 min", "alpha 0.01", "undecided: fail"):
        assert part in line, (part, line)
    assert max(len(line.rstrip()) for line in lines) <= 100


def test_the_groups_come_from_the_policy_and_a_pass_is_decided_by_all_metrics():
    from gate.demo import demo_policy

    policy = demo_policy("healthy", 7).model_copy(update={"baseline": None})
    passed = Verdict("r", "pass", "ok", 0, 600, True, [MetricResult("cpu", "pass", "within", tolerance=0.1)])
    console = Console(width=120, record=True, force_terminal=False, color_system=None)
    print_verdict(passed, console, policy=policy)
    text = console.export_text()
    assert "decided by: all judged metrics" in text
    assert "groups: canary 'canary' vs its own history (no baseline)" in text


def test_a_verdict_that_is_not_final_names_no_deciding_metrics():
    from dataclasses import replace

    waiting = replace(VERDICT, verdict="inconclusive", final=False, reason="waiting for evidence")
    console = Console(width=120, record=True, force_terminal=False, color_system=None)
    print_verdict(waiting, console, canary="version:1.2.3", baseline="version:stable")
    text = console.export_text()
    assert "decided by" not in text and "(not final)" in text
    assert "groups: canary 'version:1.2.3' vs baseline 'version:stable'" in text


def test_check_prints_the_context_on_the_terminal(tmp_path):
    import re
    import time

    import yaml

    from tests.conftest import ROOT, run_gate

    deployed = (int(time.time()) // 60 - 90) * 60
    data = yaml.safe_load((ROOT / "examples" / "simulate.yaml").read_text())
    data["source"]["options"] = {"scenario": "bad_version", "seed": 3, "deployed_at": deployed}
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(data))
    result = run_gate("check", "rel", "--policy", policy, "--deployed-at", str(deployed),
                      "--store", tmp_path / "gate.sqlite", "--examine-past", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    text = " ".join(result.stdout.split())
    assert re.search(r"decided by: [a-z, ]*latency", text), text
    assert "groups: canary 'canary' vs baseline 'baseline'" in text
    assert "policy: demo-shop (source simulate" in text


# -- --help at 80 columns (a CI log) ------------------------------------------------------------

def help_pages() -> dict[str, str]:
    from typer.testing import CliRunner

    from gate.cli import app

    runner = CliRunner()
    commands = [[], ["check"], ["rollout"], ["replay"], ["backtest"], ["plan"], ["demo"], ["history"], ["report"],
                ["promote"], ["rollback"], ["policy"], ["policy", "schema"], ["policy", "validate"]]
    pages = {}
    for command in commands:
        result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"})
        assert result.exit_code == 0, result.output
        pages[" ".join(command) or "gate"] = result.output
    return pages


def test_help_texts_break_lines_only_where_80_columns_force_it():
    """A line of a command's description ends where the next word would not fit, never at the
    docstring's own line break (which cut sentences in two at 80 columns)."""
    for name, page in help_pages().items():
        lines = page.splitlines()
        assert max(len(line.rstrip()) for line in lines) <= 80, name
        description = lines[lines.index(next(line for line in lines if "Usage:" in line)) + 1:]
        description = description[:next(i for i, line in enumerate(description) if line.startswith("╭"))]
        for line, following in zip(description, description[1:]):
            if line.strip() and following.strip():
                room = 80 - 1 - len(line.rstrip())  # rich keeps a column of padding on the right
                next_word = following.split()[0]
                assert len(next_word) + 1 > room, (name, line, following)
