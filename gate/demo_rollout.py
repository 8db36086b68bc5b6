"""`gate demo --rollout`: a traffic rollout on the simulated service and a simulated load balancer.

The same step machine as `gate rollout` (gate.rollout), on a virtual clock: the canary's share of
the simulated load balancer goes 5% -> 25% -> 50%, each step judged as a canary of its own. The
scenario's fault shows once the canary takes the last step's share (a connection pool that runs
dry under load, a slow path that load exposes): the first steps pass, the last one fails, and the
canary's traffic goes back to 0% at once. `healthy` passes every step. Everything is recorded in
the store, as a real rollout is (`gate history` shows the traffic changes among the verdicts).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from gate.console import print_verdict
from gate.demo import DEFAULT_SCENARIO, demo_deployed_at, demo_policy, print_epilogue
from gate.simulated_alb import SimulatedForward
from gate.sources.simulate import SimulateSource, check_scenario
from gate.store import SqliteStore
from gate.traffic import Weights, canary_share

NEVER = 2**62  # the fault's start before the canary takes the last step's share: not yet


class VirtualClock:
    """The demo's time: moved by the rollout's waits, one interval per look."""

    def __init__(self, start: int):
        self.t = start

    def __call__(self) -> float:
        return float(self.t)


def run_rollout_demo(scenario: str | None = None, *, seed: int, pace: float, as_json: bool = False,
                     store: str | Path | None = None, out: Console | None = None,
                     err: Console | None = None) -> int:
    """Run the rollout; print each traffic change and the last step's verdict; its exit code."""
    scenario = check_scenario(scenario or DEFAULT_SCENARIO)
    from gate import rollout as steps  # after the scenario check: the judge's imports are slow
    from gate.analysis import Analysis
    from gate.report import report_for

    out, err = out or Console(), err or Console(stderr=True)
    deployed_at = demo_deployed_at(seed)
    policy = demo_policy(scenario, seed, deployed_at, rollout=True)
    spec = policy.rollout
    release = f"demo-rollout-{scenario}-{datetime.fromtimestamp(time.time(), UTC).strftime('%Y%m%dT%H%M%S')}"
    history = SqliteStore(store)
    history.start_release(release, deployed_at, {"policy": policy.name, "scenario": scenario, "seed": seed})
    history.record_event(release, "demo", {"scenario": scenario, "seed": seed, "rollout": True})
    clock = VirtualClock(deployed_at)
    service = SimulateSource(scenario, seed, NEVER)

    def under_load(weights: Weights) -> None:
        if canary_share(spec, weights) >= spec.steps[-1] and service.deployed_at == NEVER:
            service.deployed_at = clock.t  # the fault shows from here (after the version's warm-up)

    analysis = Analysis(policy, service, release, deployed_at, store=history)
    machine = steps.Rollout(analysis, SimulatedForward(spec, on_set=under_load), clock=clock)
    if not as_json:
        err.print(f"[bold]gate demo --rollout[/]: release {release}, scenario [bold]{scenario}[/] (seed {seed}): "
                  f"the canary's traffic {' -> '.join(f'{p}%' for p in spec.steps)} on a simulated load balancer, "
                  f"each step judged up to {spec.step_lifetime // 60} min; "
                  + ("no fault: every step should pass" if scenario == "healthy" else
                     f"the fault shows at {spec.steps[-1]}%: that step should fail and roll back"), highlight=False)
    looks, at_step = 0, 0

    def wait(t: int) -> None:
        clock.t = t
        if pace > 0:
            time.sleep(pace)

    def show(seen: steps.Look) -> None:
        nonlocal looks, at_step
        looks += 1
        if not as_json and seen.status in ("started", "advanced", "rolled_back", "complete", "undecided"):
            step = f"step {at_step} ({machine.percent(at_step)}%)"
            said = {"advanced": f"{step} passed, ", "rolled_back": f"{step} failed, "}.get(seen.status, "")
            out.print(f"minute {(clock.t - deployed_at) // 60:>2}: {said}{seen.summary()}", highlight=False)
        at_step = seen.step

    seen = steps.watch(machine, wait, show)
    report = None
    if machine.evaluation is not None and machine.evaluation.verdict.decisive:
        report = report_for(machine.judged, machine.evaluation, history)
    if as_json:
        print(json.dumps({**seen.to_dict(), "scenario": scenario, "seed": seed, "looks": looks,
                          "store": str(history.path), "report": report}), flush=True)
    elif seen.verdict is not None:
        out.print()
        print_verdict(seen.verdict, out, policy=machine.step_policy, canary=analysis.canary, baseline=analysis.baseline)
        print_epilogue(out, scenario, seen.verdict, release, len(history.evaluations(release)), history.path,
                       store is not None, report, command="gate demo --rollout")
    return seen.exit_code
