"""History-only (no baseline group), a count with a denominator is a ratio (review, reproduced):
it was compared as raw events against their seasonal history, so a canary whose requests fell to
a third with the same errors (its error rate tripled) passed at -9%, and one whose requests query
answered nothing in the window passed with its error-ratio limit never measured."""

from __future__ import annotations

import pytest

from gate.analysis import Analysis
from gate.series import Frame, Observations
from tests.test_judge import DEPLOY, HISTORY_DAYS, MemorySource, _fleet, _policy

RATIO = [{"name": "errors", "kind": "count", "denominator": "requests", "tolerance": 0.5},
         {"name": "requests", "kind": "count", "bad_direction": "none", "tolerance": None}]


def history_only(requests_divided_by: float, metrics=RATIO, source=MemorySource):
    canary, _ = _fleet(17, canary_start=DEPLOY - HISTORY_DAYS * 86400)
    after = canary.timestamps >= DEPLOY
    canary.values["requests"][after] /= requests_divided_by  # the same errors out of fewer requests
    verdict, _ = Analysis(_policy(baseline=False, metrics=metrics), source(canary, None), "r1", DEPLOY).run()
    return verdict, next(m for m in verdict.metrics if m.name == "errors")


def test_an_error_rate_tripled_by_fewer_requests_is_not_passed():
    verdict, errors = history_only(3.0)
    assert verdict.verdict == "fail", verdict.reason
    assert errors.verdict == "fail" and errors.effect > 1.0, (errors.rule, errors.reason, errors.effect)


def test_the_same_ratio_at_its_usual_volume_still_passes():
    verdict, errors = history_only(1.0)
    assert verdict.verdict == "pass", verdict.reason
    assert abs(errors.effect) < 0.5, errors.reason


class NoRequestsAfterDeploy(MemorySource):
    def fetch(self, query):
        seen = super().fetch(query)
        if query.end > DEPLOY:  # the window's fetch: the requests query answers no series
            c = seen.canary
            seen = Observations(Frame(c.step, c.timestamps, {k: v for k, v in c.values.items() if k != "requests"}))
        return seen


@pytest.mark.parametrize("tolerance, limit", [(0.5, None), (None, 0.02)], ids=["tolerance", "max"])
def test_a_ratio_whose_denominator_is_dead_in_the_window_is_never_passed(tolerance, limit):
    metrics = [{**RATIO[0], "tolerance": tolerance, **({"max": limit} if limit else {})}, RATIO[1]]
    verdict, errors = history_only(5.0, metrics, NoRequestsAfterDeploy)
    assert verdict.verdict != "pass", verdict.reason
    assert errors.verdict != "pass" and "denominator requests" in errors.reason, errors.reason


def surge(rate_factor: float, traffic_up_before: int, metrics) -> tuple:
    """Requests x3 from `traffic_up_before` minutes before the deploy (errors at the usual 1% of
    them), the error rate x`rate_factor` from the deploy on."""
    import numpy as np

    canary, _ = _fleet(17, canary_start=DEPLOY - HISTORY_DAYS * 86400)
    rng = np.random.default_rng(117)
    t = canary.timestamps
    busy, after = t >= DEPLOY - traffic_up_before * 60, t >= DEPLOY
    requests = rng.poisson(3000 * (1 + 0.3 * np.sin(2 * np.pi * (t % 86400) / 86400))).astype(float)
    errors = rng.poisson(0.01 * requests * np.where(after, rate_factor, 1.0)).astype(float)
    canary.values["requests"][busy], canary.values["errors"][busy] = requests[busy], errors[busy]
    verdict, _ = Analysis(_policy(baseline=False, metrics=metrics), MemorySource(canary, None), "r1", DEPLOY).run()
    return verdict, next(m for m in verdict.metrics if m.name == "errors")


DEPARTURE_ONLY = [{**RATIO[0], "tolerance": None}, RATIO[1]]


def test_traffic_that_rose_before_the_deploy_does_not_excuse_a_doubled_error_rate():
    """Review, reproduced: the hour before the deploy's offset (learned on the raw events, traffic
    up) was subtracted from a ratio already scaled by the volume, excusing the rise twice: a
    doubled error rate, judged on departures only, passed at +91%."""
    verdict, errors = surge(2.0, 60, DEPARTURE_ONLY)
    assert verdict.verdict == "fail", errors.reason
    clean, _ = surge(1.0, 60, DEPARTURE_ONLY)
    assert clean.verdict == "pass", clean.reason


def test_the_minimum_volume_holds_in_history_only_as_beside_a_baseline():
    """Review, reproduced: `min_events` was read beside a baseline only; history-only passed a
    +32% error rate on 55k requests where 100k were required."""
    verdict, errors = history_only(1.0, [{**RATIO[0], "min_events": 10**9}, RATIO[1]])
    assert verdict.verdict != "pass" and errors.rule == "minimum-volume", errors.reason
    assert "needs 1000000000" in errors.reason
