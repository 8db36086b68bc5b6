"""Replay a corpus through the judge and its peers, score them, write the report.

    .venv/bin/python -m bench.run ../shared/corpus/dev --jobs 2

writes bench/results.json (every case, every gate) and, for a full run (no --only),
docs/benchmarks.md and docs/benchmarks.png. `python -m bench.report bench/results.json`
re-renders the report from saved results.

Labels (`expect`, `scenario`, `family`) are read here only to score; the judge and the peers
get the case through gate.sources.replay, which never reads them.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from bench import oracle, pass_power, report
from bench.peers import PEERS
from gate import judge as the_judge
from gate.analysis import replay_case
from gate.sources.replay import load_case

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


class TimedJudge:
    """The judge, with each call timed: learning once per release apart from evaluations."""

    def __init__(self, judge=the_judge):
        self.judge = judge
        self.learn_seconds = 0.0
        self.evaluate_seconds: list[float] = []

    def learn(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self.judge.learn(*args, **kwargs)
        finally:
            self.learn_seconds += time.perf_counter() - started

    def evaluate(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self.judge.evaluate(*args, **kwargs)
        finally:
            self.evaluate_seconds.append(time.perf_counter() - started)


def labels(path: Path) -> dict:
    meta = json.loads((path / "case.json").read_text(encoding="utf-8"))
    return {
        "case": meta.get("id", path.name),
        "family": meta["family"],
        "scenario": meta["scenario"],
        "expect": meta["expect"],
        "step": int(meta["step_seconds"]),
        "source": path.name.split("-")[0],  # k1m, nab5m, kontrast
        # Clean but already beyond a tolerance (shared/corpus/FORMAT.md): scored neither way.
        "ambiguous": bool(meta.get("ambiguous")),
    }


def _decision(verdict: str, decided_at: int, deployed_at: int, end_at: int) -> dict:
    lifetime = end_at - deployed_at
    return {
        "verdict": verdict,
        "minutes": round((decided_at - deployed_at) / 60, 2),
        "share": round((decided_at - deployed_at) / lifetime, 4),
    }


def judge_one(path: str, alpha: float | None = None) -> dict:
    """Our judge on one case, as `gate replay` runs it (`alpha`: the policy's, overridden). An
    error or a crash is recorded as such (and scored as a fail: the gate fails closed)."""
    case = load_case(path)
    timed = TimedJudge()
    started = time.perf_counter()
    try:
        result = replay_case(path, judge=timed, alpha=alpha)
        out = _decision(result.verdict.verdict, result.verdict.evaluated_at, case.deployed_at, case.end_at)
        out["reason"] = result.verdict.reason[:300]
        out["evaluations"] = result.evaluations
        # Why a metric was still undecided at the verdict (at the end: what on_undecided decided on).
        out["undecided"] = sorted({m.rule for m in result.verdict.metrics if m.verdict == "inconclusive"})
    except Exception as e:  # noqa: BLE001 - a crash is a result of the benchmark, not its end
        out = _decision("error", case.end_at, case.deployed_at, case.end_at)
        out["reason"] = f"{type(e).__name__}: {e}"[:300]
        out["evaluations"] = len(timed.evaluate_seconds)
    out["seconds"] = round(time.perf_counter() - started, 4)
    out["learn_seconds"] = round(timed.learn_seconds, 4)
    out["evaluate_seconds"] = [round(s, 5) for s in timed.evaluate_seconds]
    out["judged_metrics"] = sum(1 for m in case.metrics if m.get("bad_direction") != "none")
    return out


def peers_one(path: str) -> dict:
    case = load_case(path)
    history_only = len(case.frames.get("baseline") or ()) == 0
    names = ["three_sigma"] if history_only else ["kayenta", "threshold", "threshold_last5"]
    out = {}
    for name in names:
        v = PEERS[name](case)
        out[name] = _decision(v.verdict, v.decided_at, case.deployed_at, case.end_at)
        out[name]["reason"] = v.reason[:300]
    return out


def judge_version() -> str:
    """The commit the judge was measured at, `+dirty` when gate/ had uncommitted changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--", "gate") else "")


def find_cases(corpus: Path, only: str | None) -> list[Path]:
    cases = sorted(p for p in corpus.iterdir() if (p / "case.json").is_file())
    if only:
        cases = [p for p in cases if fnmatch.fnmatch(p.name, only)]
    return cases


def pool_imap(fn, items: list, jobs: int, what: str) -> Iterator:
    """`fn` over `items` on `jobs` processes, results in order as they come, progress on stderr."""
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for i, r in enumerate(pool.map(fn, items, chunksize=2), start=1):
            yield r
            if i % 50 == 0 or i == len(items):
                print(f"  {what}: {i}/{len(items)}", file=sys.stderr, flush=True)


def _pool_map(fn, paths: list[str], jobs: int, what: str) -> list:
    return list(pool_imap(fn, paths, jobs, what))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path, help="folder of case folders (e.g. ../shared/corpus/dev)")
    parser.add_argument("--out", type=Path, default=HERE / "results.json", help="where to write every result")
    parser.add_argument("--jobs", type=int, default=2, help="processes replaying cases")
    parser.add_argument("--only", help="glob on case folder names, e.g. 'k1m-aa-0*' (skips the docs)")
    parser.add_argument("--oracle-paths", type=int, default=oracle.PATHS, help="simulated canaries per oracle setting (0: skip)")
    parser.add_argument("--docs", action=argparse.BooleanOptionalAction, default=None,
                        help="write docs/benchmarks.md and .png (default: on a full run only)")
    args = parser.parse_args(argv)

    cases = find_cases(args.corpus, args.only)
    if not cases:
        parser.error(f"no case folder in {args.corpus}" + (f" matching {args.only!r}" if args.only else ""))
    paths = [str(p) for p in cases]
    print(f"{len(paths)} cases, {args.jobs} jobs", file=sys.stderr)

    load_at_start = os.getloadavg()[0]  # the machine may be shared: the wall time depends on it
    started = time.perf_counter()
    ours = _pool_map(judge_one, paths, args.jobs, "judge")
    judge_wall = time.perf_counter() - started
    peers = _pool_map(peers_one, paths, args.jobs, "peers")

    rows = []
    for path, o, p in zip(cases, ours, peers):
        rows.append({**labels(path), "ours": o, **p})
    by_family: dict[str, list[float]] = {}
    for path, o in zip(cases, ours):
        by_family.setdefault(labels(path)["family"], []).extend(o["evaluate_seconds"])
    speed = {
        "jobs": args.jobs,
        "cpus": os.cpu_count(),
        "load_average_at_start": round(load_at_start, 1),
        "cases": len(rows),
        "wall_seconds": round(judge_wall, 1),
        # judge.evaluate alone (the reference learned once per release is cached), per family:
        # canary-vs-baseline cases have 5 KPIs (4 judged), history-only ones 1.
        "evaluate_ms": {family: {
            "n": len(times),
            "median": round(1000 * statistics.median(times), 2),
            "p90": round(1000 * report.percentile(times, 90), 2),
            "mean": round(1000 * statistics.fmean(times), 2),
            "max": round(1000 * max(times), 1),
        } for family, times in by_family.items() if times},
        "learn_s_median": round(statistics.median(o["learn_seconds"] for o in ours), 3),
        "case_s_median": round(statistics.median(o["seconds"] for o in ours), 3),
    }
    for o in ours:
        del o["evaluate_seconds"]  # summarised above; keeps the file small
    results = {"corpus": str(args.corpus), "only": args.only, "judge_version": judge_version(),
               "speed": speed, "cases": rows}
    if args.oracle_paths > 0:
        results["oracle"] = oracle.run(paths=args.oracle_paths, jobs=args.jobs)
    if args.only is None:
        results["pass_power"] = pass_power.table(args.corpus)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(report.markdown(results))
    docs = args.docs if args.docs is not None else args.only is None
    if docs:
        report.write(results, ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "benchmarks.png")
        print(f"wrote {ROOT / 'docs' / 'benchmarks.md'} and benchmarks.png", file=sys.stderr)
    print(f"results in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
