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
(a batch job ending) failed a clean canary held to the window's pooled rate.

A later fail-open review: history-only, a count without a denominator whose window reads 0
passed (now held to its own days at these times of day, count._clean_against_time_of_day); and a
count's denominator reading 0 over a run of points that is not the window's latest passed at a
checkpoint (now a reads-zero doubt at every look, count._volume_reads_zero)."""

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


# ---------------------------------------------------------------- history-only, no denominator

COUNT_ALONE = [{"name": "cpu", "kind": "gauge", "tolerance": 0.1},
               {"name": "errors", "kind": "count", "tolerance": 0.5}]


def _history_only_errors(seed: int, peak: float, at_hour: float, night_share: float = 0.08,
                         incident: tuple[int, int, float] | None = None, weekend_share: float | None = None,
                         clock_shift_before: float = 0.0) -> Frame:
    """One group without a baseline: errors per minute (negative binomial, k = 5) at `peak` at
    midday and `night_share` of it from 18h to 6h, the deploy at hour `at_hour` of that day;
    `incident`: (start, end, factor) around the deploy, in seconds; `weekend_share`: the deploy's
    day and the day before (and a week before) at that share of the others; `clock_shift_before`:
    hours the local clock ran ahead before a DST change 18 hours before the deploy."""
    rng = np.random.default_rng(seed)
    t = np.arange(DEPLOY - HISTORY_DAYS * DAY, DEPLOY + 3600 + STEP, STEP, dtype=np.int64)
    hours = (t - DEPLOY) / 3600 + at_hour + np.where(t < DEPLOY - 18 * 3600, clock_shift_before, 0.0)
    daylight = np.clip(np.sin(np.pi * (hours % 24 - 6) / 12), 0, None)
    rate = peak * (night_share + (1 - night_share) * daylight)
    if incident is not None:
        start, end, factor = incident
        rate = np.where((t >= DEPLOY + start) & (t < DEPLOY + end), factor * rate, rate)
    if weekend_share is not None:
        weekend = np.isin(np.floor(hours / 24) % 7, (0, 6))
        rate = np.where(weekend, weekend_share * rate, rate)
    errors = rng.negative_binomial(5, 5 / (5 + rate)).astype(float)
    cpu = 40 * (1 + 0.3 * daylight) * (1 + rng.normal(0, 0.03, len(t)))
    return Frame(STEP, t, {"cpu": cpu, "errors": errors})


def _history_only_errors_verdict(canary: Frame):
    verdict, _ = _run(_policy(baseline=False, metrics=COUNT_ALONE), canary, None)
    return verdict, next(m for m in verdict.metrics if m.name == "errors")


@pytest.mark.parametrize("at_hour", [12, 3, 22])
def test_history_only_a_count_without_a_denominator_whose_window_reads_zero_is_not_passed(at_hour):
    """Fail-open review: no baseline group, errors without a denominator (~20 a minute at midday,
    8% of that at night) read 0 over the whole window (a dead source filled with zeros): "0 of 61
    points beyond 4 noise scales of the seasonal expectation", consistent with history, a pass at
    noon, at 3h and at 22h. Its own days at these hours predict about 80 (night) to 1000 (noon)."""
    canary = _history_only_errors(1, peak=20.0, at_hour=at_hour)
    canary.values["errors"][canary.timestamps >= DEPLOY] = 0.0
    verdict, errors = _history_only_errors_verdict(canary)
    assert verdict.verdict != "pass", verdict.reason
    assert errors.rule == "implausibly-clean" and "series missing" in errors.reason, errors.reason


def test_history_only_a_count_without_a_denominator_that_stops_partway_is_not_passed():
    canary = _history_only_errors(2, peak=20.0, at_hour=12)
    canary.values["errors"][canary.timestamps >= DEPLOY + 20 * STEP] = 0.0
    verdict, errors = _history_only_errors_verdict(canary)
    assert verdict.verdict != "pass", verdict.reason
    assert errors.rule == "implausibly-clean" and "series stop" in errors.reason, errors.reason


@pytest.mark.parametrize("at_hour", [5.0, 5.5])
@pytest.mark.parametrize("seed", [1, 2])
def test_history_only_clean_deploys_the_day_after_a_dst_change_pass(seed, at_hour):
    """Review: errors follow the local day, whose clock moved an hour 18 hours before the deploy;
    the time-of-day profile's slots are UTC's and still held the days before the change. Clean
    deploys at local 05:00 and 05:30 failed implausibly-clean ("only 9 errors where ... predicts
    119"): only a window, or a stretch to its end, at exactly 0 is held to the time of day, and
    then to the profile's lowest within an hour."""
    canary = _history_only_errors(seed, peak=20.0, at_hour=at_hour, night_share=0.01, clock_shift_before=1.0)
    verdict, errors = _history_only_errors_verdict(canary)
    assert errors.rule != "implausibly-clean", errors.reason


def test_history_only_a_dead_source_on_a_short_history_is_not_passed():
    """Fail-open review: with 2 days of history the time-of-day profile makes no claim (under
    DAYS_MIN days), and its "no claim" read as an expectation of 0: errors 0 over the whole window
    at noon, where its days have ~20 a minute, passed. The seasonal model's expectation alone."""
    canary = _history_only_errors(1, peak=20.0, at_hour=12)
    canary.values["errors"][canary.timestamps >= DEPLOY] = 0.0
    verdict, _ = _run(_policy(baseline=False, metrics=COUNT_ALONE, history=2 * DAY), canary, None)
    errors = next(m for m in verdict.metrics if m.name == "errors")
    assert verdict.verdict != "pass", verdict.reason
    assert errors.rule == "implausibly-clean", errors.reason


@pytest.mark.parametrize("seed", [1, 2])
def test_history_only_a_quiet_night_without_one_error_still_passes(seed):
    """Errors at 0.5 a minute at midday, 4% of that at night (about 1 an hour at 2h): a night
    window without one error is what chance gives, and passes."""
    canary = _history_only_errors(seed, peak=0.5, at_hour=2, night_share=0.04)
    canary.values["errors"][canary.timestamps >= DEPLOY] = 0.0
    verdict, errors = _history_only_errors_verdict(canary)
    assert verdict.verdict == "pass", verdict.reason


@pytest.mark.parametrize(("seed", "at_hour"), [(1, 22), (2, 3), (1, 12)])
def test_history_only_clean_windows_pass_beside_an_incident_at_that_hour_the_day_before(seed, at_hour):
    """The expectation must not be the history's mean (clean night deploys failed under it, the
    review of the previous attempt), nor the seasonal model alone: robust STL smooths a slot across
    days, and errors 8x for two hours at the deploy's hour the day before made clean windows
    implausibly clean (118 of 1412 synthetic ones, 0 with the days' lower quartile)."""
    canary = _history_only_errors(seed, peak=20.0, at_hour=at_hour, night_share=0.02,
                                  incident=(-DAY - 1800, -DAY + 5400, 8.0))
    verdict, errors = _history_only_errors_verdict(canary)
    assert errors.rule != "implausibly-clean", errors.reason
    assert verdict.verdict == "pass", verdict.reason


def test_history_only_a_clean_quiet_weekend_is_not_held_to_the_weekdays_errors():
    """Errors at a twentieth of the weekdays' on the deploy's day and the day before (two of the
    history's seven days at this hour): the clean weekend window is not held to a weekday's errors.
    (Whether the seasonal model, without a weekly profile under 14 days of history, lets it pass
    is the history test's business: here it could not tell, +1576% off its expectation.)"""
    canary = _history_only_errors(3, peak=20.0, at_hour=12, weekend_share=0.05)
    _, errors = _history_only_errors_verdict(canary)
    assert errors.rule != "implausibly-clean", errors.reason


# ------------------------------------------------- a denominator reading 0 over a run of points

def _requests_read_zero(seed: int, start: int, end: int, error_rate: float = 0.01):
    """A canary (at `error_rate`, the baseline at 1%) whose requests and errors read 0 from minute
    `start` to `end` (a source filling a dead agent's minutes with zeros, a canary out of the load
    balancer) while the baseline serves ~1000 requests a minute."""
    rng = np.random.default_rng(seed)
    t = np.arange(DEPLOY - HISTORY_DAYS * DAY, DEPLOY + 3600 + STEP, STEP, dtype=np.int64)
    load = 1 + 0.3 * np.sin(2 * np.pi * (t % DAY) / DAY)
    live = t >= DEPLOY
    baseline, canary = _host(rng, t, load), _host(rng, t[live], load[live], error_rate=error_rate)
    zero = (t[live] >= DEPLOY + start * STEP) & (t[live] < DEPLOY + end * STEP)
    canary["requests"][zero], canary["errors"][zero] = 0.0, 0.0
    return Frame(STEP, t[live], canary), Frame(STEP, t, baseline)


@pytest.mark.parametrize(("start", "end"), [(0, 12), (0, 20)])
@pytest.mark.parametrize("seed", [1, 2])
def test_a_canary_whose_requests_read_zero_from_the_deploy_is_not_passed_at_a_checkpoint(seed, start, end):
    """Fail-open review: requests and errors 0 over the first 12 or 20 minutes while the baseline
    served ~1000 a minute: the out-of-service rule needs a served point before the run, and the
    canary passed at minute 30, "shown within tolerance", on the 10-18 minutes it served."""
    canary, baseline = _requests_read_zero(seed, start, end)
    verdict, _ = _run(_policy(metrics=RATIO), canary, baseline)
    errors = next(m for m in verdict.metrics if m.name == "errors")
    assert verdict.verdict != "pass", verdict.reason
    assert errors.rule == "reads-zero" and "requests read 0" in errors.reason, errors.reason


@pytest.mark.parametrize(("start", "end", "minute"), [(5, 25, 30), (10, 14, 30), (16, 28, 45)])
def test_a_run_of_zero_requests_before_a_checkpoint_look_does_not_pass_it(start, end, minute):
    """Fail-open review: the out-of-service rule reads only the window's latest points. A gate
    looking at its checkpoint only (minute 30 or 45: a pipeline's one `gate check`, or the looks in
    between lost) passed a canary whose requests and errors read 0 over minutes 5-25, 10-14 or
    16-28, its coverage counted whole."""
    canary, baseline = _requests_read_zero(3, start, end)
    analysis = Analysis(_policy(metrics=RATIO), MemorySource(canary, baseline), "r1", DEPLOY)
    verdict = analysis.evaluate(DEPLOY + minute * STEP)
    errors = next(m for m in verdict.metrics if m.name == "errors")
    assert verdict.verdict != "pass", verdict.reason
    assert errors.rule == "reads-zero", errors.reason


@pytest.mark.parametrize(("share", "minutes"), [(1.0, 3), (1.0, 5), (0.05, 4)])
@pytest.mark.parametrize("seed", [1, 2])
def test_a_clean_canary_whose_requests_read_zero_while_its_target_registers_passes(seed, share, minutes):
    """Review: a clean canary whose first 3-5 minutes read 0 requests (its target still
    registering with the load balancer) failed at the end, where main passed it at minute 30: a
    run from the deploy of at most the start-up allowance (budget.STARTUP_MAX, less the warm-up)
    is allowed, as the out-of-service rule allows one before the first served point. The runs of
    12 and 20 minutes above are still held."""
    rng = np.random.default_rng(seed)
    t = np.arange(DEPLOY - HISTORY_DAYS * DAY, DEPLOY + 3600 + STEP, STEP, dtype=np.int64)
    load = 1 + 0.3 * np.sin(2 * np.pi * (t % DAY) / DAY)
    live = t >= DEPLOY
    baseline, canary = _host(rng, t, load), _host(rng, t[live], load[live], traffic_share=share)
    canary["requests"][:minutes], canary["errors"][:minutes] = 0.0, 0.0
    verdict, _ = _run(_policy(metrics=RATIO), Frame(STEP, t[live], canary), Frame(STEP, t, baseline))
    errors = next(m for m in verdict.metrics if m.name == "errors")
    assert errors.rule != "reads-zero", errors.reason
    assert verdict.verdict == "pass", verdict.reason


@pytest.mark.parametrize(("start", "end", "minute"), [(0, 20, None), (5, 25, 30), (10, 30, 45)])
def test_a_canary_whose_requests_are_missing_while_it_reports_is_not_passed(start, end, minute):
    """Fail-open review: CloudWatch publishes no RequestCount (nor 5XX count) for a minute without
    requests; the canary's requests and errors missing over minutes 0-20, 5-25 or 10-30 while it
    reported its CPU were dropped from the paired moments and the run went unseen (passed). Read
    as 0, as the out-of-service rule reads them."""
    canary, baseline = _requests_read_zero(3, start, end)
    gone = (canary.timestamps >= DEPLOY + start * STEP) & (canary.timestamps < DEPLOY + end * STEP)
    canary.values["requests"][gone], canary.values["errors"][gone] = np.nan, np.nan
    policy = _policy(metrics=[{"name": "cpu", "kind": "gauge", "tolerance": 0.1}] + RATIO)
    if minute is None:
        verdict, _ = _run(policy, canary, baseline)
    else:
        verdict = Analysis(policy, MemorySource(canary, baseline), "r1", DEPLOY).evaluate(DEPLOY + minute * STEP)
    errors = next(m for m in verdict.metrics if m.name == "errors")
    assert verdict.verdict != "pass", verdict.reason
    assert errors.rule == "reads-zero", errors.reason


def test_a_regressed_canary_with_a_run_of_zero_requests_still_fails():
    """The run only holds a pass back: errors at 3x their baseline's rate on the minutes served fail."""
    canary, baseline = _requests_read_zero(4, 0, 12, error_rate=0.03)
    verdict, _ = _run(_policy(metrics=RATIO), canary, baseline)
    errors = next(m for m in verdict.metrics if m.name == "errors")
    assert verdict.verdict == "fail" and errors.verdict == "fail", verdict.reason


def test_a_real_canary_whose_requests_read_zero_over_its_first_minutes_is_not_passed(corpus, tmp_path):
    """The real k1m-aa-000 (clean, passed at 45 min) with its canary's requests and errors 0 over
    minutes 0-19: passed at the end of its lifetime on the rest ("not shown worse")."""
    from gate.analysis import replay_case

    def zero_filled(row, deploy):
        if row["scope"] == "canary" and 0 <= (int(row["timestamp"]) - deploy) // 60 < 20:
            row["requests"], row["errors"] = "0", "0"

    verdict = replay_case(edited_case(corpus / "k1m-aa-000", tmp_path / "zeros", zero_filled)).verdict
    errors = next(m for m in verdict.metrics if m.name == "errors")
    assert verdict.verdict != "pass", verdict.reason
    assert errors.rule == "reads-zero", errors.reason


@pytest.mark.parametrize("case", ["k1m-fleet-anomaly-264", "k1m-fleet-anomaly-235"])
def test_real_canaries_reading_zero_requests_where_their_baseline_serves_a_handful_still_pass(corpus, case):
    """Real clean canaries read 0 requests for 2-3 minutes where their baseline served 1-4 (and
    more zeros where it served none): plausible at their share, and not held."""
    from gate.analysis import replay_case

    verdict = replay_case(corpus / case).verdict
    assert verdict.verdict == "pass", verdict.reason


@pytest.mark.parametrize(("start", "end"), [(10, 30), (0, 15), (20, 26)])
def test_history_only_a_denominator_reading_zero_before_the_window_s_end_is_not_passed(start, end):
    """Fail-open review, history-only: the requests' zeros were read on the window's latest points
    only, and a canary whose requests and errors read 0 over minutes 10-30, 0-15 or 20-26 (about
    860 a minute expected) passed at the end, "consistent with history"."""
    from tests.test_judge import _history_only_fleet

    canary = _history_only_fleet(3)
    zero = (canary.timestamps >= DEPLOY + start * STEP) & (canary.timestamps < DEPLOY + end * STEP)
    canary.values["requests"][zero], canary.values["errors"][zero] = 0.0, 0.0
    verdict, _ = _run(_policy(baseline=False), canary, None)
    errors = next(m for m in verdict.metrics if m.name == "errors")
    assert verdict.verdict != "pass", verdict.reason
    assert errors.rule == "reads-zero" and "requests reads 0" in errors.reason, errors.reason


@pytest.mark.parametrize(("warmup", "lifetime", "minutes"), [(60, 3600, 5), (120, 3600, 5), (0, 1800, 4), (0, 1200, 3)])
def test_the_start_up_allowance_is_not_taken_away_by_a_short_warm_up_or_a_short_lifetime(warmup, lifetime, minutes):
    """Second review: with a 1-2 minute warm-up the allowance was 0 (the registering minutes after
    the warm-up were held: fail at the end); at 10% of a 20- or 30-minute lifetime, 3-4 minutes of
    registering were held. Registering takes as long whatever the warm-up or lifetime."""
    from tests.test_judge import _fleet
    from tests.test_judge import _policy as judge_policy
    from tests.test_judge import _run as judge_run

    canary, baseline = _fleet(1)
    first = np.arange(len(canary)) < minutes
    canary.values["requests"][first], canary.values["errors"][first] = 0.0, 0.0
    verdict, _ = judge_run(judge_policy(warmup=warmup, lifetime=lifetime), canary, baseline)
    errors = next(m for m in verdict.metrics if m.name == "errors")
    assert errors.rule != "reads-zero", errors.reason
    assert verdict.verdict == "pass", verdict.reason


@pytest.mark.parametrize("seed", [3, 4])
def test_history_only_a_target_registering_for_five_minutes_passes(seed):
    """Second review: history-only, requests and errors 0 over the first 5 minutes, then clean,
    failed (reads-zero from the deploy), where with a baseline group the same canary passes."""
    from tests.test_judge import DEPLOY as JUDGE_DEPLOY
    from tests.test_judge import STEP as JUDGE_STEP
    from tests.test_judge import _history_only_fleet
    from tests.test_judge import _policy as judge_policy
    from tests.test_judge import _run as judge_run

    canary = _history_only_fleet(seed)
    first = (canary.timestamps >= JUDGE_DEPLOY) & (canary.timestamps < JUDGE_DEPLOY + 5 * JUDGE_STEP)
    canary.values["requests"][first], canary.values["errors"][first] = 0.0, 0.0
    verdict, _ = judge_run(judge_policy(baseline=False), canary, None)
    errors = next(m for m in verdict.metrics if m.name == "errors")
    assert errors.rule != "reads-zero", errors.reason
    assert verdict.verdict == "pass", verdict.reason
