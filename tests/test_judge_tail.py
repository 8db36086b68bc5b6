"""Issue 23, item 4: latency tails whose mean moves little are judged by an upper quantile too."""

import numpy as np
import pytest

from gate.policy import parse_policy
from tests.test_judge import _fleet, _policy, _run

LATENCY = [{"name": "latency", "kind": "gauge", "unit": "ms", "tolerance": 0.3}]


def _slow_tail_on_a_flat_latency(seed: int, share: float = 0.15, factor: float = 3.0):
    """A latency that sits on its floor most minutes (a cached endpoint: the real Kontrast KPIs of
    k1m-latency-tail-124 and -137 read 165 ms flat in both groups and their history), and a canary
    whose `share` of points are `factor` times slower."""
    canary, baseline = _fleet(seed)
    baseline.values["latency"][:] = 165.0
    canary.values["latency"][:] = 165.0
    slow = np.zeros(len(canary.values["latency"]), dtype=bool)
    slow[np.random.default_rng(seed).choice(len(slow), int(round(share * len(slow))), replace=False)] = True
    canary.values["latency"][slow] *= factor
    return canary, baseline


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_slow_tail_whose_mean_is_within_twice_the_tolerance_fails_before_the_end(seed):
    """15% of the points x3: the mean +30% at a 30% tolerance (under twice it), no history noise for
    the excursions to count in. Before the upper-quantile rule it was passed at the end of the
    lifetime (mean +29.5%, within the tolerance); its upper quantile shows it long before."""
    canary, baseline = _slow_tail_on_a_flat_latency(seed)
    verdict, at = _run(_policy(metrics=LATENCY), canary, baseline)
    latency = verdict.metrics[0]
    assert verdict.verdict == "fail" and at < 1.0, (at, verdict.reason)
    assert latency.rule == "upper-quantile-beyond-tolerance", latency.reason
    assert "30% above the baseline" in latency.reason and "slow tail" in latency.reason, latency.reason
    effect = latency.effect
    assert effect < 2 * 0.3, effect


def test_a_clean_flat_latency_is_not_failed_by_its_quantile():
    canary, baseline = _slow_tail_on_a_flat_latency(5, share=0.0)
    verdict, _ = _run(_policy(metrics=LATENCY), canary, baseline)
    assert verdict.verdict == "pass", verdict.reason


def test_a_slow_tail_within_the_tolerance_is_not_failed_by_its_quantile():
    """Points 25% slower at a 30% tolerance are within it, however many."""
    canary, baseline = _slow_tail_on_a_flat_latency(6, share=0.3, factor=1.25)
    verdict, _ = _run(_policy(metrics=LATENCY), canary, baseline)
    assert all(m.rule != "upper-quantile-beyond-tolerance" for m in verdict.metrics), verdict.reason


def test_clean_real_replica_pairs_judged_by_their_tail_are_not_failed(corpus):
    """Real pods spike independently (a cache 10x alone) and drift apart by +45..+67% for a
    minute: with every gauge judged by its tail (`tail: true`), the upper-quantile rule fails
    none of the clean real pairs of ../shared/corpus/replicas."""
    from gate.analysis import replay_case
    from gate.sources.replay import load_case

    replicas = corpus.parent / "replicas"
    clean = sorted(p for p in replicas.glob("replica-aa-*") if (p / "case.json").is_file())
    assert len(clean) >= 10, replicas
    failed = {}
    for path in clean:
        policy = load_case(path).policy()
        data = policy.model_dump(mode="json", exclude_none=True)
        data["metrics"] = [{**m, "tail": True} if m.get("kind") == "gauge" else m for m in data["metrics"]]
        policy = parse_policy(data)
        assert any(m.judges_tail for m in policy.metrics)
        result = replay_case(path, policy=policy)
        rules = [m.rule for m in result.verdict.metrics if m.verdict == "fail"]
        if "upper-quantile-beyond-tolerance" in rules:
            failed[path.name] = result.verdict.reason
    assert not failed, failed
