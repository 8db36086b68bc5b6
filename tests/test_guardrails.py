"""Absolute guardrails (SLOs): `max` / `min` in a metric's unit and an error budget's burn rate,
judged on synthetic canaries whose truth is known (the helpers of test_judge), through the real
Analysis loop, and end to end through `gate check` on the simulate source."""

import json

import numpy as np
import yaml

from gate import judge
from gate.series import Observations
from gate.verdict import Verdict
from tests.conftest import ROOT, run_gate
from tests.test_judge import DAY, DEPLOY, HISTORY_DAYS, STEP, _fleet, _policy, _run


def _guarded(baseline=True, tolerance=None, on_undecided="fail", **guards):
    """The test policy with guardrails on some metrics ({"latency": {"max": 130}}); `tolerance`
    replaces the relative tolerances (100: the comparison with the baseline never fails)."""
    policy = _policy(baseline=baseline)
    metrics = []
    for m in policy.model_dump()["metrics"]:
        if tolerance is not None and m["bad_direction"] != "none":
            m["tolerance"] = tolerance
        metrics.append({**m, **guards.get(m["name"], {})})
    return _policy(baseline=baseline, metrics=metrics, on_undecided=on_undecided)


def _window_mean(frame, name, minutes=60):
    live = (frame.timestamps >= DEPLOY) & (frame.timestamps <= DEPLOY + minutes * STEP)
    return float(np.mean(frame.values[name][live]))


def _metric(verdict, name):
    return next(m for m in verdict.metrics if m.name == name)


def test_a_canary_shown_above_its_max_fails_though_within_tolerance_of_the_baseline():
    canary, baseline = _fleet(21)
    canary.values["latency"][:] *= 1.06  # within the 10% tolerance of the baseline
    limit = round(_window_mean(baseline, "latency") * 1.03)  # the baseline stays below it
    verdict, at = _run(_guarded(latency={"max": limit}), canary, baseline)
    latency = _metric(verdict, "latency")
    assert verdict.verdict == "fail" and latency.rule == "breaches-slo", verdict.reason
    assert f"breaches its SLO (limit {limit} ms)" in verdict.reason
    assert latency.slo == f"max {limit} ms" and latency.canary > limit > latency.baseline
    assert at < 1


def test_one_bad_point_does_not_breach_a_limit():
    canary, baseline = _fleet(22)
    spike = DEPLOY + 10 * STEP
    canary.values["latency"][canary.timestamps == spike] *= 30
    canary.values["errors"][canary.timestamps == spike] = 0.5 * canary.values["requests"][canary.timestamps == spike]
    # (An error burst of 50% is a regression to the comparison with the baseline: blind it.)
    verdict, _ = _run(_guarded(tolerance=100, latency={"max": round(_window_mean(baseline, "latency") * 1.12)},
                               errors={"max": 0.02}), canary, baseline)
    assert verdict.verdict == "pass", verdict.reason
    assert all(m.rule != "breaches-slo" for m in verdict.metrics)


def test_an_error_ratio_shown_above_its_max_fails_on_the_ratio():
    canary, baseline = _fleet(23)
    rng = np.random.default_rng(23)
    canary.values["errors"][:] = rng.poisson(0.025 * canary.values["requests"])  # 2.5% vs the baseline's 1%
    verdict, _ = _run(_guarded(tolerance=100, errors={"max": 0.02}), canary, baseline)
    errors = _metric(verdict, "errors")
    assert verdict.verdict == "fail" and errors.rule == "breaches-slo", verdict.reason
    assert "breaches its SLO (limit 2%)" in errors.reason and "error ratio 2.5" in errors.reason


def test_a_min_is_a_floor():
    canary, baseline = _fleet(24)
    floor = round(_window_mean(baseline, "cpu") * 1.2)  # the canary (as the baseline) runs below it...
    baseline.values["cpu"][baseline.timestamps >= DEPLOY] *= 1.4  # ...while the baseline does not
    verdict, _ = _run(_guarded(tolerance=100, cpu={"bad_direction": "either", "min": floor}), canary, baseline)
    cpu = _metric(verdict, "cpu")
    assert verdict.verdict == "fail" and cpu.rule == "breaches-slo", verdict.reason
    assert f"floor {floor}" in cpu.reason and "shown below it" in cpu.reason


def test_both_groups_over_the_limit_is_a_fleet_incident_inconclusive_not_a_fail():
    canary, baseline = _fleet(25)
    limit = round(_window_mean(baseline, "latency") * 1.2)
    for frame in (canary, baseline):  # the whole fleet is slow from the deploy on
        frame.values["latency"][frame.timestamps >= DEPLOY] *= 1.5
    policy = _guarded(latency={"max": limit}, on_undecided="inconclusive")
    verdict, _ = _run(policy, canary, baseline)
    latency = _metric(verdict, "latency")
    assert verdict.verdict == "inconclusive", verdict.reason
    assert latency.rule == "fleet-breaches-slo"
    assert f"both groups breach its SLO (limit {limit} ms)" in verdict.reason
    assert "not promoted" in verdict.reason

    # Mid-lifetime the verdict's reason is the incident, not "waiting for evidence".
    history, window = _observations(canary, baseline, DEPLOY + 20 * STEP)
    early = judge.evaluate(policy, judge.learn(policy, history, DEPLOY), window, DEPLOY, DEPLOY + 20 * STEP)
    assert early.verdict == "inconclusive" and early.reason.startswith("an SLO breach the release is not blamed for")


def test_a_canary_worse_than_its_baseline_still_fails_during_a_fleet_incident():
    canary, baseline = _fleet(26)
    limit = round(_window_mean(baseline, "latency") * 1.2)
    for frame, factor in ((canary, 2.0), (baseline, 1.5)):
        frame.values["latency"][frame.timestamps >= DEPLOY] *= factor
    verdict, _ = _run(_guarded(latency={"max": limit}), canary, baseline)
    assert verdict.verdict == "fail" and _metric(verdict, "latency").rule == "mean-beyond-tolerance", verdict.reason


def test_a_pass_waits_while_the_canary_sits_above_its_limit_unshown():
    canary, baseline = _fleet(27)
    # Above it from the first checkpoint (30 min) on, by far less than its noise can show.
    limit = _window_mean(canary, "latency", minutes=30) * 0.999
    verdict, _ = _run(_guarded(latency={"max": limit}), canary, baseline)
    latency = _metric(verdict, "latency")
    assert verdict.verdict == "fail" and "undecided" in verdict.reason, verdict.reason  # on_undecided: fail
    assert latency.verdict == "inconclusive" and latency.rule == "at-slo-limit"


def _observations(canary, baseline, now):
    history = Observations(canary.between(0, DEPLOY - 1), baseline.between(0, DEPLOY - 1))
    window = Observations(canary.between(DEPLOY, now), baseline.between(DEPLOY, now))
    return history, window


def _burn_policy():
    # Objective 99%: a 1% budget; burn rate 2 fails above a 2% error ratio (the baseline runs at 1%).
    return _guarded(tolerance=100, errors={"slo": {"objective": 0.99, "burn_rate": 2}})


def test_a_canary_burning_its_error_budget_fast_fails():
    canary, baseline = _fleet(28)
    rng = np.random.default_rng(28)
    canary.values["errors"][:] = rng.poisson(0.035 * canary.values["requests"])
    verdict, _ = _run(_burn_policy(), canary, baseline)
    errors = _metric(verdict, "errors")
    assert verdict.verdict == "fail" and errors.rule == "burns-error-budget", verdict.reason
    assert "burns its error budget faster than its SLO allows (limit 2x the budget of objective 99%)" in errors.reason
    assert errors.slo == "burn < 2x (99%)"


def test_a_burn_that_has_stopped_does_not_fail_but_one_still_going_does():
    canary, baseline = _fleet(29)
    rng = np.random.default_rng(29)
    live = canary.timestamps >= DEPLOY
    burst = live & (canary.timestamps < DEPLOY + 12 * STEP)  # 10% errors for the first 12 minutes
    canary.values["errors"][burst] = rng.poisson(0.10 * canary.values["requests"][burst])
    policy = _burn_policy()
    now = DEPLOY + 30 * STEP  # long window: 30 min at ~4.6% (shown); short window: the last 5 min at 1%
    history, window = _observations(canary, baseline, now)
    reference = judge.learn(policy, history, DEPLOY)
    ended = judge.evaluate(policy, reference, window, DEPLOY, now)
    assert _metric(ended, "errors").verdict != "fail", ended.reason

    history, window = _observations(canary, baseline, DEPLOY + 12 * STEP)
    going = judge.evaluate(policy, reference, window, DEPLOY, DEPLOY + 12 * STEP)
    assert going.verdict == "fail" and _metric(going, "errors").rule == "burns-error-budget", going.reason


def test_history_only_fails_a_breach_and_holds_one_its_history_shares():
    canary, _ = _fleet(30, canary_start=DEPLOY - HISTORY_DAYS * DAY)
    level = _window_mean(canary, "latency")
    slow = canary.timestamps >= DEPLOY
    canary.values["latency"][slow] *= 1.1  # too little for the history's tests to call a departure
    verdict, _ = _run(_guarded(baseline=False, tolerance=100, latency={"max": round(level * 1.05)}), canary, None)
    assert verdict.verdict == "fail" and _metric(verdict, "latency").rule == "breaches-slo", verdict.reason

    canary, _ = _fleet(30, canary_start=DEPLOY - HISTORY_DAYS * DAY)  # healthy, but the service runs above this limit at these hours anyway
    policy = _guarded(baseline=False, latency={"max": round(level * 0.8)}, on_undecided="inconclusive")
    verdict, _ = _run(policy, canary, None)
    latency = _metric(verdict, "latency")
    assert verdict.verdict == "inconclusive" and latency.rule == "fleet-breaches-slo", verdict.reason
    assert "so does the seasonal expectation" in latency.reason


def test_guardrails_not_set_leave_the_verdict_and_its_json_unchanged():
    canary, baseline = _fleet(31)
    canary.values["cpu"][:] *= 1.3
    plain, _ = _run(_policy(), canary, baseline)
    assert all(m.slo is None and "slo" not in m.to_dict() for m in plain.metrics)
    guarded, _ = _run(_guarded(cpu={"max": 1e6}), canary, baseline)
    assert guarded.verdict == "fail" and _metric(guarded, "cpu").to_dict()["slo"] == "max 1e+06"
    assert Verdict.from_dict(guarded.to_dict()) == guarded  # the store keeps it (history, rebuilt reports)


# -- end to end: `gate check` on the simulated service ------------------------------------------

def test_gate_check_fails_a_slow_release_on_its_latency_slo(tmp_path):
    """bad_version (latency +60%) with the comparison with the baseline made blind (tolerance 100,
    no tail test): only the guardrail can fail it, and it does; a healthy release passes it."""
    data = yaml.safe_load((ROOT / "examples" / "simulate.yaml").read_text())
    for m in data["metrics"]:
        if m["bad_direction"] != "none":
            m.update(tolerance=100, tail=False)
        if m["name"] == "latency":
            m["max"] = 250
    deployed = "2024-05-10T12:00:00Z"
    for scenario, code in (("bad_version", 1), ("healthy", 0)):
        data["source"] = {"type": "simulate", "options": {"scenario": scenario, "seed": 4, "deployed_at": deployed}}
        path = tmp_path / f"{scenario}.yaml"
        path.write_text(yaml.safe_dump(data))
        result = run_gate("check", f"rel-{scenario}", "--policy", path, "--deployed-at", deployed,
                          "--store", tmp_path / "gate.sqlite", "--json", "--examine-past")
        assert result.returncode == code, result.stdout + result.stderr
        verdict = json.loads(result.stdout)
        latency = next(m for m in verdict["metrics"] if m["name"] == "latency")
        assert latency["slo"] == "max 250 ms"
        if code:
            assert latency["rule"] == "breaches-slo" and "breaches its SLO (limit 250 ms)" in verdict["reason"]
        else:
            assert latency["verdict"] == "pass" and latency["canary"] < 250


# -- every output shows the limit ------------------------------------------------------------------

def test_the_report_console_and_junit_show_the_limit(corpus):
    from io import StringIO

    from rich.console import Console

    from gate import junit
    from gate.console import print_verdict
    from gate.analysis import replayed
    from gate.report.page import render_report
    from gate.sources.replay import load_case

    case = corpus / "k1m-aa-001"
    plain = load_case(case).policy()
    metrics = [m.model_copy(update={"max": 1e6}) if m.name == "cpu" else m for m in plain.metrics]
    verdict, window, expected, policy = replayed(case, plain.model_copy(update={"metrics": metrics}))
    cpu = _metric(verdict, "cpu")
    assert cpu.slo == "max 1e+06 percent"

    document = render_report(verdict, window, expected, policy)
    assert "<th>SLO</th>" in document and "<td>max 1e+06 percent</td>" in document
    assert 'class="slo-limit"' not in document  # far off the data: not drawn, the axis keeps the lines readable
    near = [m.model_copy(update={"max": float(cpu.canary)}) if m.name == "cpu" else m for m in plain.metrics]
    verdict, window, expected, policy = replayed(case, plain.model_copy(update={"metrics": near}))
    assert 'class="slo-limit"' in render_report(verdict, window, expected, policy)

    out = StringIO()
    print_verdict(verdict, Console(file=out, width=200), policy=policy)
    assert "slo" in out.getvalue() and f"max {float(cpu.canary):.4g} percent" in out.getvalue()
    assert f"SLO: max {float(cpu.canary):.4g} percent" in junit.report(verdict)


def test_the_guardrails_commented_in_the_examples_are_valid_once_uncommented():
    import re

    from gate.policy import policy_from_text

    for path in sorted((ROOT / "examples").glob("*.yaml")):
        text = re.sub(r"^(    )# (max|min|slo): ", r"\1\2: ", path.read_text(), flags=re.M)
        policy = policy_from_text(text, str(path))
        assert any(m.max is not None or m.slo is not None for m in policy.metrics), path.name
