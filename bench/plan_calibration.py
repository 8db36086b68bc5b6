"""Does `gate plan` predict the times the replays show? For recorded canary-vs-baseline cases:
the plan's time to pass (clean cases) and to fail (at the case's own injected effect) from the
baseline's history before the deploy, against `gate replay`'s decision on the case.

    .venv/bin/python -m bench.plan_calibration ../shared/corpus/dev --per-scenario 6

And do its answers mean what they say (issue 27)? `--answers N`: N clean cases of each
canary-vs-baseline source (k1m, nab5m), evenly spread; per judged metric with a tolerance, the
plan's answer (ok / at the end / too short) at the case's own canary share, then the case's real
canary window replayed with a 2x-tolerance regression of that metric injected (a shift for
gauges, a rate factor for counts: `backtest.inject`): caught or not, per answer. `too short`
should be caught <= 25%, `ok` >= 90%.

    .venv/bin/python -m bench.plan_calibration ../shared/corpus/dev --answers 12

The same over the baseline split by host (issue 27: the plan's canary from two groups), on the
one family whose cases hold two real series of a pair (bench.noisy_pairs): `--noisy-split DEV`,
each clean noisy case's two series over its history (rebuilt as bench.backtest_calibration's
`--noisy-split` rebuilds them) served as two hosts of the baseline group; per case the plan split
by host and, beside it, the plan from one group's history (the baseline's series alone, the
fallback and main's plan), each answer scored against the case's own window with a 2x regression.

    .venv/bin/python -m bench.plan_calibration bench/corpus-noisy --noisy-split ../shared/corpus/dev

Labels (`scenario`, `injected`, `culprits`, `expect`) are read here only to pick the effect and
the clean cases, and score.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

from bench.run import find_cases, labels, pool_imap
from gate.analysis import replay_case, replay_recorded
from gate.backtest import Injection, could_not_tell, inject, primary_kind, testable
from gate.plan import REGRESSION, Planner, read_recent
from gate.rules import Rule
from gate.sources.replay import Case, ReplaySource, load_case
from gate.stats.rates import proportion_interval

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


def canary_share(case: Case, policy) -> float:
    """The canary's share of the baseline's traffic in the case (what its team would give
    `--canary-share`): the ratio of a denominator's totals over the window, 1 without one."""
    denominators = [m.denominator for m in policy.metrics if m.denominator]
    if not denominators:
        return 1.0
    name = denominators[0]
    d, e = case.deployed_at, case.end_at
    canary = np.nansum(case.frames["canary"].between(d, e).values[name])
    baseline = np.nansum(case.frames["baseline"].between(d, e).values[name])
    return float(min(1.0, max(1e-4, canary / baseline))) if baseline > 0 else 1.0


def answers(path: str) -> list[dict]:
    """Per metric with a tolerance: the plan's answer, and whether the real canary window with a
    2x-tolerance regression injected was caught (failed for that metric, at any look)."""
    case = load_case(path)
    policy = case.policy()
    share = canary_share(case, policy)
    try:
        history = read_recent(policy, ReplaySource(case), "plan", case.deployed_at)
        planner = Planner(policy, history, case.deployed_at, share)
    except Exception as e:  # noqa: BLE001 - reported, not fatal
        return [{"case": case.id, "error": f"{type(e).__name__}: {e}"[:200]}]
    return scored(case, policy, {"": planner}, share)


def noisy_split_answers(args: tuple[str, str]) -> list[dict]:
    """A clean noisy case: the plan split by host (its two series as two hosts of the baseline
    group, `plan.read_groups` as `gate plan` reads them) and the plan from one group's history
    (the baseline's series alone), both at a share of one half (the canary one host of two)."""
    from bench.backtest_calibration import TwoHostSource, noisy_hosts
    from gate.plan import read_groups

    path, dev = args
    share = 0.5
    try:
        case, hosts = noisy_hosts(path, Path(dev))
        policy = case.policy()
        groups = read_groups(policy, TwoHostSource(case, hosts), "plan", case.deployed_at, share=share)
        split = Planner(policy, groups.baseline, case.deployed_at, share, canary_half=groups.canary_half)
        one = Planner(policy, read_recent(policy, ReplaySource(case), "plan", case.deployed_at), case.deployed_at, share)
    except Exception as e:  # noqa: BLE001 - reported, not fatal
        return [{"case": Path(path).name, "error": f"{type(e).__name__}: {e}"[:200]}]
    rows = scored(case, policy, {"": split, "one_group_": one}, share)
    for r in rows:
        r["mode"] = groups.mode
    return rows


def scored(case: Case, policy, planners: dict, share: float) -> list[dict]:
    """Each planner's answer per testable metric (keys prefixed by the planner's name), and the
    case's own window with that metric's 2x regression injected: caught or not."""
    rows = []
    for m in testable(policy):
        row = {"case": case.id, "metric": m.name, "share": round(share, 4)}
        try:
            for name, planner in planners.items():
                caught = planner.caught_within(m, policy.lifetime)
                row[f"{name}answer"] = planner.answer(m, policy.lifetime)
                row[f"{name}planned_minutes"] = None if caught is None else caught[0] / 60
        except Exception as e:  # noqa: BLE001
            row["error"] = f"{type(e).__name__}: {e}"[:200]
            rows.append(row)
            continue
        frames = dict(case.frames)
        frames["canary"] = inject(frames["canary"], policy, Injection(primary_kind(m), m.name, REGRESSION),
                                  case.deployed_at, policy.lifetime)
        injected = Case(case.id, case.path, case.step, case.deployed_at, case.end_at, case.metrics, frames)
        first: dict = {}

        def seen(verdict, name=m.name, first=first) -> None:
            for r in verdict.metrics:
                if r.name == name and r.verdict == "fail" and not could_not_tell(r) and not Rule(r.rule).not_reporting:
                    first.setdefault("at", verdict.evaluated_at - case.deployed_at)

        replay_recorded(injected, policy, on_verdict=seen)
        row["caught"] = "at" in first
        row["caught_minutes"] = first["at"] / 60 if "at" in first else None
        rows.append(row)
    return rows


def answer_summary(rows: list[dict], key: str = "answer") -> dict:
    out = {}
    for answer in ("ok", "at the end", "too short"):
        mine = [r for r in rows if r.get(key) == answer and "caught" in r]
        hits = sum(r["caught"] for r in mine)
        lo, hi = proportion_interval(hits, len(mine))
        out[answer] = {"metrics": len(mine), "caught": hits, "rate": round(hits / len(mine), 3) if mine else None,
                       "ci95": [round(lo, 3), round(hi, 3)]}
    out["errors"] = sum("error" in r for r in rows)
    return out


def main_answers(args) -> int:
    chosen = []
    for source in ("k1m-*", "nab5m-*"):
        clean = [p for p in find_cases(args.corpus, source) if labels(p)["expect"] == "pass"]
        chosen += clean[:: max(1, len(clean) // args.answers)][: args.answers]
    print(f"{len(chosen)} clean cases", file=sys.stderr)
    rows = [r for batch in pool_imap(answers, [str(p) for p in chosen], args.jobs, "cases") for r in batch]
    summary = {"all": answer_summary(rows)}
    for source in ("k1m", "nab5m"):
        summary[source] = answer_summary([r for r in rows if r["case"].startswith(source)])
    out = args.out.with_name("plan_answers.json") if args.out.name == "plan_calibration.json" else args.out
    out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1), encoding="utf-8")
    print(json.dumps(summary, indent=1))
    return 0


def main_noisy_split(args) -> int:
    clean = [str(p) for p in find_cases(args.corpus, "noisy-aa-*") if labels(p)["expect"] == "pass"]
    clean = clean[:: max(1, len(clean) // args.cases)] if args.cases else clean  # evenly spread
    print(f"{len(clean)} clean noisy cases", file=sys.stderr)
    rows = [r for batch in pool_imap(noisy_split_answers, [(p, str(args.noisy_split)) for p in clean], args.jobs,
                                     "cases") for r in batch]
    summary = {"cases": len(clean), "modes": sorted({r.get("mode", "error") for r in rows}),
               "split_by_host": answer_summary(rows), "one_group_history": answer_summary(rows, "one_group_answer")}
    out = args.out.with_name("plan_noisy_split.json") if args.out.name == "plan_calibration.json" else args.out
    out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1), encoding="utf-8")
    print(json.dumps(summary, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.plan_calibration", description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--per-scenario", type=int, default=6)
    parser.add_argument("--answers", type=int, default=0,
                        help="instead: N clean cases per source, the plan's answers against injected 2x regressions")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "plan_calibration.json")
    parser.add_argument("--cases", type=int, default=0, help="--noisy-split: N clean cases, evenly spread (0: all)")
    parser.add_argument("--noisy-split", type=Path, metavar="DEV",
                        help="the noisy folder: each clean case's plan split by host of its two series (rebuilt from "
                             "the dev corpus DEV) and from one group's history, against its window with a 2x regression")
    args = parser.parse_args(argv)
    if args.noisy_split:
        return main_noisy_split(args)
    if args.answers:
        return main_answers(args)
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
