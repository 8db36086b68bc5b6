"""The history the judge learns from, over real HTTP (the fake Datadog): the baseline group's; a
new baseline group's (no history: new, or its tags renamed) is the canary group's, fetched then
only; with neither, the reference is learned from nothing: never a pass, said plainly, and never
cached for the rest of the deploy."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gate.analysis import Analysis
from gate.cache import ReferenceCache
from gate.judge import learn
from gate.series import Frame
from tests.moto_server import moto_server  # noqa: F401 (fixture)
from tests.test_datadog_source import BASELINE, CANARY, datadog_policy, env, serve  # noqa: F401 (fixtures)

CASE = "k1m-aa-039"  # a clean canary the judge passes; its canary group recorded no history
HISTORY_REQUESTS = 7  # the example policy's 14 days of minutes: one request per chunk, per group


def without_history(frame: Frame, deployed_at: int) -> Frame:
    before = frame.timestamps < deployed_at
    return Frame(frame.step, frame.timestamps, {n: np.where(before, np.nan, x) for n, x in frame.values.items()})


def new_baseline_group(case):
    """The baseline group is new (nothing before the deploy); the canary group ran the previous
    version before it (the recorded baseline's history), then the canary."""
    canary, baseline = case.frames["canary"], case.frames["baseline"]
    history = baseline.between(int(baseline.timestamps[0]), case.deployed_at - 1)
    window = canary.between(case.deployed_at, int(canary.timestamps[-1]))
    joined = Frame(canary.step, np.concatenate([history.timestamps, window.timestamps]),
                   {n: np.concatenate([history.values[n], window.values[n]]) for n in window.values})
    return dataclasses.replace(case, frames={"canary": joined, "baseline": without_history(baseline, case.deployed_at)})


def no_history_at_all(case):
    return dataclasses.replace(case, frames={scope: without_history(f, case.deployed_at)
                                             for scope, f in case.frames.items()})


def serving(fake, case) -> None:
    """The fake Datadog answers from `case` from now on (it lays a case's series out once)."""
    fake.case = case
    fake._series = {scope: (f.timestamps.astype(np.int64), dict(f.values)) for scope, f in case.frames.items()}


def looks(analysis, fake, minutes):
    """The verdicts at these minutes after the deploy, and the requests each look made."""
    verdicts, requests = [], []
    for m in minutes:
        now = analysis.deployed_at + 60 * m
        fake.moment["now"] = now
        before = len(fake.timeseries_requests())
        verdicts.append(analysis.evaluate(now))
        requests.append(len(fake.timeseries_requests()) - before)
    return verdicts, requests


def test_a_new_baseline_group_learns_from_the_canary_group_s_history_fetched_then_only(serve):
    """Review: the judge learns from the baseline's history only (the canary group's is never
    fetched), so a new baseline group left it a reference learned from nothing."""
    fake, source = serve(CASE)
    recorded = fake.case
    serving(fake, new_baseline_group(recorded))
    analysis = Analysis(datadog_policy(), source, "web-1.0", recorded.deployed_at, canary=CANARY, baseline=BASELINE)
    verdicts, requests = looks(analysis, fake, (10, 11))
    assert requests == [HISTORY_REQUESTS + HISTORY_REQUESTS + 1, 1]  # the canary group's history, once
    assert analysis.history_missing is None
    # The same model as the recorded baseline's history teaches (it is that history, under the canary's tags).
    policy = datadog_policy()
    history = dataclasses.replace(recorded, frames={"canary": recorded.frames["baseline"]})
    from gate.sources.replay import ReplaySource
    from gate.sources import Query

    seen = ReplaySource(history).fetch(Query(tuple(policy.metrics), "canary", None, recorded.deployed_at - policy.history,
                                             recorded.deployed_at - 61, 60))
    expected = learn(policy, seen, recorded.deployed_at)
    for name, ref in analysis.reference().metrics.items():
        assert ref.noise == pytest.approx(expected.metrics[name].noise, rel=1e-6), name
    assert all("no history" not in v.reason for v in verdicts)


def test_with_a_baseline_history_the_canary_group_s_is_never_fetched(serve):
    fake, source = serve(CASE)
    analysis = Analysis(datadog_policy(), source, "web-1.0", fake.case.deployed_at, canary=CANARY, baseline=BASELINE)
    _, requests = looks(analysis, fake, (10,))
    assert requests == [HISTORY_REQUESTS + 1]


def test_with_no_history_in_either_group_no_canary_is_passed_and_the_reason_says_why(serve, tmp_path):
    """The canary-vs-baseline judge passed this clean canary after 30 minutes on a reference
    learned from nothing (the window's own spread); now it holds it, and on_undecided decides."""
    fake, source = serve(CASE)
    serving(fake, no_history_at_all(fake.case))
    cache = ReferenceCache(tmp_path / "cache")
    analysis = Analysis(datadog_policy(), source, "web-1.0", fake.case.deployed_at, canary=CANARY, baseline=BASELINE,
                        cache=cache)
    lifetime = datadog_policy().lifetime // 60
    verdicts, requests = looks(analysis, fake, (30, lifetime))  # with its history: passed at both
    assert [v.verdict for v in verdicts] == ["inconclusive", "fail"]  # on_undecided: fail, at the end
    for v in verdicts:
        assert "no history to learn from: neither the baseline group" in v.reason
        assert CANARY in v.reason and BASELINE in v.reason
    # Nothing learned from nothing is kept: each look asks for the history again.
    assert requests == [2 * HISTORY_REQUESTS + 1] * 2
    assert not list((tmp_path / "cache").glob("*"))


def test_a_history_the_source_did_not_have_yet_is_learned_at_the_next_look(serve, tmp_path):
    """An empty answer (a source late, tags fixed during the deploy) is not cached for the rest
    of the deploy: the next look learns from the history and passes as it would have."""
    fake, source = serve(CASE)
    recorded = fake.case
    serving(fake, no_history_at_all(recorded))
    cache = ReferenceCache(tmp_path / "cache")
    analysis = Analysis(datadog_policy(), source, "web-1.0", recorded.deployed_at, canary=CANARY, baseline=BASELINE,
                        cache=cache)
    first, _ = looks(analysis, fake, (29,))
    serving(fake, recorded)
    then, requests = looks(analysis, fake, (30, 31))  # with its history from the start: passed at 30
    assert "no history" in first[0].reason
    assert then[0].verdict == "pass" and "no history" not in then[0].reason
    assert requests == [HISTORY_REQUESTS + 1, 1]
    assert len(list((tmp_path / "cache").glob("*"))) == 1


# -- CloudWatch (moto server): the canary group's history is a query without a baseline --------


def test_over_cloudwatch_a_new_baseline_group_learns_from_the_canary_group_s_history(moto_server, corpus,  # noqa: F811
                                                                                      monkeypatch):
    from gate.policy import parse_policy
    from gate.sources import open_source
    from gate.sources.replay import load_case
    from tests import test_cloudwatch_moto as cloudwatch

    moto_server.reset()
    case = new_baseline_group(load_case(corpus / CASE))
    monkeypatch.setattr(cloudwatch, "load_case", lambda _: case)  # publish this case, not the recorded one
    deployed_at, _ = cloudwatch.publish_case(moto_server, corpus / CASE)
    policy = parse_policy(cloudwatch.policy_data(history="1h"))
    analysis = Analysis(policy, open_source(policy), "web-42", deployed_at, canary=cloudwatch.ASG["canary"],
                        baseline=cloudwatch.ASG["baseline"])
    verdict = analysis.evaluate(deployed_at + 1800)
    reference = analysis.reference()  # learned from the canary group's hour (before: from nothing, no noise)
    assert all(reference.metrics[name].noise is not None for name in ("cpu", "memory", "latency"))
    assert analysis.history_missing is None and "no history" not in verdict.reason


def without_history_of(case, names):
    """Both groups' histories without the metrics `names` (tags renamed for those only)."""
    def cut(frame):
        before = frame.timestamps < case.deployed_at
        return Frame(frame.step, frame.timestamps,
                     {n: np.where(before, np.nan, x) if n in names else x for n, x in frame.values.items()})
    return dataclasses.replace(case, frames={scope: cut(f) for scope, f in case.frames.items()})


def test_a_history_missing_some_judged_metrics_is_missing_for_them(serve, tmp_path):
    """Review of the above: the check asked only whether the baseline reported any point of any
    judged metric, so a history with CPU alone (memory, latency, errors renamed) passed a clean
    canary at 30 minutes, judged on its window alone for the three others. Each judged metric
    needs its own history (MIN_HISTORY_POINTS points)."""
    fake, source = serve(CASE)
    serving(fake, without_history_of(fake.case, {"memory", "latency", "errors"}))
    analysis = Analysis(datadog_policy(), source, "web-1.0", fake.case.deployed_at, canary=CANARY, baseline=BASELINE,
                        cache=ReferenceCache(tmp_path / "cache"))
    [verdict], _ = looks(analysis, fake, (30,))
    assert verdict.verdict == "inconclusive" and "no history to learn from" in verdict.reason
    assert "memory, latency, errors" in verdict.reason and "cpu" not in verdict.reason.split("(at least")[0]


def test_a_rollout_step_of_a_deploy_without_history_is_never_passed(serve, tmp_path):
    """Review: a rollout step was handed the deploy's reference learned from nothing (through its
    KnownReference) without the deploy's `history_missing`: it passed at 30 minutes and at the
    end where the deploy's own look said inconclusive."""
    from types import SimpleNamespace

    from gate.rollout import Rollout

    fake, source = serve(CASE)
    serving(fake, no_history_at_all(fake.case))
    policy = datadog_policy()
    release = Analysis(policy, source, "web-1.0", fake.case.deployed_at, canary=CANARY, baseline=BASELINE)
    machine = SimpleNamespace(release=release, step_policy=policy, dry_run=True, deploy=None)
    step = Rollout.step_analysis(machine, {"set_at": fake.case.deployed_at, "step": 1})
    verdicts, _ = looks(step, fake, (30, policy.lifetime // 60))
    assert [v.verdict for v in verdicts] == ["inconclusive", "fail"], [v.reason for v in verdicts]
    assert all("no history to learn from" in v.reason for v in verdicts)


def history_shaped(case, names, keep):
    """Both groups' histories of `names` kept only where keep(index of the point before the deploy,
    number of those points) says so."""
    def cut(frame):
        before = np.flatnonzero(frame.timestamps < case.deployed_at)
        drop = np.zeros(len(frame.timestamps), dtype=bool)
        drop[before] = ~keep(np.arange(len(before)), len(before))
        return Frame(frame.step, frame.timestamps,
                     {n: np.where(drop, np.nan, x) if n in names else x for n, x in frame.values.items()})
    return dataclasses.replace(case, frames={scope: cut(f) for scope, f in case.frames.items()})


@pytest.mark.parametrize("names, keep", [
    ({"memory", "latency", "errors"}, lambda i, n: (i >= n - 60) & (i % 3 != 0)),  # 40 points of its last hour, ~20 pairs
    ({"memory", "latency", "errors"}, lambda i, n: i % 2 == 0),  # every second minute: no pair at all
    ({"requests"}, lambda i, n: i < 0),  # the denominator of errors/requests without history
], ids=["40-points-20-pairs", "every-second-minute", "denominator"])
def test_a_history_that_teaches_no_noise_model_is_missing_however_many_points(serve, tmp_path, names, keep):
    """Review round 4: the check counted points, the judge's noise model asks 30 pairs of
    neighbouring points: 40 points with 20 pairs, or 10 000 every second minute, passed a clean canary
    judged on its window alone; so did a ratio whose denominator had no history."""
    fake, source = serve(CASE)
    serving(fake, history_shaped(fake.case, names, keep))
    analysis = Analysis(datadog_policy(), source, "web-1.0", fake.case.deployed_at, canary=CANARY, baseline=BASELINE,
                        cache=ReferenceCache(tmp_path / "cache"))
    [verdict], _ = looks(analysis, fake, (30,))
    assert verdict.verdict == "inconclusive" and "no history to learn from" in verdict.reason, verdict.reason
    # (A count's missing minutes read as no events where its group reported: errors' history is
    # then zeros, a rate that fails any error of the canary, not nothing.)
    assert all(name in verdict.reason for name in names - {"errors"})
