"""Does `gate plan` predict the times the replays show? For recorded canary-vs-baseline cases:
the plan's time to pass (clean cases) and to fail (at the case's own injected effect) from the
baseline's history before the deploy, against `gate replay`'s decision on the case.

    .venv/bin/python -m bench.plan_calibration ../shared/corpus/dev --per-scenario 6

Labels (`scenario`, `injected`, `culprits`) are read here only to pick the effect and score.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from bench.run import find_cases, labels, pool_imap
from gate.analysis import replay_case
from gate.plan import Planner, read_recent
from gate.sources.replay import ReplaySource, load_case

# scenario -> (metric, how the injected label becomes a relative effect)
EFFECTS = {
    "aa": (None, lambda injected: 0.0),
    "cpu_shift": ("cpu", lambda injected: injected["cpu_relative_increase"]),
    "latency_shift": ("latency", lambda injected: next(v for k, v in injected.items() if "latency" in k) - (
        1.0 if next(k for k in injected if "latency" in k).endswith("factor") else 0.0)),
    "error_rate": ("errors", lambda injected: injected["error_rate_factor"] - 1.0),
}


def one(path: str) -> dict:
    case = load_case(path)
    meta = json.loads((Path(path) / "case.json").read_text(encoding="utf-8"))
    metric_name, effect_of = EFFECTS[meta["scenario"]]
    policy = case.policy()
    effect = effect_of(meta.get("injected") or {})
    row = {"case": case.id, "scenario": meta["scenario"], "effect": effect}
    try:
        history = read_recent(policy, ReplaySource(case), "plan", case.deployed_at)
        planner = Planner(policy, history, case.deployed_at, 1.0)  # one canary host next to one baseline host
        metric = policy.metric(metric_name) if metric_name else None
        passed, failed, whole = planner.judge(policy.lifetime, metric, effect)
        row["predicted_minutes"] = (whole if metric is None else failed.get(metric_name, (None,))[0])
        row["predicted_minutes"] = None if row["predicted_minutes"] is None else row["predicted_minutes"] / 60
    except Exception as e:  # noqa: BLE001 - reported, not fatal
        row["predicted_minutes"], row["error"] = None, f"{type(e).__name__}: {e}"[:200]
    verdict = replay_case(path).verdict
    row["actual"] = verdict.verdict
    row["actual_minutes"] = (verdict.evaluated_at - case.deployed_at) / 60
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.plan_calibration", description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--per-scenario", type=int, default=6)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "plan_calibration.json")
    args = parser.parse_args(argv)
    chosen = []
    for scenario in EFFECTS:
        cases = [p for p in find_cases(args.corpus, "k1m-*") if labels(p)["scenario"] == scenario]
        chosen += cases[: args.per_scenario]
    print(f"{len(chosen)} cases", file=sys.stderr)
    rows = list(pool_imap(one, [str(p) for p in chosen], args.jobs, "cases"))
    summary = {}
    for scenario in EFFECTS:
        mine = [r for r in rows if r["scenario"] == scenario and r["predicted_minutes"] is not None]
        decided = [r for r in mine if r["actual"] == ("pass" if scenario == "aa" else "fail")]
        summary[scenario] = {
            "cases": sum(r["scenario"] == scenario for r in rows),
            "median_predicted_minutes": statistics.median(r["predicted_minutes"] for r in mine) if mine else None,
            "median_actual_minutes": statistics.median(r["actual_minutes"] for r in decided) if decided else None,
            "actual_as_expected": len(decided),
        }
    args.out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1), encoding="utf-8")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
