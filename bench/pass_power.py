"""How early could any sound test pass the clean canaries? The evidence at the first checkpoint.

Passing early means showing every judged metric within its tolerance with the policy's
`pass_risk`. How many points that takes depends only on the noise of the paired excess
`canary - (1 + tolerance) x baseline` against its margin below zero, not on the judge's rules.
For every clean canary-vs-baseline case (`expect: pass`), this replays the judge up to its first
pass checkpoint (the minimum duration, half the lifetime by default), reads each metric's test
statistic z = -sum(excess) / sd(sum) and the checkpoint's critical value z*, and extrapolates
(z grows like the square root of the points for a steady canary) the points needed:
n x (z* / z)^2, as a share of the lifetime. A metric needing more than the points seen at the
checkpoint cannot be shown within tolerance there at that risk, by this judge or another, unless
it assumes less noise than the data has.

    .venv/bin/python -m bench.pass_power ../shared/corpus/dev
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from gate import judge
from gate.judge import classify
from gate.analysis import Analysis
from gate.sources.replay import ReplaySource, load_case


def evidence_at_first_checkpoint(case_dir: Path) -> tuple[float, dict[str, float]]:
    """The first checkpoint as a share of the lifetime, and per judged metric the share of the
    lifetime its test needs to show the metric within tolerance (inf: the estimate is not)."""
    case = load_case(case_dir)
    policy = case.policy().model_copy(update={"lifetime": case.end_at - case.deployed_at})
    min_duration = judge.minimum_duration(policy)
    at = min_duration / policy.lifetime
    needed: dict[str, float] = {}
    decide = classify._decide

    def spy(m, comparison, *args, **kwargs):  # reads the tests the judge ran; changes nothing
        shares = []
        for outcome in comparison.outcomes:
            test = outcome.test  # the raw excess: what passing rests on
            sd = math.sqrt(test.variance)
            z, critical = -test.total / sd, test.checkpoint_boundary / sd
            shares.append(math.inf if z <= 0 else at * (critical / z) ** 2)
        if shares:
            needed[m.name] = max(shares)
        return decide(m, comparison, *args, **kwargs)

    source = ReplaySource(case)
    source.visible_until = case.deployed_at + min_duration
    analysis = Analysis(policy, source, case.id, case.deployed_at, canary="canary", baseline="baseline")
    classify._decide = spy
    try:
        analysis.evaluate(case.deployed_at + min_duration)
    finally:
        classify._decide = decide
    return at, needed


def table(corpus: Path) -> list[str]:
    """The markdown table, one line per metric and family."""
    needed: dict[tuple[str, str], list[float]] = defaultdict(list)  # (family, metric) -> shares
    slowest: dict[str, list[float]] = defaultdict(list)  # family -> per case, its slowest metric's share
    checkpoint: dict[str, float] = {}
    for case_dir in sorted(p for p in corpus.iterdir() if (p / "case.json").exists()):
        labels = json.loads((case_dir / "case.json").read_text())  # labels: only to pick the clean cases
        if labels.get("family") != "canary-vs-baseline" or labels.get("expect") != "pass":
            continue
        family = labels["id"].split("-")[0]
        checkpoint[family], shares = evidence_at_first_checkpoint(case_dir)
        for name, share in shares.items():
            needed[(family, name)].append(share)
        slowest[family].append(max(shares.values(), default=math.inf))

    lines = ["| family | metric | clean cases | points needed to show it within tolerance (median, share of "
             "the lifetime) | cases with enough by the first checkpoint | by 60% of the lifetime |",
             "| --- | --- | --- | --- | --- | --- |"]
    rows = sorted(needed.items()) + [((f, "**every judged metric**"), s) for f, s in sorted(slowest.items())]
    for (family, name), shares in rows:
        s = np.array(shares)
        lines.append(f"| {family} | {name} | {len(s)} | {np.median(s):.0%} | {np.mean(s <= checkpoint[family]):.0%} "
                     f"| {np.mean(s <= 0.6):.0%} |")
    every = np.concatenate([np.array(s) for s in slowest.values()])
    lines.append(f"| all | **every judged metric** | {len(every)} | {np.median(every):.0%} | "
                 f"{np.mean(every <= min(checkpoint.values())):.0%} | {np.mean(every <= 0.6):.0%} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pass_power", description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path)
    args = parser.parse_args(argv)
    print("\n".join(table(args.corpus)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
