"""Ways a regressed canary passed, found by a fail-open review: each is a regression the judge
must not pass (and the clean twin it must still pass)."""

import numpy as np
import pytest

from gate.series import Frame
from tests.test_judge import DAY, DEPLOY, HISTORY_DAYS, STEP, _host, _policy, _run


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
