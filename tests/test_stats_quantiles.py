"""The upper-quantile comparison (issue 23, item 4) under known truth: fixed seeds."""

import math

import numpy as np
import pytest

from gate.stats.quantiles import (
    binomial_threshold,
    centred_upper_quantile,
    local_median,
    paired_tail_exceedance,
    relative_difference,
    runs,
)


def test_relative_difference_is_over_the_pairs_mean_level_and_bounded():
    got = relative_difference(np.array([3.0, 100.0, 0.0, 0.0, 1e12]), np.array([1.0, 100.0, 0.0, 5.0, 1.0]))
    assert got[:4].tolist() == [1.0, 0.0, 0.0, -2.0]  # 3x is +100% of the mean level; both zero: 0
    assert 1.99 < got[4] <= 2.0  # an absurd point weighs as one point above any threshold, no more


def test_centred_upper_quantile_is_taken_about_the_median():
    x = np.arange(101, dtype=float) + 1000.0  # median 1050
    assert centred_upper_quantile(x, 0.99) == pytest.approx(49.0)
    assert centred_upper_quantile(np.array([np.nan]), 0.99) is None
    with pytest.raises(ValueError):
        centred_upper_quantile(x, 1.0)


def test_local_median_cuts_its_window_at_the_ends():
    x = np.array([1.0, 1.0, 1.0, 1.0, 9.0])
    assert local_median(x, 1).tolist() == [1.0, 1.0, 1.0, 1.0, 5.0]  # the latest point: [1, 9]
    assert local_median(x, 3).tolist() == [1.0, 1.0, 1.0, 1.0, 1.0]
    assert local_median(np.array([2.0, 8.0, 5.0]), 0).tolist() == [2.0, 8.0, 5.0]


def test_runs_counts_each_stretch_of_consecutive_points_once():
    assert runs(np.array([True, True, False, True])) == 2
    assert runs(np.array([False, False])) == 0 and runs(np.array([], dtype=bool)) == 0


def test_binomial_threshold_is_the_smallest_count_within_alpha():
    # P(Binomial(10, 1/2) >= 9) = 11/1024 = 0.0107, P(>= 8) = 56/1024 = 0.055 (by hand).
    assert binomial_threshold(0.5, 10, 0.011) == 9
    assert binomial_threshold(0.5, 10, 0.01) == 10
    assert binomial_threshold(1e-6, 60, 0.01) == 3  # never fewer than the minimum
    assert binomial_threshold(1.0, 10, 0.01) == 11  # every point above by chance: no count fails


def test_a_steady_offset_is_not_a_tail():
    rng = np.random.default_rng(1)
    baseline = 100 * np.exp(rng.normal(0, 0.05, 60))
    tail = paired_tail_exceedance(baseline * 1.3, baseline, 0.1, 0.99, 0.1, 60, 0.001)
    assert tail.above == 0 and not tail.beyond  # the level test's business, not this one's


def test_a_slow_tail_is_counted_and_fails():
    rng = np.random.default_rng(2)
    baseline = 100 * np.exp(rng.normal(0, 0.05, 60))
    canary = baseline * np.exp(rng.normal(0, 0.05, 60))
    canary[::7] *= 3  # 15% of the points three times slower: the mean +29%
    tail = paired_tail_exceedance(canary, baseline, 0.15, 0.99, 0.1, 60, 0.001)
    assert tail.above == len(canary[::7]) and tail.beyond, tail


def test_two_pods_trading_load_for_minutes_are_not_a_tail():
    """Real pods (shared/corpus/replicas) trade load: one +60% while the other is -40% for
    minutes. What lasts is taken out by the running median; a slow tail strikes a point at a time."""
    rng = np.random.default_rng(5)
    baseline = 100 * np.exp(rng.normal(0, 0.05, 72))
    canary = baseline * np.exp(rng.normal(0, 0.05, 72))
    for start in (10, 30, 50):
        canary[start:start + 8] *= 1.6
        baseline[start + 8:start + 14] *= 0.6
    tail = paired_tail_exceedance(canary, baseline, 0.15, 0.99, 0.1, 72, 0.001)
    assert not tail.beyond, tail


def test_spikes_both_ways_raise_the_chance_rate():
    """Two real hosts spike apart both ways; a slow tail goes one way. Points as far on the
    harmless side say how often the harmful side is reached by chance."""
    rng = np.random.default_rng(3)
    baseline = 100 * np.exp(rng.normal(0, 0.05, 60))
    canary = baseline.copy()
    canary[::10] *= 3
    one_way = paired_tail_exceedance(canary, baseline, 0.15, 0.99, 0.1, 60, 0.001)
    canary[5::10] /= 3
    both_ways = paired_tail_exceedance(canary, baseline, 0.15, 0.99, 0.1, 60, 0.001)
    assert one_way.beyond and not both_ways.beyond, (one_way, both_ways)
    assert both_ways.rate == pytest.approx(6 / 60)


@pytest.mark.parametrize("spread", [0.05, 0.3])
def test_false_alarms_of_a_clean_pair_stay_within_alpha_at_every_look(spread):
    """Canary and baseline of one distribution, the noise quantile learned from a history of the
    same noise: failing at any look of a 60-point lifetime happens at most alpha of the time."""
    rng = np.random.default_rng(4)
    alpha, runs, points = 0.05, 300, 60
    history = np.exp(rng.normal(0, spread, 5000))
    noise_quantile = centred_upper_quantile(relative_difference(history[1:], history[:-1]), 0.99)
    alarms = 0
    for _ in range(runs):
        baseline = 100 * np.exp(rng.normal(0, spread, points))
        canary = 100 * np.exp(rng.normal(0, spread, points))
        alarms += any(paired_tail_exceedance(canary[:n], baseline[:n], noise_quantile, 0.99, 0.0, points, alpha).beyond
                      for n in range(10, points + 1))
    limit = alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)
    assert alarms / runs <= limit, alarms / runs
