"""Ways a regressed canary passed, found by a fail-open review: each is a regression the judge
must not pass (and the clean twin it must still pass)."""

import numpy as np
import pytest

from gate.analysis import Analysis
from gate.series import Frame
from tests.test_judge import DAY, DEPLOY, HISTORY_DAYS, STEP, MemorySource, _host, _policy, _run


def _surge_fleet(seed, baseline_surge, canary_surge, metric):
    """Both groups off their expectation at minutes 17-29 (a fleet-wide surge of `metric`), the
    canary by `canary_surge`, the baseline by `baseline_surge` (multiples of the usual level; for
    errors, of the usual error rate)."""
    rng = np.random.default_rng(seed)
    t = np.arange(DEPLOY - HISTORY_DAYS * DAY, DEPLOY + 3600 + STEP, STEP, dtype=np.int64)
    load = 1 + 0.3 * np.sin(2 * np.pi * (t % DAY) / DAY)
    during = (t >= DEPLOY + 17 * 60) & (t <= DEPLOY + 29 * 60)
    live = t >= DEPLOY
    baseline, canary = _host(rng, t, load), _host(rng, t[live], load[live])
    if metric == "cpu":
        baseline["cpu"] *= np.where(during, baseline_surge, 1.0)
        canary["cpu"] *= np.where(during[live], canary_surge, 1.0)
    else:
        baseline["errors"] = rng.poisson(np.where(during, 0.01 * baseline_surge, 0.01) * baseline["requests"]) * 1.0
        canary["errors"] = rng.poisson(np.where(during[live], 0.01 * canary_surge, 0.01) * canary["requests"]) * 1.0
    return Frame(STEP, t[live], canary), Frame(STEP, t, baseline)


CPU_ONLY = [{"name": "cpu", "kind": "gauge", "tolerance": 0.1}]
ERRORS_ONLY = [{"name": "errors", "kind": "count", "denominator": "requests", "tolerance": 0.5},
               {"name": "requests", "kind": "count", "bad_direction": "none", "tolerance": None}]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_canary_3x_its_baseline_during_a_fleet_surge_is_not_held_out(seed):
    canary, baseline = _surge_fleet(seed, 1.5, 4.5, "cpu")  # the fleet +50%, the canary 3x the baseline
    verdict, _ = _run(_policy(metrics=CPU_ONLY), canary, baseline)
    assert verdict.verdict == "fail", verdict.reason
    assert not any("held out" in note for note in verdict.notes), verdict.notes


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_canary_3x_the_fleets_error_surge_is_not_held_out(seed):
    canary, baseline = _surge_fleet(seed, 6.0, 18.0, "errors")  # the fleet 6% errors, the canary 18%
    verdict, _ = _run(_policy(metrics=ERRORS_ONLY), canary, baseline)
    assert verdict.verdict == "fail", verdict.reason


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_fleet_surge_both_groups_share_is_still_held_out(seed):
    canary, baseline = _surge_fleet(seed, 1.5, 1.5, "cpu")
    verdict, _ = _run(_policy(metrics=CPU_ONLY), canary, baseline)
    assert verdict.verdict == "pass", verdict.reason
    assert any("held out" in note for note in verdict.notes), verdict.notes


def test_a_metric_silent_for_its_last_140_minutes_of_a_day_is_not_passed():
    """MAX_BEHIND_SHARE of a 24 h lifetime allowed 144 steps behind: the canary's latency stopped
    at 21:40 of 24 h while its CPU went on, and passed "not shown worse" on what it sent."""
    lifetime = DAY
    rng = np.random.default_rng(1)
    t = np.arange(DEPLOY - HISTORY_DAYS * DAY, DEPLOY + lifetime + STEP, STEP, dtype=np.int64)
    load = 1 + 0.3 * np.sin(2 * np.pi * (t % DAY) / DAY)
    live = t >= DEPLOY
    baseline, canary = _host(rng, t, load), _host(rng, t[live], load[live])
    canary["latency"][t[live] > DEPLOY + lifetime - 140 * 60] = np.nan
    policy = _policy(lifetime=lifetime, metrics=[{"name": "cpu", "kind": "gauge", "tolerance": 0.1},
                                                  {"name": "latency", "kind": "gauge", "unit": "ms", "tolerance": 0.1}])
    analysis = Analysis(policy, MemorySource(Frame(STEP, t[live], canary), Frame(STEP, t, baseline)), "r1", DEPLOY)
    verdict = analysis.evaluate(DEPLOY + lifetime)  # an undecided canary's last look
    assert verdict.verdict != "pass", verdict.reason
    latency = next(m for m in verdict.metrics if m.name == "latency")
    assert latency.verdict == "inconclusive" and latency.rule == "too-little-data", latency.reason
    assert "latency series stopped" in latency.reason and "nothing since" in latency.reason


def test_a_flaky_series_missing_one_point_in_eight_is_not_taken_for_a_stopped_one():
    from gate.judge.coverage import _own_gaps_allow

    rng = np.random.default_rng(2)
    grid = np.arange(0, 1440 * STEP, STEP)
    reported = grid[rng.random(len(grid)) >= 1 / 8]
    assert 4 <= _own_gaps_allow(reported, STEP) <= 8  # a trailing run of 5: chance 3e-5
    every_fifth = grid[::5]
    assert _own_gaps_allow(every_fifth, STEP) == 8  # its cadence: 4 silent steps in a row, twice that


@pytest.mark.parametrize("seed,zeros", [(1, 25), (2, 29)])
def test_a_gauge_zero_filled_at_its_start_does_not_hide_a_later_regression(seed, zeros):
    """Only stretches ending at the latest point were screened: CPU 0 for its first 25-29 of 60
    minutes, then 1.3x its baseline (tolerance 10%), passed at -21%, "not shown worse"."""
    canary, baseline = _surge_fleet(seed, 1.0, 1.0, "cpu")
    canary.values["cpu"][:] *= 1.3
    canary.values["cpu"][:zeros] = 0.0
    verdict, _ = _run(_policy(metrics=CPU_ONLY), canary, baseline)
    assert verdict.verdict != "pass", verdict.reason
    cpu = verdict.metrics[0]
    # Its zeros left out as no reading (screens._unread_points), the 1.3x on the rest fails; or
    # the stretch's screen holds it.
    assert ((cpu.verdict == "fail" and f"{zeros} point(s) reading 0" in cpu.reason)
            or (cpu.rule == "reads-zero" and "points 1 to" in cpu.reason)), cpu.reason


def test_a_gauge_with_one_zero_point_mid_window_still_passes():
    canary, baseline = _surge_fleet(4, 1.0, 1.0, "cpu")
    canary.values["cpu"][[10, 30]] = 0.0  # a dropped sample read as 0, twice, far apart
    verdict, _ = _run(_policy(metrics=CPU_ONLY), canary, baseline)
    assert verdict.verdict == "pass", verdict.reason


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's overflow warnings: what is tested is the outcome
def test_history_values_near_the_largest_float_are_judged_not_crashed():
    """Every bucket's mean overflowed to inf and np.interp had nothing to interpolate from: a
    ValueError out of seasonal.fit_seasonal, nothing recorded."""
    t = np.arange(DEPLOY - 2 * DAY, DEPLOY + 3600 + STEP, STEP, dtype=np.int64)
    live = t >= DEPLOY
    x = 1e308 * (1 + np.random.default_rng(0).normal(0, 0.01, len(t))).clip(0, 1.7)
    policy = _policy(metrics=[{"name": "x", "kind": "gauge", "tolerance": 0.1}])
    source = MemorySource(Frame(STEP, t[live], {"x": x[live]}), Frame(STEP, t, {"x": x}))
    verdict = Analysis(policy, source, "r1", DEPLOY).evaluate(DEPLOY + 600)
    assert verdict.verdict != "pass", verdict.reason


class _CrashingJudge:
    """The real judge, whose evaluation raises what a bug would (a fault injected, not a stub)."""

    def __init__(self):
        from gate import judge

        self.judge = judge

    def __getattr__(self, name):
        return getattr(self.judge, name)

    def evaluate(self, *args, **kwargs):
        raise ValueError("array of sample points is empty")


def test_a_crash_in_the_judge_is_a_recorded_could_not_judge(tmp_path):
    from gate.errors import GateError
    from gate.store.sqlite import SqliteStore

    canary, baseline = _surge_fleet(5, 1.0, 1.0, "cpu")
    store = SqliteStore(tmp_path / "gate.sqlite")
    analysis = Analysis(_policy(metrics=CPU_ONLY), MemorySource(canary, baseline), "r1", DEPLOY, store=store,
                        judge=_CrashingJudge())
    with pytest.raises(GateError, match=r"could not judge: .*ValueError: array of sample points is empty"):
        analysis.evaluate(DEPLOY + 600)
    records = store.evaluations("r1")
    assert [r["verdict"] for r in records] == ["error"], records
    assert "ValueError" in records[0]["reason"]


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6, 7, 8])
def test_a_gauge_reading_zero_one_minute_in_three_does_not_average_a_regression_into_a_pass(seed):
    """The fix's review: a scrape failing one minute in three, filled with 0, never puts 5 zeros in
    10 points, so no stretch was dense enough; the zeros pulled a CPU 1.3x its baseline to -17%,
    "within tolerance" (4 of 8 seeds passed). Scattered zeros over a tenth of the window are a
    doubt too."""
    canary, baseline = _surge_fleet(seed, 1.0, 1.0, "cpu")
    canary.values["cpu"][:] *= 1.3
    canary.values["cpu"][::3] = 0.0
    verdict, _ = _run(_policy(metrics=CPU_ONLY), canary, baseline)
    assert verdict.verdict != "pass", verdict.reason


def test_the_hold_out_keeps_or_drops_a_surges_minutes_together_so_a_clean_canary_is_not_biased():
    """The fix's review: decided minute by minute on the canary's own noise, the hold-out kept a
    clean canary's unluckiest minutes of a fleet error surge (2% for 4 minutes in 10, 0.2% else)
    and dropped its luckiest: 4 of 10 clean canaries read +35-46% and failed. Decided surge by
    surge, a clean canary is held out with its fleet but for a surge it really was worse in: as
    before the fix (1 of 10 beyond tolerance, by chance)."""
    errors = [{"name": "errors", "kind": "count", "denominator": "requests", "tolerance": 0.2},
              {"name": "requests", "kind": "count", "bad_direction": "none", "tolerance": None}]
    beyond = []
    for seed in range(1, 11):
        rng = np.random.default_rng(seed)
        t = np.arange(DEPLOY - HISTORY_DAYS * DAY, DEPLOY + 3600 + STEP, STEP, dtype=np.int64)
        load = 1 + 0.3 * np.sin(2 * np.pi * (t % DAY) / DAY)
        minute = (t - DEPLOY) // 60
        during = (minute >= 0) & ((minute % 10) >= 6)
        live = t >= DEPLOY
        baseline, canary = _host(rng, t, load), _host(rng, t[live], load[live])
        baseline["errors"] = rng.poisson(np.where(during, 0.02, 0.002) * baseline["requests"]).astype(float)
        canary["errors"] = rng.poisson(np.where(during[live], 0.02, 0.002) * canary["requests"]).astype(float)
        verdict, _ = _run(_policy(metrics=errors), Frame(STEP, t[live], canary), Frame(STEP, t, baseline))
        if verdict.metrics[0].effect >= 0.2:
            beyond.append((seed, verdict.metrics[0].effect))
    assert len(beyond) <= 1, beyond  # minute by minute: 4 of 10, at +35% to +46%


@pytest.mark.parametrize("seed", range(1, 9))
def test_one_surge_much_worse_is_not_diluted_by_the_clean_surges_of_the_window(seed):
    """The second review: decided over every surge of the window at once, a canary at 2x the
    fleet's error rate during one surge (minutes 26-29) and like the fleet in the five others
    was held out with them all and passed (6 of 8). Each surge is decided on its own."""
    errors = [{"name": "errors", "kind": "count", "denominator": "requests", "tolerance": 0.2},
              {"name": "requests", "kind": "count", "bad_direction": "none", "tolerance": None}]
    rng = np.random.default_rng(seed)
    t = np.arange(DEPLOY - HISTORY_DAYS * DAY, DEPLOY + 3600 + STEP, STEP, dtype=np.int64)
    load = 1 + 0.3 * np.sin(2 * np.pi * (t % DAY) / DAY)
    minute = (t - DEPLOY) // 60
    during = (minute >= 0) & ((minute % 10) >= 6)
    bad = during & (minute >= 26) & (minute < 30)
    live = t >= DEPLOY
    baseline, canary = _host(rng, t, load), _host(rng, t[live], load[live])
    baseline["errors"] = rng.poisson(np.where(during, 0.02, 0.002) * baseline["requests"]).astype(float)
    rate = np.where(bad[live], 0.04, np.where(during[live], 0.02, 0.002))
    canary["errors"] = rng.poisson(rate * canary["requests"]).astype(float)
    verdict, _ = _run(_policy(metrics=errors), Frame(STEP, t[live], canary), Frame(STEP, t, baseline))
    assert verdict.verdict != "pass", verdict.reason


def _cpu_read_at(seed, factor, fill, points, history_only=False):
    """CPU `factor` times its baseline, reading `fill` times the baseline (0: a scrape failing,
    filled with 0) at the canary's `points` (indexes into its window)."""
    canary, baseline = _surge_fleet(seed, 1.0, 1.0, "cpu")
    paired = baseline.values["cpu"][np.isin(baseline.timestamps, canary.timestamps)]
    canary.values["cpu"][:] *= factor
    canary.values["cpu"][points] = fill * paired[points]
    if history_only:  # the canary's own history: the baseline's series up to the deploy, then its window
        before = baseline.timestamps < DEPLOY
        t = np.concatenate([baseline.timestamps[before], canary.timestamps])
        return Frame(STEP, t, {"cpu": np.concatenate([baseline.values["cpu"][before], canary.values["cpu"]])}), None
    return canary, baseline


def _every_look(policy, canary, baseline):
    """The verdict at each look of the lifetime (not only where a watch would stop)."""
    analysis = Analysis(policy, MemorySource(canary, baseline), "r1", DEPLOY)
    return [analysis.evaluate(DEPLOY + k * STEP) for k in range(1, policy.lifetime // STEP + 1)]


@pytest.mark.parametrize("fill", [0.0, 0.02])
@pytest.mark.parametrize("seed,first", [(1, 0), (2, 5), (5, 3)])
def test_a_regressed_gauge_with_a_zero_every_11_minutes_does_not_pass_at_any_look(seed, first, fill):
    """A 1.15x CPU (tolerance 10%) reading 0 (or 0.02x, above the 1% a zero was read at) every 11
    minutes: 4 scattered zeros averaged in pulled it to +3% and a checkpoint passed it (the "5+
    zeros" screen counts from 5). Its zeros are no reading: left out as missing points."""
    canary, baseline = _cpu_read_at(seed, 1.15, fill, np.arange(first, 61, 11))
    looks = _every_look(_policy(metrics=CPU_ONLY), canary, baseline)
    assert not any(v.verdict == "pass" for v in looks), [v.reason for v in looks if v.verdict == "pass"]
    verdict, _ = _run(_policy(metrics=CPU_ONLY), canary, baseline)
    assert verdict.verdict == "fail" and "reading 0 or next to it" in verdict.metrics[0].reason, verdict.reason


@pytest.mark.parametrize("seed", [1, 5])
def test_history_only_a_gauge_filled_with_002x_its_expectation_is_read_as_zeros(seed):
    """History-only: 6 points at 0.02x (above the 1% a zero was read at) are fills, far below the
    seasonal expectation's noise: the "5+ zeros" screen holds them (it passed "consistent with
    history", pulled down by them)."""
    canary, _ = _cpu_read_at(seed, 1.0, 0.02, np.arange(5, 61, 11), history_only=True)
    verdict, _ = _run(_policy(baseline=False, metrics=CPU_ONLY), canary, None)
    assert verdict.verdict != "pass", verdict.reason
    cpu = verdict.metrics[0]
    assert cpu.rule == "reads-zero" and "6 of its 61" in cpu.reason, cpu.reason


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_a_clean_gauge_with_3_scattered_zeros_is_not_failed_for_them(seed):
    """The same code with 3 scattered zeros: left out as missing (the coverage allows it), the
    canary judged on its readings, not pulled down by the zeros nor failed for them."""
    canary, baseline = _cpu_read_at(seed, 1.0, 0.0, np.array([12, 31, 50]))
    verdict, _ = _run(_policy(metrics=CPU_ONLY), canary, baseline)
    assert verdict.verdict != "fail", verdict.reason
    cpu = verdict.metrics[0]
    assert "reading 0 or next to it" in cpu.reason and abs(cpu.effect) < 0.02, cpu.reason


@pytest.mark.parametrize("seed", [1, 2])
def test_a_gauge_near_0_in_both_groups_keeps_its_zeros(seed):
    """An idle service's CPU about 0.5% in whole tenths, 0 at a third of its minutes in both
    groups: its zeros are readings (its baseline is never far above its own noise), none left out."""
    from gate.judge.screens import _paired_scale, _unread_points

    rng = np.random.default_rng(seed)
    t = np.arange(DEPLOY - HISTORY_DAYS * DAY, DEPLOY + 3600 + STEP, STEP, dtype=np.int64)
    live = t >= DEPLOY
    idle = lambda n: np.round(rng.gamma(0.8, 0.6, n), 1)  # noqa: E731
    canary, baseline = Frame(STEP, t[live], {"cpu": idle(live.sum())}), Frame(STEP, t, {"cpu": idle(len(t))})
    assert np.mean(canary.values["cpu"] == 0) > 0.05
    verdict, _ = _run(_policy(metrics=CPU_ONLY), canary, baseline)
    assert "reading 0 or next to it" not in verdict.metrics[0].reason, verdict.reason
    c, b = canary.values["cpu"], baseline.values["cpu"][live]
    assert not _unread_points(c, b, _paired_scale(c, b, None)).any()  # no history: the window's own noise


def test_a_gauge_judged_on_a_fall_keeps_its_zeros_as_evidence():
    """bad_direction decrease (a hit ratio): a canary reading 0 is what is judged, not excused as
    a failed scrape; its zeros stay in the comparison."""
    canary, baseline = _cpu_read_at(3, 1.0, 0.0, np.array([12, 31, 50]))
    policy = _policy(metrics=[{"name": "cpu", "kind": "gauge", "bad_direction": "decrease", "tolerance": 0.1}])
    verdict, _ = _run(policy, canary, baseline)
    assert "reading 0 or next to it" not in verdict.metrics[0].reason, verdict.reason


def _canary_cpu_edit(factor, zero_minutes):
    """An edit for edited_case: the canary's CPU from the deploy times `factor`, 0 at `zero_minutes`."""
    def edit(row, deploy):
        if row["scope"] == "canary" and row.get("cpu") and int(row["timestamp"]) >= deploy:
            minute = (int(row["timestamp"]) - deploy) // 60
            row["cpu"] = repr(0.0 if minute in zero_minutes else float(row["cpu"]) * factor)
    return edit


@pytest.mark.parametrize("case", ["k1m-aa-131", "nab5m-aa-266"])
def test_a_real_canary_at_115x_with_a_zero_every_11_minutes_is_not_passed(corpus, tmp_path, case):
    """Real A/A pairs (replayed as recorded), the canary's CPU made 1.15x (tolerance 10%) and 0
    every 11 minutes: passed at a checkpoint ("+1.9% ... shown within tolerance") or at the end."""
    from gate.analysis import replay_case
    from tests.test_cli_replay import edited_case

    folder = edited_case(corpus / case, tmp_path / "zeros", _canary_cpu_edit(1.15, set(range(0, 61, 11))))
    verdict = replay_case(folder).verdict
    cpu = next(m for m in verdict.metrics if m.name == "cpu")
    assert verdict.verdict != "pass" and cpu.verdict != "pass", cpu.reason


@pytest.mark.parametrize("case", ["k1m-aa-000", "k1m-aa-014", "nab5m-aa-266"])
def test_a_real_clean_canary_with_3_zeros_is_judged_on_its_readings(corpus, tmp_path, case):
    from gate.analysis import replay_case
    from tests.test_cli_replay import edited_case

    folder = edited_case(corpus / case, tmp_path / "zeros", _canary_cpu_edit(1.0, {12, 31, 50}))
    cpu = next(m for m in replay_case(folder).verdict.metrics if m.name == "cpu")
    assert cpu.verdict == "pass" and "reading 0 or next to it" in cpu.reason, cpu.reason


def _jittered_cpu(seed, factor, jitter, fill, points):
    """CPU `factor` times its baseline with a further `jitter` (relative SD) of its own, reading
    `fill` times the baseline at `points` (0: a scrape failing, filled with 0)."""
    canary, baseline = _surge_fleet(seed, 1.0, 1.0, "cpu")
    paired = baseline.values["cpu"][np.isin(baseline.timestamps, canary.timestamps)]
    x = canary.values["cpu"]
    x[:] *= factor * (1 + np.random.default_rng(seed + 50).normal(0, jitter, len(x)))
    x[points] = fill * paired[points]
    return canary, baseline


def test_fills_at_002x_every_3rd_minute_do_not_widen_the_noise_that_excuses_them():
    """A 1.2x CPU (10% jitter) filled 0.02x every 3rd minute: the window's spread, measured over
    the fills too (each a relative difference of -2), passed the cut-off, nothing was left out,
    and the mean (-20.7%) passed. The spread leaves out the points it is asked about."""
    canary, baseline = _jittered_cpu(1, 1.2, 0.10, 0.02, np.arange(1, 61, 3))
    verdict, _ = _run(_policy(metrics=CPU_ONLY), canary, baseline)
    assert verdict.verdict != "pass", verdict.reason
    assert "reading 0 or next to it" in verdict.metrics[0].reason, verdict.reason


@pytest.mark.parametrize("seed", [3, 5])
def test_a_jittery_regressed_gauge_with_4_zeros_is_not_passed_at_the_end(seed):
    """A 1.15x CPU with 15% jitter and 4 zeros: the zeros widened the window's spread past the
    cut-off, were averaged in, and it passed at the end."""
    canary, baseline = _jittered_cpu(seed, 1.15, 0.15, 0.0, np.array([5, 16, 27, 38]))
    verdict, _ = _run(_policy(metrics=CPU_ONLY), canary, baseline)
    assert verdict.verdict != "pass", verdict.reason


def test_a_noisy_latency_filled_002x_every_3rd_step_is_not_passed(corpus, tmp_path):
    """nab5m-latency-shift-287 (a +44% latency shift, a paired spread above 0.2: no point is 5
    scales below its baseline) with the canary's latency 0.02x every 3rd step: the fills were
    averaged in, counted by no screen (above 1%), and it passed. Its baseline never falls below a
    tenth of its level: the screens count them as zeros (8 of 25)."""
    from gate.analysis import replay_case
    from tests.test_cli_replay import edited_case

    def edit(row, deploy):
        at = int(float(row["timestamp"]))
        if row["scope"] == "canary" and row.get("latency") and at >= deploy and (at - deploy) // 300 % 3 == 1:
            row["latency"] = repr(0.02 * float(row["latency"]))

    folder = edited_case(corpus / "nab5m-latency-shift-287", tmp_path / "fills", edit)
    verdict = replay_case(folder).verdict
    latency = next(m for m in verdict.metrics if m.name == "latency")
    assert verdict.verdict != "pass" and latency.verdict != "pass", latency.reason


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_gauge_whose_groups_both_dip_below_a_tenth_keeps_its_dips(seed):
    """A noisy gauge whose hosts both truly dip below a tenth of their level (3% of minutes, in
    history and window alike): the canary's dips are readings, none left out, a clean canary not
    failed."""
    rng = np.random.default_rng(seed)
    t = np.arange(DEPLOY - HISTORY_DAYS * DAY, DEPLOY + 3600 + STEP, STEP, dtype=np.int64)
    live = t >= DEPLOY

    def dipping(n):
        x = 100 * (1 + rng.normal(0, 0.3, n)).clip(0.2)
        return np.where(rng.random(n) < 0.03, 0.02 * x, x)

    canary, baseline = dipping(live.sum()), dipping(len(t))
    canary[[10, 40]] = 0.02 * baseline[live][[10, 40]]  # at least two dips in the window
    verdict, _ = _run(_policy(metrics=CPU_ONLY), Frame(STEP, t[live], {"cpu": canary}), Frame(STEP, t, {"cpu": baseline}))
    cpu = verdict.metrics[0]
    assert "reading 0 or next to it" not in cpu.reason and cpu.verdict != "fail", cpu.reason


def test_dip_share_reads_a_series_falling_below_a_tenth_of_its_level():
    from gate.judge.screens import _dip_share, _rarely_dips

    x = np.full(200, 50.0)
    assert _dip_share(x) == 0.0 and _rarely_dips(_dip_share(x))
    x[::20] = 1.0  # 5% of the points at 0.02x
    assert _dip_share(x) == pytest.approx(0.05) and not _rarely_dips(_dip_share(x))
    assert not _rarely_dips(0.0, 0.05)  # history quiet, window dipping: both must be rare
    assert not _rarely_dips(None, None) and _dip_share(np.full(5, 1.0)) is None


def test_points_left_out_as_no_reading_are_no_gaps_that_excuse_a_stopped_series():
    """A clean CPU with 4 zeros (two pairs, left out as no reading) whose series stops 4 minutes
    before the end: the zeros, counted as gaps, made its own gaps allow 4 behind (it passed);
    sent, they allow 3: the series stopped."""
    canary, baseline = _cpu_read_at(2, 1.0, 0.0, np.array([20, 21, 40, 41]))
    canary.values["cpu"][-4:] = np.nan  # its latency goes on
    policy = _policy(metrics=CPU_ONLY + [{"name": "latency", "kind": "gauge", "tolerance": 0.1}])
    verdict = Analysis(policy, MemorySource(canary, baseline), "r1", DEPLOY).evaluate(DEPLOY + policy.lifetime)
    assert verdict.verdict != "pass", verdict.reason
    assert "series stopped" in verdict.metrics[0].reason, verdict.metrics[0].reason


def test_a_real_noisy_pair_whose_canary_reads_0_twice_is_still_passed():
    """noisy-aa-000 (two real host groups side by side, a paired spread of 0.6): the canary's CPU
    reads 0 at 2 of 16 points beside a baseline that never dips. Readings: not left out of the mean
    (taken out, +16.5% could not be told within tolerance and it failed)."""
    from pathlib import Path

    from gate.analysis import replay_case

    case = Path(__file__).resolve().parent.parent / "bench" / "corpus-noisy" / "noisy-aa-000"
    if not case.is_dir():
        pytest.skip("bench/corpus-noisy not present")
    assert replay_case(case).verdict.verdict == "pass"
