"""The statistics under known truth: fixed seeds, so the numbers are stable."""


import numpy as np
import pytest

from gate.stats.seasonal import DAY, fit_seasonal, robust_sd
from gate.stats.sequential import excursion_threshold, margin_test, mixture_boundary, mixture_rho

LOOKS = 60


def _runs_crossing(effect: float, runs: int, alpha: float, seed: int, prior_weight: float = 10.0) -> tuple[float, list]:
    """Share of simulated canaries whose sum of (canary - baseline - effect-free margin) ever
    crosses the fail boundary over LOOKS looks, and the look at which each did."""
    rng = np.random.default_rng(seed)
    crossed, when = 0, []
    for _ in range(runs):
        excess = rng.normal(effect, 1.0, LOOKS)
        for n in range(3, LOOKS + 1):
            test = margin_test(excess[:n], np.ones(n), alpha, 0.05, LOOKS // 2, prior_weight=prior_weight)
            if test.beyond:
                crossed += 1
                when.append(n)
                break
    return crossed / runs, when


def test_null_false_alarms_stay_within_budget_despite_looking_every_step():
    rate, _ = _runs_crossing(effect=0.0, runs=400, alpha=0.05, seed=1)
    assert rate <= 0.05


def test_a_fixed_sample_test_looked_at_every_step_would_blow_the_budget():
    # The reason for anytime-valid boundaries: z > 1.645 checked at 60 looks.
    rng = np.random.default_rng(2)
    alarms = 0
    for _ in range(400):
        s = np.cumsum(rng.normal(0, 1, LOOKS))
        alarms += bool(np.any(s / np.sqrt(np.arange(1, LOOKS + 1)) > 1.645))
    assert alarms / 400 > 0.15


def test_known_effects_are_detected_and_larger_ones_sooner():
    small, when_small = _runs_crossing(effect=0.75, runs=100, alpha=0.01, seed=3)
    large, when_large = _runs_crossing(effect=1.5, runs=100, alpha=0.01, seed=4)
    assert small >= 0.9 and large == 1.0
    assert np.median(when_large) < np.median(when_small)


def test_prior_variance_guards_the_first_looks():
    # Three points that happen to agree closely: the empirical spread alone would be tiny.
    excess = np.array([2.0, 2.01, 2.02])
    assert not margin_test(excess, np.full(3, 4.0), 0.01, 0.05, 30).beyond


def test_the_window_floor_keeps_a_window_noisier_than_its_prior_at_its_own_variance():
    """With window_floor the per-point variance is never below the window's own where the window
    contradicts it: five points scattering with variance 9 against an expected 1 are not pulled
    toward it (the blend, with the prior weighing as 10 points, takes about 3.2), and the test does
    not fail on them."""
    excess = np.array([7.0, 1.5, 6.5, 0.5, 5.0])
    prior = np.ones(5)
    blended = margin_test(excess, prior, 0.01, 0.05, 30)
    floored = margin_test(excess, prior, 0.01, 0.05, 30, window_floor=prior)
    own = float(np.var(excess, ddof=1))
    assert blended.variance < 5 * own <= floored.variance
    assert blended.beyond and not floored.beyond
    quiet = np.array([3.1, 2.9, 3.0, 3.2, 2.8])  # less scattered than the prior: the prior stays
    assert margin_test(quiet, prior, 0.01, 0.05, 30, window_floor=prior) == margin_test(quiet, prior, 0.01, 0.05, 30)
    # Once the window's points weigh as much as the prior (11 points against a weight of 10), its
    # own variance leads the blend: the floor is for the first few looks only.
    longer = np.tile(excess, 3)[:11]
    assert margin_test(longer, np.ones(11), 0.01, 0.05, 30, window_floor=np.ones(11)) == margin_test(longer, np.ones(11), 0.01, 0.05, 30)


def test_the_window_floor_holds_only_where_the_window_contradicts_what_the_history_expects():
    """A window scattering 2x the prior's variance is within what five points of it show by chance
    (chi-square, 4 df: beyond 2.37x in 5%): the blend stays, and an early fail keeps its power
    (an unconditional floor slowed every early fail). Against a history that expects that much
    at the points' own levels (a canary +90% carries its noise +90%), 9x is no contradiction."""
    excess = np.array([3.0, 1.0, 3.4, 1.2, 2.9])  # variance ~1.2: twice a prior of 0.6
    prior = np.full(5, 0.6)
    assert margin_test(excess, prior, 0.01, 0.05, 30, window_floor=prior) == margin_test(excess, prior, 0.01, 0.05, 30)
    wild = np.array([7.0, 1.5, 6.5, 0.5, 5.0])
    ones = np.ones(5)
    assert margin_test(wild, ones, 0.01, 0.05, 30, window_floor=np.full(5, 4.0)) == margin_test(wild, ones, 0.01, 0.05, 30)
    assert margin_test(wild, ones, 0.01, 0.05, 30, window_floor=ones) != margin_test(wild, ones, 0.01, 0.05, 30)


def test_checkpoint_pass_needs_the_estimate_clear_of_the_tolerance():
    rng = np.random.default_rng(5)
    within = margin_test(rng.normal(-1.0, 1.0, 30), np.ones(30), 0.01, 0.05, 15)
    at_margin = margin_test(rng.normal(0.0, 1.0, 30), np.ones(30), 0.01, 0.05, 15)
    assert within.within and not at_margin.within


def test_mixture_boundary_grows_slower_than_linear():
    rho = mixture_rho(30, 0.01)
    b30, b3000 = mixture_boundary(30, 0.01, rho), mixture_boundary(3000, 0.01, rho)
    assert b30 < b3000 < 100 * b30 / 5  # sqrt(V log V): ~10x the variance -> far less than 100x


def test_excursion_threshold_is_the_poisson_tail():
    assert excursion_threshold(0.0, 60, 0.001) == 3
    assert excursion_threshold(0.05, 60, 0.001) > excursion_threshold(0.01, 60, 0.001)


def _daily_series(days: float, step: int = 60, seed: int = 0):
    rng = np.random.default_rng(seed)
    t = np.arange(1_700_000_000 - int(days * DAY), 1_700_000_000, step, dtype=np.int64)
    shape = 50 + 20 * np.sin(2 * np.pi * (t % DAY) / DAY)
    return t, shape + rng.normal(0, 2, len(t)), shape


def test_seasonal_model_learns_the_daily_shape_and_its_noise():
    t, x, _ = _daily_series(7)
    model = fit_seasonal(t, x, 60)
    future = np.arange(1_700_000_000, 1_700_000_000 + 3 * 3600, 60, dtype=np.int64)
    truth = 50 + 20 * np.sin(2 * np.pi * (future % DAY) / DAY)
    assert np.max(np.abs(model.expected(future) - truth)) < 3.0
    assert np.all((model.scale(future) > 1.0) & (model.scale(future) < 4.0))


def test_seasonal_model_is_robust_to_an_incident_in_the_history():
    t, x, _ = _daily_series(7)
    clean = fit_seasonal(t, x, 60)
    incident = x.copy()
    # An outage last Tuesday: two hours at five times the level, at the same time of day.
    start = len(t) - 3 * 1440 - 180
    incident[start:start + 120] *= 5
    hurt = fit_seasonal(t, incident, 60)
    moment = t[start + 60] + 3 * DAY
    assert abs(hurt.expected(np.array([moment]))[0] - clean.expected(np.array([moment]))[0]) < 3.0


@pytest.mark.parametrize("glitch", [1e4, 1e6, 1e300])
def test_seasonal_model_ignores_glitch_points_in_the_history(glitch):
    """1% of the history written as an absurd value (a sensor glitch) spoils one bucket in seven:
    the model must still expect the daily shape with the noise it really has."""
    t, x, _ = _daily_series(7)
    clean = fit_seasonal(t, x, 60)
    glitched = x.copy()
    glitched[np.random.default_rng(3).random(len(x)) < 0.01] = glitch
    hurt = fit_seasonal(t, glitched, 60)
    future = np.arange(1_700_000_000, 1_700_000_000 + 3 * 3600, 60, dtype=np.int64)
    assert np.max(np.abs(hurt.expected(future) - clean.expected(future))) < 3.0
    assert np.max(hurt.scale(future)) < 2 * np.max(clean.scale(future))


@pytest.mark.parametrize("rate", [0.5, 3.0])
def test_seasonal_model_expects_a_skewed_count_at_its_mean(rate):
    """Clipping glitches must not turn bucket means into medians: a Poisson count of 0.5 a
    minute has a median of 0, and an expectation read from it would call every error a regression."""
    t = np.arange(1_700_000_000 - 7 * DAY, 1_700_000_000, 60, dtype=np.int64)
    x = np.random.default_rng(4).poisson(rate, len(t)).astype(float)
    model = fit_seasonal(t, x, 60)
    assert abs(np.mean(model.expected(t)) / rate - 1) < 0.1


def test_robust_sd_survives_quantized_data():
    held = np.repeat([30.0, 31.0, 30.0, 29.0], 50)
    assert robust_sd(held) > 0
    assert robust_sd(np.array([1.0])) != robust_sd(np.array([1.0]))  # NaN: nothing to say


@pytest.mark.parametrize("days", [1.0, 3.0, 15.0])
def test_seasonal_model_handles_short_and_long_histories(days):
    t, x, _ = _daily_series(days, step=300 if days > 10 else 60)
    model = fit_seasonal(t, x, 300 if days > 10 else 60)
    assert model is not None
    assert (model.weekly is not None) == (days >= 14)
    assert np.isfinite(model.expected(t[-10:])).all()


def test_the_latest_point_of_a_trend_is_beyond_only_when_the_line_ends_beyond():
    """The end-of-lifetime trend rule (issue 12, kind 5): the fitted latest excess against its
    own standard error, not a slope alone and not the mean."""
    rng = np.random.default_rng(5)
    noise = rng.normal(0, 0.3, 60)
    prior = np.full(60, 0.09)

    def test(excess):
        return margin_test(excess, prior, 0.001, 0.1, 15)

    leak = test(np.linspace(-3, 3, 60) + noise)  # within on average, beyond at the end
    assert leak.estimate_within and leak.latest_beyond(3.0)
    rising_but_within = test(np.linspace(-4, -0.5, 60) + noise)
    assert not rising_but_within.latest_beyond(3.0)
    flat = test(-1 + rng.normal(0, 1, 60))
    assert not flat.latest_beyond(3.0)
    assert not test(np.linspace(-3, 3, 7)).latest_beyond(3.0)  # too few points for a line


def test_the_time_of_day_profile_is_untouched_by_an_incident_day_a_dead_day_or_a_weekend():
    """A count's profile by time of day (gate.stats.counts.time_of_day_profile): at each 15-minute
    slot, the lower quartile across the history's days, an order statistic of days. One day at
    50x (an incident), one day at 0 (a dead source) and two quiet days (a weekend) of seven leave
    it at an ordinary quiet day's level; a slot fewer than `min_days` days reported makes no claim."""
    from gate.stats.counts import profile_at, time_of_day_profile

    step = 60
    t = np.arange(0, 7 * DAY, step, dtype=np.int64)
    day = t // DAY
    level = np.select([day == 2, day == 4, np.isin(day, (5, 6))], [50.0, 0.0, 0.5], 10.0)
    profile = time_of_day_profile(t, level, step, quantile=0.25, min_days=3)
    assert np.all(profile == 0.5)  # the second-lowest of 7 days: the dead one is the lowest
    assert np.all(time_of_day_profile(t, level, step, quantile=0.5, min_days=3) == 10.0)
    late = t >= 5 * DAY
    assert np.all(np.isnan(time_of_day_profile(t[late], level[late], step, quantile=0.25, min_days=3)))
    assert profile_at(profile, np.array([7 * DAY + 3600])) == pytest.approx([0.5])


def test_the_time_of_day_profile_is_read_at_its_lowest_within_an_hour_across_midnight():
    """The profile's slots are UTC's; a local day shifts an hour at a DST change (review: clean
    deploys the day after failed). Read with a spread, a slot takes the lowest claim within it,
    the day wrapping at midnight; slots without a claim (NaN) are skipped, none at all stays NaN."""
    from gate.stats.counts import profile_at

    profile = np.full(96, 10.0)
    profile[94] = 1.0  # 23:30 UTC
    profile[50] = np.nan
    at = np.array([0, 12 * 3600, 12 * 3600 + 1800])
    assert profile_at(profile, at, 3600) == pytest.approx([1.0, 10.0, 10.0], nan_ok=True)
    assert profile_at(profile, at)[0] == 10.0
    assert np.isnan(profile_at(np.full(96, np.nan), at, 3600)).all()
