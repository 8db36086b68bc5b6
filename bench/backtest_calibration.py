"""Is `gate backtest` calibrated? Its predicted false-alarm rate, from each clean case's own
history, against the judge's actual outcome on the clean cases of the same source.

    .venv/bin/python -m bench.backtest_calibration ../shared/corpus/dev --only 'k1m-*' --cases 24 --windows 8

For every clean case (labels `expect: pass`; read here only to score): the backtest of the
case's policy over the history before its deploy (replay source: the canary window is never
read) gives a predicted rate; `gate replay`'s verdict on the case itself is the outcome. Over the
cases, the mean predicted rate should match the observed false-alarm rate (within its interval).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from bench.run import find_cases, labels, pool_imap
from gate.analysis import replay_case
from gate.backtest import DAY, backtest
from gate.sources.replay import ReplaySource, load_case
from gate.stats.rates import proportion_interval


def one(args: tuple[str, int]) -> dict:
    path, windows = args
    case = load_case(path)
    policy = case.policy()
    first = min(int(f.timestamps[0]) for f in case.frames.values() if len(f))
    days = (case.deployed_at - first) / DAY
    row = {"case": case.id, "history_days": round(days, 2)}
    try:
        result = backtest(policy, ReplaySource(case), days=days, windows=windows, jobs=1, recommend=False)
        aa = result.to_dict()["overall"]["false_alarms"]
        row.update(predicted=aa["rate"], windows=aa["of"], mode=result.history.mode)
    except Exception as e:  # noqa: BLE001 - a case the backtest cannot cut is reported, not fatal
        row.update(predicted=None, error=f"{type(e).__name__}: {e}"[:200])
    row["actual"] = replay_case(path).verdict.verdict
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backtest_calibration", description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--only", default="k1m-*", help="glob on case folder names (one source at a time)")
    parser.add_argument("--cases", type=int, default=24, help="clean cases to take (evenly spread)")
    parser.add_argument("--windows", type=int, default=8, help="backtest windows per case")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "backtest_calibration.json")
    args = parser.parse_args(argv)

    clean = [p for p in find_cases(args.corpus, args.only) if labels(p)["expect"] == "pass"]
    chosen = clean[:: max(1, len(clean) // args.cases)][: args.cases]
    print(f"{len(chosen)} of {len(clean)} clean cases, {args.windows} windows each", file=sys.stderr)
    rows = list(pool_imap(one, [(str(p), args.windows) for p in chosen], args.jobs, "cases"))
    judged = [r for r in rows if r["predicted"] is not None]
    failed = sum(r["actual"] != "pass" for r in rows)
    lo, hi = proportion_interval(failed, len(rows))
    windows = sum(r["windows"] for r in judged)
    alarms = sum(round(r["predicted"] * r["windows"]) for r in judged)
    plo, phi = proportion_interval(alarms, windows)
    summary = {
        "corpus": str(args.corpus), "only": args.only, "cases": len(rows), "backtested": len(judged),
        "predicted_false_alarm_rate": round(alarms / windows, 4) if windows else None,
        "predicted_ci95": [round(plo, 4), round(phi, 4)], "windows": windows,
        "mean_predicted_per_case": round(statistics.fmean(r["predicted"] for r in judged), 4) if judged else None,
        "actual_false_alarm_rate": round(failed / len(rows), 4) if rows else None,
        "actual_ci95": [round(lo, 4), round(hi, 4)], "actual_fails": failed,
        "rows": rows,
    }
    args.out.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
