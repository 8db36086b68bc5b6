"""Two ways a regressed canary passed through a count's comparison (fail-open review, reproduced).

1. One baseline minute that served almost nothing decided the window: the canary's expected
   events were the baseline's scaled by canary / baseline volume minute by minute, so 1 request
   with 1 error at one minute (x1000) became ~1500 expected canary errors and a doubled error
   rate passed. Each minute's baseline rate is now weighed by what it knows (count._expected_alike).
2. A count without a denominator whose canary reads all zeros (its series missing) passed: the
   implausibly-clean check asked for a denominator. It now compares the canary with its
   baseline's own events point by point (history-only, a count without a denominator has no
   expectation that follows the day: left open, docs/judge.md).

Their review's two findings: a history at 10x today's error rate, pulled into the quiet
minutes' expectation, passed a 2x error rate; and errors dropping in both groups together
(a batch job ending) failed a clean canary held to the window's pooled rate."""

from __future__ import annotations

import numpy as np
import pytest

from gate.analysis import Analysis
from gate.series import Frame
from tests.test_cli_replay import edited_case
from tests.test_judge import DAY, DEPLOY, HISTORY_DAYS, STEP, MemorySource, _host, _policy, _run

RATIO = [{"name": "errors", "kind": "count", "denominator": "requests", "tolerance": 0.5},
         {"name": "requests", "kind": "count", "bad_direction": "none", "tolerance": None}]


def _doubled_errors_with_one_quiet_baseline_minute(seed: int, errors_then: float, error_rate=0.02):
    """A canary at `error_rate` (2x the baseline's 1%) whose baseline served 1 request with
    `errors_then` errors 15 minutes after the deploy."""
    rng = np.random.default_rng(seed)
    t = np.arange(DEPLOY - HISTORY_DAYS * DAY, DEPLOY + 3600 + STEP, STEP, dtype=np.int64)
    load = 1 + 0.3 * np.sin(2 * np.pi * (t % DAY) / DAY)
    baseline = _host(rng, t, load)
    live = t >= DEPLOY
    canary = _host(rng, t[live], load[live], error_rate=error_rate)
    quiet = np.flatnonzero(t == DEPLOY + 15 * 60)[0]
    baseline["requests"][quiet], baseline["errors"][quiet] = 1.0, errors_then
    return Frame(STEP, t[live], canary), Frame(STEP, t, baseline)


@pytest.mark.parametrize("seed", [1, 3, 4])
def test_one_low_traffic_baseline_minute_does_not_pass_a_doubled_error_rate(seed):
    canary, baseline = _doubled_errors_with_one_quiet_baseline_minute(seed, errors_then=1.0)
    verdict, _ = _run(_policy(metrics=RATIO), canary, baseline)
    errors = verdict.metrics[0]
    assert verdict.verdict == "fail", verdict.reason
    assert errors.rule == "rate-beyond-tolerance", errors.reason
    low, high = errors.interval
    assert low <= errors.effect <= high, (errors.effect, errors.interval)  # the interval holds its estimate


@pytest.mark.parametrize("errors_then", [0.0, 1.0])
def test_one_low_traffic_baseline_minute_does_not_fail_a_clean_canary(errors_then):
    canary, baseline = _doubled_errors_with_one_quiet_baseline_minute(2, errors_then, error_rate=0.01)
    verdict, _ = _run(_policy(metrics=RATIO), canary, baseline)
    assert verdict.verdict == "pass", verdict.reason


def test_the_real_regression_with_one_quiet_baseline_minute_still_fails(corpus, tmp_path):
    """k1m-error-rate-010 (errors x2, real traffic: ~2500 baseline requests a minute) fails at
    +51 min; with its baseline's minute +7 at 1 request and 1 error it passed at the end
    ("not shown worse", +88.7% at a 50% tolerance, interval [+13%, +42%])."""
    from gate.analysis import replay_case

    def quiet_minute(row, deploy):
        if (int(row["timestamp"]) - deploy) // 60 == 7 and row["scope"] == "baseline":
            row["requests"], row["errors"] = "1", "1"

    verdict = replay_case(edited_case(corpus / "k1m-error-rate-010", tmp_path / "quiet", quiet_minute)).verdict
    errors = next(m for m in verdict.metrics if m.name == "errors")
    assert verdict.verdict == "fail", verdict.reason
    low, high = errors.interval
    assert low <= errors.effect <= high, (errors.effect, errors.interval)


NO_DENOMINATOR = [{"name": "cpu", "kind": "gauge", "tolerance": 0.1},
                  {"name": "errors", "kind": "count", "tolerance": 0.5}]


def _errors_without_requests(seed: int, baseline_rate: float, canary_errors: float | None = 0.0):
    """A baseline with ~`baseline_rate` errors a minute and no requests series; the canary's
    errors read `canary_errors` at every point after the deploy (None: as the baseline's)."""
    rng = np.random.default_rng(seed)
    t = np.arange(DEPLOY - HISTORY_DAYS * DAY, DEPLOY + 3600 + STEP, STEP, dtype=np.int64)
    load = 1 + 0.3 * np.sin(2 * np.pi * (t % DAY) / DAY)
    live = t >= DEPLOY
    baseline = {"cpu": 40 * load * (1 + rng.normal(0, 0.03, len(t))),
                "errors": rng.poisson(baseline_rate * load).astype(float)}
    canary = {"cpu": 40 * load[live] * (1 + rng.normal(0, 0.03, live.sum())),
              "errors": rng.poisson(baseline_rate * load[live]).astype(float)}
    if canary_errors is not None:
        canary["errors"][:] = canary_errors
    return t, live, Frame(STEP, t[live], canary), Frame(STEP, t, baseline)


def test_a_count_without_a_denominator_whose_canary_reads_zero_is_not_passed():
    _, _, canary, baseline = _errors_without_requests(1, baseline_rate=20.0)
    verdict, _ = _run(_policy(metrics=NO_DENOMINATOR), canary, baseline)
    errors = next(m for m in verdict.metrics if m.name == "errors")
    assert verdict.verdict != "pass", verdict.reason
    assert errors.rule == "implausibly-clean" and "series missing" in errors.reason, errors.reason


def test_a_count_without_a_denominator_that_stops_partway_is_not_passed():
    _, _, canary, baseline = _errors_without_requests(2, baseline_rate=10.0, canary_errors=None)
    canary.values["errors"][20:] = 0.0
    verdict, _ = _run(_policy(metrics=NO_DENOMINATOR), canary, baseline)
    errors = next(m for m in verdict.metrics if m.name == "errors")
    assert verdict.verdict != "pass", verdict.reason
    assert errors.rule == "implausibly-clean" and "series stop" in errors.reason, errors.reason


@pytest.mark.parametrize("seed", [1, 2])
def test_a_truly_quiet_canary_beside_a_quiet_baseline_still_passes(seed):
    """Errors a few times an hour in both groups: a canary without one is plausible, and passes."""
    _, _, canary, baseline = _errors_without_requests(seed, baseline_rate=0.03)
    verdict, _ = _run(_policy(metrics=NO_DENOMINATOR), canary, baseline)
    assert verdict.verdict == "pass", verdict.reason


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_a_history_above_todays_rate_does_not_pull_a_doubled_error_rate_within_tolerance(seed):
    """Review: the baseline at 0.1% of ~1000 requests a minute (about one error a minute), the
    canary at 0.2%, the history at 1%: the quiet minutes' expectation was pulled toward the
    history (83.5 expected errors where 60), a 2x error rate read as +44% and passed 3 of 6."""
    rng = np.random.default_rng(seed)
    t = np.arange(DEPLOY - HISTORY_DAYS * DAY, DEPLOY + 3600 + STEP, STEP, dtype=np.int64)
    live = t >= DEPLOY
    load = 1 + 0.3 * np.sin(2 * np.pi * (t % DAY) / DAY)

    def group(n: int, rate) -> dict:
        requests = rng.poisson(1000 * load[-n:]).astype(float)
        return {"errors": rng.poisson(rate * requests).astype(float), "requests": requests}

    baseline = group(len(t), np.where(live, 0.001, 0.01))
    canary = group(int(live.sum()), 0.002)
    verdict, _ = _run(_policy(metrics=RATIO), Frame(STEP, t[live], canary), Frame(STEP, t, baseline))
    assert verdict.verdict != "pass", verdict.reason


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_errors_dropping_in_both_groups_together_do_not_fail_a_clean_canary(seed):
    """Review: a count without a denominator at 30 a minute in both groups, then 0.5 a minute
    from minute 12 on (a batch job ended): held to the window's pooled rate, the clean canary's
    last 49 points "should" have had 458 errors and it failed implausibly-clean (3 of 3)."""
    metrics = [{"name": "cpu", "kind": "gauge", "tolerance": 0.1}, {"name": "errors", "kind": "count", "tolerance": 0.5}]
    rng = np.random.default_rng(seed)
    t = np.arange(DEPLOY - HISTORY_DAYS * DAY, DEPLOY + 3600 + STEP, STEP, dtype=np.int64)
    live = t >= DEPLOY
    rate = np.where(t >= DEPLOY + 12 * 60, 0.5, 30.0)
    baseline = {"cpu": 40 * (1 + rng.normal(0, 0.03, len(t))), "errors": rng.poisson(rate).astype(float)}
    canary = {"cpu": 40 * (1 + rng.normal(0, 0.03, live.sum())), "errors": rng.poisson(rate[live]).astype(float)}
    verdict, _ = _run(_policy(metrics=metrics), Frame(STEP, t[live], canary), Frame(STEP, t, baseline))
    errors = next(m for m in verdict.metrics if m.name == "errors")
    assert errors.rule != "implausibly-clean", errors.reason
