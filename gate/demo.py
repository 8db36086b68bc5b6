"""`gate demo`: a whole canary release on the simulated service, time compressed.

The release is deployed at a simulated moment fixed by the seed (noon of a day of the simulated
week), and a virtual clock walks from the deploy to the end of the lifetime one interval at a time
(a short pause per step so the progress can be watched), as `gate check --watch` would in real
time: the same seed gives the same data and the same verdict, whenever it runs. Every evaluation
goes to the store and a decisive verdict writes its report, like any release.
"""

from __future__ import annotations

import json
import shlex
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

from gate.console import print_verdict
from gate.policy import Policy, parse_policy
from gate.sources.simulate import DAY, EXPECTED, SCENARIOS, SimulateSource, check_scenario
from gate.store import SqliteStore
from gate.verdict import EXIT_CODES, Verdict

DEFAULT_SCENARIO = "db_connections"
DEFAULT_SEED = 7
DEFAULT_PACE = 0.15  # seconds per simulated interval: 60 steps stay under 10 s
SIMULATED_WEEK = 1714953600  # 2024-05-06T00:00:00Z, a Monday: the seed picks the day, the deploy is at noon

_GAUGE = {"kind": "gauge", "bad_direction": "increase", "tolerance": 0.10}

# The same policy as examples/simulate.yaml (a test keeps them in step), built here so that
# `gate demo` works from any folder.
DEMO_POLICY = {
    "name": "demo-shop",
    "source": {"type": "simulate", "options": {"scenario": DEFAULT_SCENARIO, "seed": DEFAULT_SEED}},
    "canary": {"scope": "canary"},
    "baseline": {"scope": "baseline"},
    "interval": "1m",
    "lifetime": "1h",
    "history": "7d",
    "on_undecided": "fail",
    "alpha": 0.01,
    "metrics": [
        {"name": "cpu", **_GAUGE},
        {"name": "memory", **_GAUGE},
        {"name": "latency", **_GAUGE, "unit": "ms", "critical": True},
        {"name": "errors", "kind": "count", "denominator": "requests", "bad_direction": "increase",
         "tolerance": 0.50},
        {"name": "requests", "kind": "count", "bad_direction": "none"},
    ],
}


# `gate demo --rollout`: the canary's share of a simulated load balancer in three steps, each judged
# for at most 15 minutes. ARNs of no account: the simulated load balancer only names the groups.
_DEMO_ARN = "arn:aws:elasticloadbalancing:us-east-1:000000000000:"
DEMO_ROLLOUT = {
    "listener_arn": _DEMO_ARN + "listener/app/demo-shop/0000000000000000/0000000000000000",
    "canary_target_group": _DEMO_ARN + "targetgroup/demo-shop-canary/0000000000000001",
    "production_target_group": _DEMO_ARN + "targetgroup/demo-shop-production/0000000000000002",
    "steps": [5, 25, 50],
    "step_lifetime": "15m",
}


def demo_policy(scenario: str = DEFAULT_SCENARIO, seed: int = DEFAULT_SEED, deployed_at: int | None = None,
                rollout: bool = False) -> Policy:
    options: dict = {"scenario": check_scenario(scenario), "seed": seed}
    if deployed_at is not None:
        options["deployed_at"] = deployed_at
    data = {**DEMO_POLICY, "source": {"type": "simulate", "options": options}}
    if rollout:
        data["rollout"] = DEMO_ROLLOUT
    return parse_policy(data, origin="demo policy")


def demo_deployed_at(seed: int) -> int:
    """When the demo's canary starts: tied to the seed, not to the wall clock, so that the same
    seed replays the same data (the simulated service has a daily and a weekly shape)."""
    return SIMULATED_WEEK + (seed % 7) * DAY + DAY // 2


def run_demo(
    scenario: str | None = None,
    *,
    seed: int = DEFAULT_SEED,
    pace: float = DEFAULT_PACE,
    as_json: bool = False,
    store: str | Path | None = None,
    out: Console | None = None,
    err: Console | None = None,
) -> int:
    """Run the release; print the verdict (or its JSON); return the exit code of the verdict."""
    scenario = check_scenario(scenario or DEFAULT_SCENARIO)
    from gate.analysis import Analysis  # after the scenario check: the judge's imports are slow
    from gate.report import report_for

    out = out or Console()
    err = err or Console(stderr=True)
    deployed_at = demo_deployed_at(seed)
    policy = demo_policy(scenario, seed, deployed_at)
    stamp = datetime.fromtimestamp(time.time(), UTC).strftime("%Y%m%dT%H%M%S")
    release = f"demo-{scenario}-{stamp}"
    history = SqliteStore(store)
    history.start_release(release, deployed_at, {"policy": policy.name, "scenario": scenario, "seed": seed})
    history.record_event(release, "demo", {"scenario": scenario, "seed": seed})
    analysis = Analysis(policy, SimulateSource(scenario, seed, deployed_at), release, deployed_at, store=history)

    if not as_json:
        err.print(f"[bold]gate demo[/]: release {release} on the simulated service, scenario "
                  f"[bold]{scenario}[/] (seed {seed}): {EXPECTED[scenario]}; 1 simulated minute per step",
                  highlight=False)
    steps = len(list(analysis.steps()))
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f} min"),
                  console=err, disable=as_json, transient=False) as progress:
        task = progress.add_task("learning a week of history", total=steps)

        def wait(t: int) -> None:
            if pace > 0:
                time.sleep(pace)

        def show(v: Verdict) -> None:
            minute = (v.evaluated_at - deployed_at) // 60
            progress.update(task, completed=minute, description=f"minute {minute:>2}: {v.verdict:<12}")

        evaluation, evaluations = analysis.watch(wait=wait, on_verdict=show)

    verdict = evaluation.verdict
    history.record_event(release, "verdict", {"verdict": verdict.verdict, "evaluations": evaluations})
    report = report_for(analysis, evaluation, history) if verdict.decisive else None
    if as_json:
        print(json.dumps({**verdict.to_dict(), "scenario": scenario, "seed": seed, "evaluations": evaluations,
                          "store": str(history.path), "report": report}), flush=True)
    else:
        print_verdict(verdict, out, policy=policy, canary=analysis.canary, baseline=analysis.baseline)
        print_epilogue(out, scenario, verdict, release, evaluations, history.path, store is not None, report)
    return EXIT_CODES[verdict.verdict]


def print_epilogue(out: Console, scenario: str, verdict: Verdict, release: str, evaluations: int,
                   path: Path, own_store: bool, report: str | None, command: str = "gate demo") -> None:
    """Where the evaluations and the report are, and what else to try. A command is a line of
    its own, never wrapped (soft_wrap): a log or a narrow terminal must not cut it in two."""
    out.print(f"{evaluations} evaluations recorded in {path}; list them with:", highlight=False, soft_wrap=True)
    listing = ["gate", "history", release] + (["--store", str(path)] if own_store else [])
    out.print(f"  {shlex.join(listing)}", highlight=False, soft_wrap=True)
    if report:
        out.print(f"report: {report}", highlight=False, soft_wrap=True)
    if verdict.verdict == "fail" and scenario != "healthy":
        out.print(f"{scenario} is a faulty release: this fail is the gate working. A pass:", highlight=False)
        out.print(f"  {command} healthy", highlight=False, soft_wrap=True)
    others = [s for s in SCENARIOS if s != scenario]
    out.print(f"other scenarios ({command} SCENARIO): {', '.join(others)}", style="dim", highlight=False)
