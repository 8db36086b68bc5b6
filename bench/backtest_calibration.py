"""Is `gate backtest` calibrated? Its predicted false-alarm rate, from each clean case's own
history, against the judge's actual outcome on the clean cases of the same source.

    .venv/bin/python -m bench.backtest_calibration ../shared/corpus/dev --only 'k1m-*' --cases 24 --windows 8

For every clean case (labels `expect: pass`; read here only to score): the backtest of the
case's policy over the history before its deploy (replay source: the canary window is never
read) gives a predicted rate; `gate replay`'s verdict on the case itself is the outcome. Over the
cases, the mean predicted rate should match the observed false-alarm rate (within its interval).

`--pairs` (issue 27): the canary-vs-baseline families, where the backtest splits the baseline
group by host. No case of the corpus holds a group's hosts apart (one baseline series, and the
canary only from its deploy), so the split itself cannot be replayed here; what can be measured
is its principle on the pairs the corpus has: a clean case's predicted rates are those of the
other clean pair windows of the same source series (the same service's two hosts at other
times; `bench.cv.series_group`: a replica pair and its mirror are one service), judged as the
live gate judges them; its observed outcome is its own replay. Left out and counted apart: a
case alone in its series (no pairs: the backtest's history-only estimate, labelled), and the
ambiguous clean cases (scored neither way, as in bench.cv).

    .venv/bin/python -m bench.backtest_calibration ../shared/corpus/dev ../shared/corpus/replicas --pairs

On those pairs the judge raises no false alarm, so predicted and observed meet at 0 and the check
is weak. The noisy family (`bench.noisy_pairs`: canary and baseline from two different real
series, as hosts of a heterogeneous fleet) is where clean pairs do fail: give its folder too, and
it is a family of its own (a pair of series, whichever is the canary, is one series group). Each
rate comes with its Clopper-Pearson and its Wilson 95% interval.

    .venv/bin/python -m bench.noisy_pairs
    .venv/bin/python -m bench.backtest_calibration ../shared/corpus/dev ../shared/corpus/replicas bench/corpus-noisy --pairs

That check cannot fail, at any level: a case predicted by the others of its series averages, over
the series, to the series' own rate ((n·f - f) / (n - 1) = f). `--noisy-split` is the one that
can: each clean noisy case's two real series rebuilt over the whole history before its deploy
(as bench.noisy_pairs builds them; the case's canary window comes out exactly), served as two
hosts of the baseline group, so that `gate backtest` splits them by host and judges its windows
as the live gate would; predicted against the case's replay. Also scored on the windows that
bench.noisy_pairs' clean screen would keep (the family's clean cases are such windows only).

    .venv/bin/python -m bench.backtest_calibration bench/corpus-noisy --noisy-split ../shared/corpus/dev

`--placebo` (history-only cases): is the gap between predicted and observed in how the backtest
judges a window, or in what the windows hold? Per clean case, the backtest's own path
(`backtest.judge_window`) on the case's real deploy window, against its replay (they must agree);
and on placebo windows of the same history judged the same way: ending at the deploy, 1, 2 and 3
lifetimes before it, and at the same time of day one day earlier.

    .venv/bin/python -m bench.backtest_calibration ../shared/corpus/dev --only 'kontrast-*' --placebo
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

from bench.run import find_cases, labels, pool_imap
from gate.analysis import replay_case
from gate.backtest import DAY, backtest, could_not_tell
from gate.series import Frame
from gate.sources.replay import Case, ReplaySource, load_case
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
        overall = result.to_dict()["overall"]
        aa = overall["false_alarms"]
        row.update(predicted=aa["rate"], predicted_undecided=overall["undecided"]["rate"], windows=aa["of"],
                   mode=result.history.mode)
    except Exception as e:  # noqa: BLE001 - a case the backtest cannot cut is reported, not fatal
        row.update(predicted=None, error=f"{type(e).__name__}: {e}"[:200])
    row["actual"] = outcome(path)["outcome"]
    return row


def outcome(path: str) -> dict:
    """A clean case's replay as the backtest counts an A/A window: fail (a metric failed, or the
    case could not be judged), undecided (could not tell at the end), or pass."""
    verdict = replay_case(path).verdict
    judged = [m for m in verdict.metrics if not m.muted]
    if any(m.verdict == "fail" and not could_not_tell(m) for m in judged):
        result = "fail"
    elif verdict.verdict == "pass":
        result = "pass"
    else:
        result = "undecided" if any(could_not_tell(m) for m in judged) else "fail"
    return {"path": path, "outcome": result}


def wilson(k: int, n: int) -> tuple[float, float]:
    """The Wilson 95% interval of k in n (bench.cv_report's): narrower than Clopper-Pearson, so
    "within each other's intervals" is the stricter check with it."""
    if n <= 0:
        return 0.0, 1.0
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
    # exactly 0 and 1 at the ends (statsmodels' floating point gives 1.7e-18 for 0 of 144, which
    # would put an observed 0 outside its own interval)
    return (0.0 if k == 0 else float(lo)), (1.0 if k == n else float(hi))


def pooled(predicted: list[float], windows: int, observed: int, cases: int) -> dict:
    """Predicted (the mean of the cases' predictions, its interval over the distinct windows they
    rest on) against observed (cases), each with its Clopper-Pearson and its Wilson 95% interval;
    `within`: each inside the other's interval (`within_wilson`: the Wilson ones)."""
    mean = statistics.fmean(predicted) if predicted else None
    k = round(mean * windows) if predicted else 0
    plo, phi = proportion_interval(k, windows) if predicted else (0.0, 1.0)
    pwlo, pwhi = wilson(k, windows) if predicted else (0.0, 1.0)
    lo, hi = proportion_interval(observed, cases)
    wlo, whi = wilson(observed, cases)
    seen = observed / cases if cases else None
    return {"predicted": None if mean is None else round(mean, 4), "predicted_ci95": [round(plo, 4), round(phi, 4)],
            "predicted_wilson95": [round(pwlo, 4), round(pwhi, 4)],
            "windows": windows, "observed": None if seen is None else round(seen, 4), "observed_count": observed,
            "cases": cases, "observed_ci95": [round(lo, 4), round(hi, 4)], "observed_wilson95": [round(wlo, 4), round(whi, 4)],
            "within": bool(predicted and cases and lo <= mean <= hi and plo <= seen <= phi),
            "within_wilson": bool(predicted and cases and wlo <= mean <= whi and pwlo <= seen <= pwhi)}


PLACEBO_OFFSETS = {"1 lifetime before": 1, "2 lifetimes before": 2, "3 lifetimes before": 3, "1 day before": None}


def placebo(path: str) -> dict:
    """The backtest's path on the real deploy window and on placebo windows of the same history."""
    from gate import backtest as bt

    case = load_case(path)
    policy = case.policy()
    group = case.frames["canary"]
    step = case.step
    bt._adopt(bt.History(group, None, "history-only", "", int(group.timestamps[0]), case.end_at, 1))

    def judged(deployed_at: int) -> str:
        return bt.judge_window((deployed_at, [bt.Spec("policy", policy, bt.AA)]))[0].outcome

    deploy = case.deployed_at - case.deployed_at % step + (step if case.deployed_at % step else 0)
    row = {"case": case.id, "replay": outcome(path)["outcome"], "backtest_path": judged(deploy)}
    end = case.deployed_at - case.deployed_at % step - step  # the last moment of history before the deploy
    for name, k in PLACEBO_OFFSETS.items():
        t = end - (k * policy.lifetime if k else DAY)
        row[name] = judged(t - t % step)
    return row


def main_placebo(corpus: Path, only: str, jobs: int, out: Path) -> int:
    clean = [str(p) for p in find_cases(corpus, only) if labels(p)["expect"] == "pass"]
    rows = list(pool_imap(placebo, clean, jobs, "cases"))
    n = len(rows)

    def failed(keys: list[str]) -> dict:
        hits, trials = sum(r[k] != "pass" for r in rows for k in keys), n * len(keys)
        lo, hi = proportion_interval(hits, trials)
        return {"not_passed": hits, "of": trials, "rate": round(hits / trials, 4) if trials else None,
                "ci95": [round(lo, 4), round(hi, 4)]}

    summary = {"cases": n, "backtest_path_agrees_with_replay": sum(r["replay"] == r["backtest_path"] for r in rows),
               "real deploy window (replay)": failed(["replay"]),
               **{name: failed([name]) for name in PLACEBO_OFFSETS},
               "placebo windows": failed(list(PLACEBO_OFFSETS))}
    out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1), encoding="utf-8")
    print(json.dumps(summary, indent=1))
    return 0


def _mean(xs) -> float | None:
    xs = list(xs)
    return round(statistics.fmean(xs), 4) if xs else None


# bench.cv's families of paired canaries: the dev corpus' (k1m, nab5m), the real replica pairs,
# and the noisy pairs of two different real series (bench.noisy_pairs), where the judge does
# raise false alarms on clean cases, so that predicted and observed meet at a level above zero.
PAIRED_FAMILIES = ("canary-vs-baseline", "replicas", "noisy")


def main_pairs(corpora: list[Path], jobs: int, out: Path) -> int:
    from bench.cv import case_row

    rows = [case_row(p) for corpus in corpora for p in find_cases(corpus, None)]
    clean = [r for r in rows if r["expect"] == "pass" and r["family"] in PAIRED_FAMILIES]
    print(f"{len(clean)} clean canary-vs-baseline cases", file=sys.stderr)
    outcomes = {o["path"]: o["outcome"] for o in pool_imap(outcome, [r["path"] for r in clean], jobs, "cases")}
    for r in clean:
        r["outcome"] = outcomes[r["path"]]
        r["source_family"] = r["family"] if r["family"] in ("replicas", "noisy") else r["case"].split("-")[0]
    scored = [r for r in clean if not r.get("ambiguous")]
    for r in scored:
        others = [o for o in scored if o["group"] == r["group"] and o is not r]
        r["pairs"] = len(others)
        if others:
            r["predicted"] = sum(o["outcome"] == "fail" for o in others) / len(others)
            r["predicted_undecided"] = sum(o["outcome"] == "undecided" for o in others) / len(others)
    summary = {}
    for family in sorted({r["source_family"] for r in scored}):
        mine = [r for r in scored if r["source_family"] == family and "predicted" in r]
        windows = len(mine)  # each pair window predicts the others of its series: the distinct windows are the cases
        summary[family] = {
            "false_alarms": pooled([r["predicted"] for r in mine], windows, sum(r["outcome"] == "fail" for r in mine), len(mine)),
            "undecided": pooled([r["predicted_undecided"] for r in mine], windows,
                                sum(r["outcome"] == "undecided" for r in mine), len(mine)),
            "series": len({r["group"] for r in mine}),
            "alone_in_their_series": sum(r["source_family"] == family and "predicted" not in r for r in scored),
            "ambiguous_apart": sum(r["source_family"] == family and bool(r.get("ambiguous")) for r in clean),
        }
    out.write_text(json.dumps({"summary": summary, "rows": [{k: v for k, v in r.items() if k != "path"} for r in clean]},
                              indent=1), encoding="utf-8")
    print(json.dumps(summary, indent=1))
    return 0


class TwoHostSource(ReplaySource):
    """A noisy case's baseline group as two hosts, read apart as Datadog `by {host}` reads them:
    the baseline's series and the canary's series over the whole history (bench.noisy_pairs
    keeps only the canary's window in the case). So `gate backtest` splits it by host, sides of
    one host each, judged against each other as the live gate judges canary and baseline."""

    def __init__(self, case: Case, hosts: dict[str, Frame]):
        super().__init__(case)
        self.hosts = hosts

    def fetch_hosts(self, query) -> dict[str, Frame]:
        end = min(query.end, self.case.deployed_at - self.case.step)  # never the canary window
        return {h: f.between(query.start, end) for h, f in self.hosts.items()}


def noisy_hosts(path: str, dev: Path) -> tuple[Case, dict[str, Frame]]:
    """The two series of a noisy case over its whole history: rebuilt from the dev corpus as
    bench.noisy_pairs builds them (its overlay, its drift), with the canary's point-to-point gain
    read back from the case's own clean window (least squares where the canary is above 0)."""
    from bench import noisy_pairs as npairs

    case = load_case(path)
    meta = json.loads((Path(path) / "case.json").read_text(encoding="utf-8"))
    metric = case.metrics[0]["name"]
    roles = meta["source"].split("; ", 1)[1]
    baseline_source, canary_source = roles.removeprefix("baseline ").split(", canary ")
    series = {s.source: s for s in npairs.real_series(dev, metric)}
    times, x, y = npairs.overlay(series[baseline_source], series[canary_source])
    slow = npairs.drift(y - x)
    fast = y - x - slow
    canary = case.frames["canary"].between(case.deployed_at, case.end_at)
    at = np.searchsorted(times, canary.timestamps)
    c = canary.values[metric]
    keep = c > 0
    gain = float(np.sum(fast[at][keep] * (c - x[at] - slow[at])[keep]) / np.sum(fast[at][keep] ** 2))
    grid = case.frames["baseline"].timestamps
    where = np.searchsorted(times, grid)
    found = (where < len(times)) & (times[np.minimum(where, len(times) - 1)] == grid)
    other = np.full(len(grid), np.nan)
    other[found] = np.maximum(0.0, x[where[found]] + slow[where[found]] + gain * fast[where[found]])
    # named so that the canary's series is the first half (the canary), as in the case
    hosts = {"0-canary-series": Frame(case.step, grid, {metric: other}),
             "1-baseline-series": case.frames["baseline"]}
    return case, hosts


def one_noisy(args: tuple[str, int, str]) -> dict:
    """A noisy clean case: the backtest (split by host) of its two series' history before the
    deploy, against the case's own replay."""
    path, windows, dev = args
    case, hosts = noisy_hosts(path, Path(dev))
    policy = case.policy()
    first = int(case.frames["baseline"].timestamps[0])
    days = (case.deployed_at - first) / DAY
    row = {"case": case.id, "history_days": round(days, 2)}
    try:
        result = backtest(policy, TwoHostSource(case, hosts), days=days, windows=windows, jobs=1, recommend=False)
        overall = result.to_dict()["overall"]
        row.update(predicted=overall["false_alarms"]["rate"], predicted_undecided=overall["undecided"]["rate"],
                   windows=overall["false_alarms"]["of"], mode=result.history.mode)
    except Exception as e:  # noqa: BLE001 - a case the backtest cannot cut is reported, not fatal
        row.update(predicted=None, error=f"{type(e).__name__}: {e}"[:200])
        result = None
    row["actual"] = outcome(path)["outcome"]
    if result is not None:
        row["screened"], row["apart"] = screened_outcomes(result, case, hosts)
    return row


def screened_outcomes(result, case: Case, hosts: dict[str, Frame]) -> tuple[list[str], list[float]]:
    """The outcomes of the A/A windows that bench.noisy_pairs would have kept as a clean case
    (its screen on the two series over the window: paired SD within PAIRED_SD of the baseline's
    level, means within half the tolerance), and how far apart the two series' means were in each
    window, in tolerances. The family's clean cases are such windows only; the backtest's
    windows are all windows of the pair, most of them with the two series further apart."""
    from bench import noisy_pairs as npairs
    from gate.backtest import AA

    metric, tolerance = case.metrics[0]["name"], case.metrics[0]["tolerance"]
    canary, baseline = hosts["0-canary-series"], hosts["1-baseline-series"]
    lifetime = case.policy().lifetime
    kept, apart = [], []
    for run in result.runs:
        if run.label != "policy" or run.injection != AA:
            continue
        w = (canary.timestamps >= run.deployed_at) & (canary.timestamps < run.deployed_at + lifetime)
        x, y = baseline.values[metric][w], canary.values[metric][w]
        both = np.isfinite(x) & np.isfinite(y)
        if both.sum() < 3 or not np.mean(x[both]) > 0:
            continue
        sd, effect = npairs.window_stats(y[both], x[both])
        apart.append(round(abs(effect) / tolerance, 3))
        if npairs.PAIRED_SD[0] <= sd <= npairs.PAIRED_SD[1] and abs(effect) <= tolerance / 2:
            kept.append(run.outcome)
    return kept, apart


def main_noisy_split(corpus: Path, dev: Path, windows: int, jobs: int, out: Path) -> int:
    clean = [str(p) for p in find_cases(corpus, "noisy-aa-*") if labels(p)["expect"] == "pass"]
    print(f"{len(clean)} clean noisy cases, {windows} windows each", file=sys.stderr)
    rows = list(pool_imap(one_noisy, [(p, windows, str(dev)) for p in clean], jobs, "cases"))
    judged = [r for r in rows if r["predicted"] is not None]
    n = sum(r["windows"] for r in judged)
    summary = {
        "cases": len(rows), "backtested": len(judged), "modes": sorted({r["mode"] for r in judged}),
        "false_alarms": pooled([r["predicted"] for r in judged], n, sum(r["actual"] == "fail" for r in judged), len(judged)),
        "false_alarms_pooled_windows": sum(round(r["predicted"] * r["windows"]) for r in judged),
        "undecided": pooled([r["predicted_undecided"] for r in judged], n,
                            sum(r["actual"] == "undecided" for r in judged), len(judged)),
        "mean_predicted_of_failed": _mean(r["predicted"] for r in judged if r["actual"] == "fail"),
        "mean_predicted_of_passed": _mean(r["predicted"] for r in judged if r["actual"] == "pass"),
        "not_backtested": [r for r in rows if r["predicted"] is None],
    }
    # The same, on the windows the family's own screen keeps (pooled over windows: a case may
    # have none): like with like, since its clean cases are screened windows of their pair.
    apart = [a for r in judged for a in r["apart"]]
    summary["series_apart_in_tolerances"] = {"windows": len(apart), "median": None if not apart else round(
        statistics.median(apart), 3), "beyond_half": sum(a > 0.5 for a in apart)}
    kept = [o for r in judged for o in r["screened"]]
    for name, hit in (("false_alarms", "fail"), ("undecided", "undecided")):
        k = sum(o == hit for o in kept)
        summary[f"screened_{name}"] = pooled([k / len(kept)] if kept else [], len(kept),
                                             sum(r["actual"] == hit for r in judged), len(judged))
        summary[f"screened_{name}"]["predicted_count"] = k
    out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1), encoding="utf-8")
    print(json.dumps(summary, indent=1))
    return 0


def one_noisy_holdout(args: tuple[str, int, str]) -> dict:
    """A noisy clean case's pair over its history before the deploy, split by host as `gate
    backtest` splits it, 2 x `windows` A/A windows spread over it (each judged as the live gate
    judges a paired canary deployed there, learning from its own past): the earlier half predicts,
    the later half is observed. Unscreened both: a user's deploys meet whatever window comes."""
    from types import SimpleNamespace

    from gate.backtest import AA, Spec, read_history, run_all, window_starts

    path, windows, dev = args
    case, hosts = noisy_hosts(path, Path(dev))
    policy = case.policy()
    first = int(case.frames["baseline"].timestamps[0])
    days = (case.deployed_at - first) / DAY
    row = {"case": case.id}
    try:
        history = read_history(policy, TwoHostSource(case, hosts), days, case.deployed_at - case.step)
        starts = window_starts(history, policy, 2 * windows, policy.lifetime)
        history = history.over(starts)  # the split's turns dealt over the windows, as `gate backtest` deals them
        runs = sorted(run_all(history, [(t, [Spec("policy", policy, AA)]) for t in starts], 1),
                      key=lambda r: r.deployed_at)
    except Exception as e:  # noqa: BLE001 - reported, not fatal
        row["error"] = f"{type(e).__name__}: {e}"[:200]
        return row
    half = len(runs) // 2
    early, late = runs[:half], runs[half:]
    row.update(mode=history.mode, early=[r.outcome for r in early], late=[r.outcome for r in late])
    row["late_screened"], _ = screened_outcomes(SimpleNamespace(runs=late), case, hosts)
    row["actual"] = outcome(path)["outcome"]
    return row


def main_noisy_holdout(corpus: Path, dev: Path, windows: int, jobs: int, out: Path, cases: int = 0) -> int:
    """Is the all-windows rate the one a user meets? Predicted from each pair's earlier windows,
    observed on its later ones (unscreened: what a live gate on those hosts would have judged),
    beside the later windows the family's screen keeps and the family's screened clean cases."""
    clean = [str(p) for p in find_cases(corpus, "noisy-aa-*") if labels(p)["expect"] == "pass"]
    clean = clean[:: max(1, len(clean) // cases)] if cases else clean  # evenly spread
    print(f"{len(clean)} clean noisy cases, 2 x {windows} windows each", file=sys.stderr)
    rows = list(pool_imap(one_noisy_holdout, [(p, windows, str(dev)) for p in clean], jobs, "cases"))
    judged = [r for r in rows if "early" in r and r["early"] and r["late"]]
    summary = {"cases": len(rows), "judged": len(judged), "modes": sorted({r["mode"] for r in judged}),
               "errors": [r for r in rows if "error" in r]}
    for name, hit in (("false_alarms", "fail"), ("undecided", "undecided")):
        predicted = [sum(o == hit for o in r["early"]) / len(r["early"]) for r in judged]
        n_early = sum(len(r["early"]) for r in judged)
        late = [o for r in judged for o in r["late"]]
        summary[f"{name}_later_windows"] = pooled(predicted, n_early, sum(o == hit for o in late), len(late))
        kept = [o for r in judged for o in r["late_screened"]]
        summary[f"{name}_later_screened"] = pooled(predicted, n_early, sum(o == hit for o in kept), len(kept))
        summary[f"{name}_screened_cases"] = pooled(predicted, n_early, sum(r["actual"] == hit for r in judged),
                                                    len(judged))
    out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1), encoding="utf-8")
    print(json.dumps(summary, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backtest_calibration", description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path, nargs="+")
    parser.add_argument("--pairs", action="store_true",
                        help="the canary-vs-baseline families: pairs of the same series predict a clean case")
    parser.add_argument("--placebo", action="store_true",
                        help="history-only: the backtest's path on each clean case's real window and on placebo windows")
    parser.add_argument("--only", default="k1m-*", help="glob on case folder names (one source at a time)")
    parser.add_argument("--cases", type=int, default=24, help="clean cases to take (evenly spread)")
    parser.add_argument("--skip", type=int, default=0,
                        help="leave out the first N clean cases (--skip 1 takes the other half of --cases 60)")
    parser.add_argument("--windows", type=int, default=8, help="backtest windows per case")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "backtest_calibration.json")
    parser.add_argument("--noisy-split", type=Path, metavar="DEV",
                        help="the noisy folder: each clean case predicted by the backtest split by host of its two "
                             "series' history (rebuilt from DEV, the dev corpus)")
    parser.add_argument("--noisy-holdout", type=Path, metavar="DEV",
                        help="the noisy folder: A/A windows split by host, the earlier half of each pair's windows "
                             "predicting its later half (unscreened), beside the screened ones")
    args = parser.parse_args(argv)
    if args.noisy_holdout:
        return main_noisy_holdout(args.corpus[0], args.noisy_holdout, args.windows, args.jobs,
                                  args.out.with_name("backtest_noisy_holdout.json")
                                  if args.out.name == "backtest_calibration.json" else args.out,
                                  args.cases if "--cases" in (argv or sys.argv) else 0)
    if args.noisy_split:
        return main_noisy_split(args.corpus[0], args.noisy_split, args.windows, args.jobs,
                                args.out.with_name("backtest_noisy_split.json")
                                if args.out.name == "backtest_calibration.json" else args.out)
    if args.placebo:
        return main_placebo(args.corpus[0], args.only, args.jobs, args.out.with_name("backtest_placebo.json")
                            if args.out.name == "backtest_calibration.json" else args.out)
    if args.pairs:
        return main_pairs(args.corpus, args.jobs, args.out.with_name("backtest_pairs.json")
                          if args.out.name == "backtest_calibration.json" else args.out)
    args.corpus = args.corpus[0]

    clean = [p for p in find_cases(args.corpus, args.only) if labels(p)["expect"] == "pass"]
    chosen = clean[args.skip:][:: max(1, len(clean[args.skip:]) // args.cases)][: args.cases]
    print(f"{len(chosen)} of {len(clean)} clean cases, {args.windows} windows each", file=sys.stderr)
    rows = list(pool_imap(one, [(str(p), args.windows) for p in chosen], args.jobs, "cases"))
    judged = [r for r in rows if r["predicted"] is not None]
    windows = sum(r["windows"] for r in judged)
    # Like with like: a window the backtest counts as a false alarm against a case the judge
    # failed; one it could not tell (on_undecided decides) against a case left undecided.
    summary = {
        "corpus": str(args.corpus), "only": args.only, "cases": len(rows), "backtested": len(judged),
        "false_alarms": pooled([r["predicted"] for r in judged], windows,
                               sum(r["actual"] == "fail" for r in judged), len(judged)),
        "undecided": pooled([r["predicted_undecided"] for r in judged], windows,
                            sum(r["actual"] == "undecided" for r in judged), len(judged)),
        "not_passed": pooled([r["predicted"] + r["predicted_undecided"] for r in judged], windows,
                             sum(r["actual"] != "pass" for r in judged), len(judged)),
        "mean_predicted_of_failed": _mean(r["predicted"] for r in judged if r["actual"] == "fail"),
        "mean_predicted_of_passed": _mean(r["predicted"] for r in judged if r["actual"] == "pass"),
        "not_backtested": [r["case"] for r in rows if r["predicted"] is None],
        "rows": rows,
    }
    args.out.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
