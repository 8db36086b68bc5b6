"""Oracle check: how much later than an ideal test does the judge fail a known regression?

On simulated canaries whose truth is known (a Gaussian mean shift of a gauge, a Poisson rate
increase of errors out of requests), the judge runs the live loop (gate.analysis.Analysis, one
evaluation per step, each seeing only the past) and, on the same points, Wald's SPRT that knows
the true effect and the noise tests "at the tolerance" against "at the true effect" with the
policy's alpha (false alarms) and pass_risk (beta). The SPRT minimises the expected time to
decide among tests with those error rates, so the ratio judge / SPRT of median times to fail is
the price of not knowing the effect (and of the judge's guards: 5 points at least, budget shared
with its other tests). Under the null (no effect, or an effect exactly at the tolerance) it
measures the judge's false-alarm rate with a look every step.

    .venv/bin/python -m bench.oracle [--paths 200] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from gate import judge
from gate.analysis import Analysis
from gate.policy import Policy, parse_policy
from gate.series import Frame, Observations
from gate.sources import Query

PATHS = 300  # simulated canaries per setting
STEP = 60
LIFETIME = 120 * 60
HISTORY_DAYS = 7
DEPLOYED_AT = 1_704_715_200  # 2024-01-08T12:00:00Z
ALPHA, BETA = 0.01, 0.2  # the policy defaults: alpha, pass_risk

# Gaussian gauge: mean 50, noise 10% per group and point, tolerance 10%.
MEAN, NOISE, GAUGE_TOLERANCE = 50.0, 5.0, 0.1
# Poisson errors out of 1000 requests per minute in each group, 0.5% error rate, tolerance 50%.
REQUESTS, ERROR_RATE, COUNT_TOLERANCE = 1000, 0.005, 0.5

# (model, true relative effect): effect 0 and effect = tolerance are the nulls.
SETTINGS = [
    ("gaussian", 0.0), ("gaussian", 0.1), ("gaussian", 0.2), ("gaussian", 0.3), ("gaussian", 0.5),
    ("poisson", 0.0), ("poisson", 0.5), ("poisson", 1.0), ("poisson", 2.0),
]


def policy_for(model: str) -> Policy:
    if model == "gaussian":
        metrics = [{"name": "cpu", "kind": "gauge", "unit": "percent", "tolerance": GAUGE_TOLERANCE}]
    else:
        metrics = [
            {"name": "errors", "kind": "count", "tolerance": COUNT_TOLERANCE, "denominator": "requests"},
            {"name": "requests", "kind": "count", "bad_direction": "none", "tolerance": None},
        ]
    return parse_policy({
        "name": f"oracle-{model}", "source": {"type": "simulate"},
        "canary": {"scope": "canary"}, "baseline": {"scope": "baseline"},
        "interval": STEP, "lifetime": LIFETIME, "history": HISTORY_DAYS * 86400,
        "alpha": ALPHA, "pass_risk": BETA, "metrics": metrics,
    })


def simulate(model: str, effect: float, rng: np.random.Generator, points: int) -> tuple[dict, dict]:
    """(baseline, canary) values, metric -> array of `points`; the canary carries the effect."""
    if model == "gaussian":
        return ({"cpu": rng.normal(MEAN, NOISE, points)},
                {"cpu": rng.normal(MEAN * (1 + effect), NOISE, points)})
    volume = np.full(points, float(REQUESTS))
    return ({"errors": rng.poisson(ERROR_RATE * REQUESTS, points).astype(float), "requests": volume},
            {"errors": rng.poisson(ERROR_RATE * (1 + effect) * REQUESTS, points).astype(float), "requests": volume.copy()})


class MemorySource:
    """A MetricSource over in-memory frames that, like the replay source, never serves the
    future."""

    def __init__(self, canary: Frame, baseline: Frame):
        self.frames = {"canary": canary, "baseline": baseline}
        self.visible_until = None

    def fetch(self, query: Query) -> Observations:
        end = query.end if self.visible_until is None else min(query.end, self.visible_until)
        return Observations(canary=self.frames[query.canary].between(query.start, end),
                            baseline=self.frames[query.baseline].between(query.start, end))


class OneReference:
    """A reference cache shared by the paths of one setting: their histories are draws of the
    same process, so the judge learns it once (as a live gate reuses it across evaluations)."""

    def __init__(self):
        self.reference = None

    def key(self, *parts):
        return "oracle"

    def load(self, key):
        return self.reference

    def save(self, key, reference):
        self.reference = reference


def sprt_llr(model: str, effect: float, baseline: dict, canary: dict) -> np.ndarray:
    """Cumulative log-likelihood ratio, point by point, of "the canary is at the true effect"
    against "at the tolerance", knowing the noise (Gaussian) or, for counts, conditionally on the
    total of both groups (canary errors ~ Binomial(total, r / (1 + r)) at rate ratio r, which
    rids the test of the unknown baseline rate)."""
    if model == "gaussian":
        factor = 1 + GAUGE_TOLERANCE
        x = canary["cpu"] - factor * baseline["cpu"]  # mean 0 at the tolerance
        mu1 = MEAN * (effect - GAUGE_TOLERANCE)
        var = NOISE**2 * (1 + factor**2)
        return np.cumsum(mu1 / var * (x - mu1 / 2))
    theta0 = (1 + COUNT_TOLERANCE) / (2 + COUNT_TOLERANCE)
    theta1 = (1 + effect) / (2 + effect)
    c, b = canary["errors"], baseline["errors"]
    return np.cumsum(c * math.log(theta1 / theta0) + b * math.log((1 - theta1) / (1 - theta0)))


def sprt_decision(llr: np.ndarray, timestamps: np.ndarray) -> tuple[str, int]:
    """Wald's SPRT at the gate's looks (every step; the first look sees the points at the deploy
    and one step later): fail at the upper boundary, pass at the lower, else undecided."""
    upper, lower = math.log((1 - BETA) / ALPHA), math.log(BETA / (1 - ALPHA))
    for i in range(1, len(llr)):
        if llr[i] >= upper:
            return "fail", int(timestamps[i])
        if llr[i] <= lower:
            return "pass", int(timestamps[i])
    return "undecided", int(timestamps[-1])


@dataclass
class PathResult:
    judge: str
    judge_at: int  # minutes after the deploy
    judge_rule: str  # "test" (decided by the judge) or "end" (undecided at the end: the policy)
    sprt: str
    sprt_at: int


def run_paths(model: str, effect: float, seeds: range) -> list[dict]:
    policy = policy_for(model)
    points = LIFETIME // STEP + 1
    window_t = DEPLOYED_AT + STEP * np.arange(points, dtype=np.int64)
    history_points = HISTORY_DAYS * 86400 // STEP
    history_t = DEPLOYED_AT - STEP * np.arange(history_points, 0, -1, dtype=np.int64)
    history, _ = simulate(model, 0.0, np.random.default_rng([9, len(model)]), history_points)
    cache = OneReference()
    out = []
    for seed in seeds:
        rng = np.random.default_rng([SETTINGS.index((model, effect)), seed])
        baseline, canary = simulate(model, effect, rng, points)
        baseline_frame = Frame(STEP, np.concatenate([history_t, window_t]),
                               {k: np.concatenate([history[k], v]) for k, v in baseline.items()})
        source = MemorySource(Frame(STEP, window_t, canary), baseline_frame)
        analysis = Analysis(policy, source, f"oracle-{seed}", DEPLOYED_AT,
                            canary="canary", baseline="baseline", cache=cache)

        def advance(t: int) -> None:
            source.visible_until = t

        verdict, _ = analysis.run(wait=advance)
        by_end = verdict.reason.startswith("still undecided")
        sprt, sprt_at = sprt_decision(sprt_llr(model, effect, baseline, canary), window_t)
        out.append(PathResult(verdict.verdict, (verdict.evaluated_at - DEPLOYED_AT) // 60,
                              "end" if by_end else "test", sprt, (sprt_at - DEPLOYED_AT) // 60).__dict__)
    return out


def _task(args) -> list[dict]:
    return run_paths(*args)


def summarize(model: str, effect: float, paths: list[dict]) -> dict:
    n = len(paths)
    tolerance = GAUGE_TOLERANCE if model == "gaussian" else COUNT_TOLERANCE
    lifetime = LIFETIME // 60
    early = [p["judge_at"] for p in paths if p["judge"] == "fail" and p["judge_at"] < lifetime]
    row = {
        "model": model, "effect": effect, "tolerance": tolerance, "paths": n,
        "null": effect <= tolerance,
        # Failed by the anytime-valid tests at a look before the end of the lifetime ...
        "judge_fail_early_rate": len(early) / n,
        # ... and at the last look (the final rule, or an undecided canary failed by the policy).
        "judge_fail_at_end_rate": sum(p["judge"] == "fail" and p["judge_at"] >= lifetime for p in paths) / n,
        "judge_undecided_at_end_rate": sum(p["judge_rule"] == "end" for p in paths) / n,
        "judge_pass_rate": sum(p["judge"] == "pass" for p in paths) / n,
        "judge_median_min": statistics.median(early) if early else None,
    }
    if not row["null"]:  # the SPRT's alternative is the true effect: only beyond the tolerance
        sprt = [p["sprt_at"] for p in paths if p["sprt"] == "fail"]
        row["sprt_fail_rate"] = len(sprt) / n
        row["sprt_median_min"] = statistics.median(sprt) if sprt else None
        if row["judge_median_min"] and row["sprt_median_min"]:
            row["ratio"] = round(row["judge_median_min"] / row["sprt_median_min"], 2)
    return row


def run(paths: int = PATHS, jobs: int = 2) -> dict:
    chunks = 4
    tasks = [(model, effect, range(k, paths, chunks)) for model, effect in SETTINGS for k in range(chunks)]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(_task, tasks))
    rows = []
    for i, (model, effect) in enumerate(SETTINGS):
        merged = [p for chunk in results[i * chunks:(i + 1) * chunks] for p in chunk]
        rows.append(summarize(model, effect, merged))
    return {
        "alpha": ALPHA, "beta": BETA, "lifetime_min": LIFETIME // 60, "step_s": STEP,
        "gaussian": {"mean": MEAN, "noise": NOISE, "tolerance": GAUGE_TOLERANCE},
        "poisson": {"requests_per_step": REQUESTS, "error_rate": ERROR_RATE, "tolerance": COUNT_TOLERANCE},
        "settings": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.oracle")
    parser.add_argument("--paths", type=int, default=PATHS)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.paths, args.jobs), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
