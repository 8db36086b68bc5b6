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
