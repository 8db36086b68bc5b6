"""Which guardrail each fault of the simulated service fails on (issue 16's measurement).

    .venv/bin/python -m bench.guardrails [--seed 4]

Every scenario of the simulate source (`gate demo`'s policy, deployed as `gate demo` deploys it
for the seed) is judged to its end, with guardrails added: latency max 250 ms, cpu max 60 %,
errors max 1% and slo objective 99.9% (burn rate 14.4x: 1.44%), in three set-ups:

* `demo`: the demo policy plus the guardrails: which rule fails first;
* `blind`: the comparison with the baseline blinded (tolerance 100, no tail test): only a
  guardrail (or the canary-down check) can fail;
* `burn`: as `blind`, with the error budget alone on errors (no `max`).
"""

from __future__ import annotations

import argparse
import copy

from gate.analysis import Analysis
from gate.demo import DEMO_POLICY, demo_deployed_at
from gate.policy import parse_policy
from gate.sources.simulate import SCENARIOS, SimulateSource

LIMITS = {"latency": {"max": 250}, "cpu": {"max": 60}, "errors": {"max": 0.01, "slo": {"objective": 0.999}}}
SETUPS = {
    "demo": (LIMITS, False),
    "blind": (LIMITS, True),
    "burn": ({**LIMITS, "errors": {"slo": {"objective": 0.999}}}, True),
}


def policy_for(scenario: str, seed: int, limits: dict, blind: bool):
    data = copy.deepcopy(DEMO_POLICY)
    data["source"]["options"] = {"scenario": scenario, "seed": seed, "deployed_at": demo_deployed_at(seed)}
    for m in data["metrics"]:
        m.update(limits.get(m["name"], {}))
        if blind and m["bad_direction"] != "none":
            m.update(tolerance=100, tail=False)
    return parse_policy(data, origin=f"guardrails bench ({scenario})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.guardrails", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=4)
    args = parser.parse_args(argv)
    deployed = demo_deployed_at(args.seed)
    for name, (limits, blind) in SETUPS.items():
        print(f"## {name}")
        for scenario in SCENARIOS:
            policy = policy_for(scenario, args.seed, limits, blind)
            source = SimulateSource(scenario, args.seed, deployed)
            verdict, _ = Analysis(policy, source, f"{name}-{scenario}", deployed).run()
            deciding = [m for m in verdict.metrics if m.verdict == verdict.verdict and not m.muted][:1]
            what = "; ".join(f"{m.name} [{m.rule}] {m.reason}" for m in deciding) if verdict.verdict != "pass" else ""
            print(f"{scenario:17} {verdict.verdict:5} at +{(verdict.evaluated_at - deployed) // 60} min  {what}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
