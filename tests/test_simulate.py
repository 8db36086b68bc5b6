"""The simulate source: reproducible, realistic, and its faults are clear where and when they should be."""

import numpy as np
import pytest

from gate.analysis import Analysis
from gate.demo import demo_policy
from gate.errors import PolicyError
from gate.policy import parse_policy
from gate.sources import Query, open_source
from gate.sources.simulate import SCENARIOS, SimulateSource, from_policy

DAY = 86400
DEPLOYED = 1_714_996_800  # Monday 2024-05-06 12:00 UTC: a busy weekday noon
POLICY = demo_policy("healthy")
METRICS = tuple(POLICY.metrics)
TOLERANCE = {m.name: m.tolerance for m in POLICY.metrics}


def fetch(source, start, end, step=60):
    return source.fetch(Query(METRICS, "canary", "baseline", start, end, step))


def window(scenario, seed=7, minutes=60):
    return fetch(SimulateSource(scenario, seed, DEPLOYED), DEPLOYED, DEPLOYED + 60 * minutes)


def ratio(obs, name, since=0):
    c, b = obs.canary, obs.baseline
    keep = c.timestamps >= DEPLOYED + since
    return np.nanmean(c.values[name][keep]) / np.nanmean(b.values[name][keep])


def error_rate(frame, keep=slice(None)):
    return np.nansum(frame.values["errors"][keep]) / np.nansum(frame.values["requests"][keep])


def test_the_same_seed_gives_the_same_data_and_another_seed_other_data():
    a, b = window("healthy", seed=1), window("healthy", seed=1)
    for name in a.canary.values:
        np.testing.assert_array_equal(a.canary.values[name], b.canary.values[name])
        np.testing.assert_array_equal(a.baseline.values[name], b.baseline.values[name])
    other = window("healthy", seed=2)
    assert not np.array_equal(a.canary.values["cpu"], other.canary.values["cpu"])


def test_overlapping_queries_agree_on_the_points_they_share():
    source = SimulateSource("db_connections", 3, DEPLOYED)
    long = fetch(source, DEPLOYED - 2 * DAY, DEPLOYED + 3600)
    short = fetch(source, DEPLOYED + 1234, DEPLOYED + 1800)  # an unaligned start snaps to the grid
    assert short.canary.timestamps[0] == DEPLOYED + 1260
    part = long.canary.between(DEPLOYED + 1234, DEPLOYED + 1800)
    for name in part.values:
        np.testing.assert_array_equal(part.values[name], short.canary.values[name])


def test_any_range_on_any_step_with_a_week_of_history():
    source = SimulateSource("healthy", 0, DEPLOYED)
    history = fetch(source, DEPLOYED - 8 * DAY, DEPLOYED - 1)
    assert len(history.baseline) == 8 * 1440
    assert all(np.isfinite(v).all() for v in history.baseline.values.values())
    five = fetch(source, DEPLOYED, DEPLOYED + 3600, step=300)
    assert list(five.baseline.timestamps) == list(range(DEPLOYED, DEPLOYED + 3601, 300))
    assert five.baseline.values["requests"].mean() > 4 * history.baseline.values["requests"].mean()
    assert len(fetch(source, DEPLOYED + 1, DEPLOYED + 59).canary) == 0  # no grid point in range


def test_the_kpis_look_like_a_service():
    day = fetch(SimulateSource("healthy", 5, DEPLOYED), DEPLOYED - DAY, DEPLOYED - 1).baseline.values
    assert 5 < np.min(day["cpu"]) and np.max(day["cpu"]) < 80
    assert 40 < np.min(day["memory"]) and np.max(day["memory"]) < 70
    assert 80 < np.min(day["latency"]) and np.max(day["latency"]) < 400
    requests, errors = day["requests"], day["errors"]
    assert np.array_equal(requests, np.round(requests)) and np.array_equal(errors, np.round(errors))
    assert (0 <= errors).all() and (errors <= requests).all()
    assert 0.002 < errors.sum() / requests.sum() < 0.01
    # Daily seasonality: the busiest hour carries far more traffic than the quietest one.
    hourly = requests.reshape(24, 60).sum(axis=1)
    assert hourly.max() > 2 * hourly.min()
    assert np.corrcoef(requests, day["cpu"])[0, 1] > 0.8  # CPU follows the load
    assert np.corrcoef(requests, day["latency"])[0, 1] > 0.5
    # Noise: neighbouring minutes differ.
    assert np.std(np.diff(day["cpu"])) > 0.5


def test_weekends_are_quieter():
    source = SimulateSource("healthy", 0, DEPLOYED)
    week = fetch(source, DEPLOYED - 7 * DAY, DEPLOYED - 1).baseline
    weekday = (week.timestamps // DAY + 3) % 7
    requests = week.values["requests"]
    assert requests[weekday >= 5].mean() < 0.9 * requests[weekday < 5].mean()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_healthy_canary_and_baseline_are_statistically_identical(seed):
    obs = window("healthy", seed, minutes=24 * 60)
    for name in ("cpu", "memory", "latency", "requests"):
        assert abs(ratio(obs, name) - 1) < 0.01, name
        c, b = obs.canary.values[name], obs.baseline.values[name]
        assert 0.85 < np.std(c) / np.std(b) < 1.15, name
    assert abs(error_rate(obs.canary) / error_rate(obs.baseline) - 1) < 0.05


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "healthy"])
def test_before_the_deploy_the_canary_is_healthy(scenario):
    source = SimulateSource(scenario, 4, DEPLOYED)
    before = fetch(source, DEPLOYED - DAY, DEPLOYED - 1)
    healthy = fetch(SimulateSource("healthy", 4, DEPLOYED), DEPLOYED - DAY, DEPLOYED - 1)
    for name in before.canary.values:
        np.testing.assert_array_equal(before.canary.values[name], healthy.canary.values[name])


def test_bad_version_is_slow_by_several_tolerances():
    obs = window("bad_version")
    assert ratio(obs, "latency", since=120) - 1 > 3 * TOLERANCE["latency"]
    assert ratio(obs, "cpu", since=120) - 1 > 2 * TOLERANCE["cpu"]
    assert abs(ratio(obs, "memory") - 1) < TOLERANCE["memory"] / 2
    assert abs(error_rate(obs.canary) / error_rate(obs.baseline) - 1) < TOLERANCE["errors"]


def test_payment_failures_multiply_the_error_rate():
    obs = window("payment_failures")
    late = obs.canary.timestamps >= DEPLOYED + 120
    assert error_rate(obs.canary, late) / error_rate(obs.baseline, late) - 1 > 4 * TOLERANCE["errors"]
    assert abs(ratio(obs, "latency") - 1) < TOLERANCE["latency"] / 2


def test_db_connections_come_in_bursts_of_errors_and_latency():
    obs = window("db_connections")
    c, b = obs.canary.values, obs.baseline.values
    per_minute = c["errors"] / c["requests"]
    bursts = per_minute > 10 * np.nanmedian(b["errors"] / b["requests"])
    assert 10 <= bursts.sum() <= 25  # the pool runs dry 2 minutes out of 7
    burst_starts = np.flatnonzero(np.diff(bursts.astype(int)) == 1)
    assert len(burst_starts) >= 6
    assert np.all(c["latency"][bursts] > 2 * b["latency"][bursts])
    assert ratio(obs, "latency", since=120) - 1 > 3 * TOLERANCE["latency"]
    assert error_rate(obs.canary) / error_rate(obs.baseline) - 1 > 4 * TOLERANCE["errors"]


def test_a_killed_gateway_stops_reporting_after_a_few_minutes():
    obs = window("gateway_killed")
    reporting = np.isfinite(obs.canary.values["cpu"])
    assert 3 <= reporting.sum() <= 15
    assert reporting[: reporting.sum()].all() and not reporting[reporting.sum():].any()  # then silence
    for name in ("memory", "latency", "errors", "requests"):
        np.testing.assert_array_equal(np.isfinite(obs.canary.values[name]), reporting)
    assert np.isfinite(obs.baseline.values["cpu"]).all()


def test_without_a_deploy_time_the_canary_runs_the_new_version_at_every_moment():
    obs = fetch(SimulateSource("bad_version", 1), DEPLOYED - DAY, DEPLOYED)
    assert ratio(obs, "latency", since=-DAY) > 1.4


def test_from_policy_reads_the_options():
    policy = demo_policy("payment_failures", seed=11, deployed_at=DEPLOYED)
    source = open_source(policy)  # through the PROVIDERS registry
    assert isinstance(source, SimulateSource)
    assert (source.scenario, source.seed, source.deployed_at) == ("payment_failures", 11, DEPLOYED)
    iso = policy.model_copy(update={"source": policy.source.model_copy(
        update={"options": {"deployed_at": "2024-05-06T12:00:00Z"}})})
    assert from_policy(iso).deployed_at == 1714996800
    assert from_policy(iso).scenario == "healthy"


def test_an_unknown_scenario_names_it_and_the_valid_ones():
    with pytest.raises(PolicyError) as raised:
        demo_policy("meteor_strike")
    message = str(raised.value)
    assert "'meteor_strike'" in message
    assert all(s in message for s in SCENARIOS)
    data = {**demo_policy().model_dump(), "source": {"type": "simulate", "options": {"scenario": "meteor"}}}
    with pytest.raises(PolicyError, match="unknown scenario 'meteor'"):
        open_source(parse_policy(data))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"scenario": "healthy", "speed": 2}, "unknown option.*speed"),
        ({"seed": "seven"}, "source.options.seed"),
        ({"scenario": 3}, "source.options.scenario"),
        ({"deployed_at": "yesterday"}, "source.options.deployed_at.*yesterday"),
    ],
)
def test_bad_options_are_named(options, message):
    data = {**demo_policy().model_dump(), "source": {"type": "simulate", "options": options}}
    with pytest.raises(PolicyError, match=message):
        from_policy(parse_policy(data))


def test_a_metric_the_simulation_does_not_have_is_named():
    data = demo_policy().model_dump()
    data["metrics"].append({"name": "queue_depth", "kind": "gauge"})
    with pytest.raises(PolicyError, match="no metric 'queue_depth'"):
        from_policy(parse_policy(data))


@pytest.mark.parametrize(
    "scenario, expected",
    [("healthy", "pass"), ("db_connections", "fail"), ("payment_failures", "fail"),
     ("bad_version", "fail"), ("gateway_killed", "fail")],
)
def test_the_judge_tells_the_scenarios_apart(scenario, expected):
    policy = demo_policy(scenario, 0, DEPLOYED)
    verdict, evaluations = Analysis(policy, open_source(policy), "r", DEPLOYED).run()
    assert verdict.verdict == expected, verdict.reason
    assert evaluations < 60  # decided before the end of the lifetime


def test_a_dead_canary_is_said_dead_once_not_once_per_metric():
    policy = demo_policy("gateway_killed", 0, DEPLOYED)
    verdict, _ = Analysis(policy, open_source(policy), "r", DEPLOYED).run()
    assert verdict.verdict == "fail"
    assert verdict.reason.count("has not reported") == 1, verdict.reason
    assert all(m.name in verdict.reason.split(":")[0] for m in verdict.metrics if m.verdict == "fail")
