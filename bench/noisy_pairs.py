"""The noisy-pair family (issue 23, "How to measure"): canary and baseline from two *different*
real series of the same kind, as real hosts of a heterogeneous fleet look next to each other.

    .venv/bin/python -m bench.noisy_pairs [--out bench/corpus-noisy] [--corpus ../shared/corpus/dev]

Writes one folder per case in the corpus format (../shared/corpus/FORMAT.md), generated on demand
(the folder is gitignored) and deterministically (the same inputs give the same bytes); bench.cv
includes the folder as the family `noisy` when it is there. How a case is made:

* The real series are the baseline groups of ../shared/corpus/dev, one per source (the `k1m-*`
  Kontrast KPIs, the `nab5m-*` NAB series), averaged to 10-minute steps. A metric (cpu, latency)
  whose series is flat is left out.
* For each ordered pair (A, B) of different series of one metric: A is the baseline (its history
  and window), B is laid over A's days (whole days apart: the hours of the day stay) and scaled to
  A's median. The paired deviation B - A is the real heterogeneity of the two series (drift,
  independent spikes); it is scaled about A so that the window's per-point paired SD is a level
  drawn in 40-70% of A's level (real sensor and pod pairs, issue 23): its slow part (the series
  drifting apart, a moving mean over 5 points) as it is, its point-to-point part scaled up (the
  dev series are smoother point to point than those pairs: their natural paired SD is 10-30%).
* A window of 15-25 points is kept only when, on the realized data, that SD lands in the band and
  the canary's mean sits within half the tolerance of the baseline's (the clean screening): then it
  is an `aa` case, or a `cpu_shift` / `latency_shift` case once the canary is multiplied by
  1 + (2 .. 4) x the tolerance from the deploy on.

`case.json` `source` names both real series (in sorted order, then the roles), so the folds of
bench.cv keep a pair of series, whichever is the canary, in one fold.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import shutil
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gate.release import iso
from gate.sources.replay import load_case

HERE = Path(__file__).resolve().parent
DEV = HERE.parent.parent / "shared" / "corpus" / "dev"
OUT = HERE / "corpus-noisy"
DAY = 86400
STEP = 600  # 10-minute points, as the real sensor pairs of issue 23
POINTS = (15, 25)  # points in a canary window, both included
PAIRED_SD = (0.40, 0.70)  # the window's per-point paired SD, as a share of the baseline's level
METRICS = {  # name -> its definition in case.json; the tolerances are the dev corpus'
    "cpu": {"name": "cpu", "kind": "gauge", "unit": "percent", "bad_direction": "increase", "tolerance": 0.1},
    "latency": {"name": "latency", "kind": "gauge", "unit": "ms", "bad_direction": "increase", "tolerance": 0.1},
}
SHIFT = (2.0, 4.0)  # injected shifts, in multiples of the tolerance
MIN_HISTORY = 2 * DAY  # the judge learns the baseline's seasonal model from what comes before the deploy
HISTORY = 7 * DAY  # at most this much baseline history is written
CASES_PER_PAIR = {"aa": 2, "shift": 2}  # per ordered pair of series and metric
ATTEMPTS = 400  # deploy moments tried per case before the pair is given up
DRIFT_POINTS = 5  # the two series' slow drift apart: their paired deviation's moving mean over this many points
FLAT = 0.01  # a series whose median absolute deviation is below this share of its median is flat


@dataclass(frozen=True)
class Series:
    name: str  # the dev case it was read from, e.g. "k1m-aa-000"
    source: str  # the real series it was built from (its case.json `source`)
    timestamps: np.ndarray  # on the STEP grid
    values: np.ndarray


def to_step(timestamps: np.ndarray, values: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
    """The mean of each `step` bucket; NaN where fewer than half of its points were recorded."""
    native = int(np.median(np.diff(timestamps)))
    start = int(timestamps[0]) - int(timestamps[0]) % step
    bucket = (timestamps - start) // step
    seen = np.isfinite(values)
    n = int(bucket.max()) + 1
    total = np.bincount(bucket[seen], weights=values[seen], minlength=n)
    count = np.bincount(bucket[seen], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count >= max(1, step // native) / 2, total / np.maximum(count, 1), np.nan)
    return start + step * np.arange(n), mean


def real_series(dev: Path, metric: str) -> list[Series]:
    """One baseline series per real source of the dev corpus' canary-vs-baseline cases (read
    from its first clean `aa` case), at STEP, flat ones left out."""
    found: dict[str, Series] = {}
    for path in sorted(dev.glob("*-aa-[0-9]*")):
        source = json.loads((path / "case.json").read_text(encoding="utf-8"))["source"]
        if source in found:
            continue
        frame = load_case(path).frames["baseline"]
        if metric not in frame.values:
            continue
        t, x = to_step(frame.timestamps, frame.values[metric], STEP)
        middle = np.nanmedian(x)
        if not middle > 0 or np.nanmedian(np.abs(x - middle)) < FLAT * middle:
            continue
        found[source] = Series(path.name, source, t, x)
    return list(found.values())


def overlay(a: Series, b: Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A's timestamps and values, and B's values laid on them (whole days apart, so the hours of
    the day stay) and scaled to A's median over the common stretch."""
    b_times = b.timestamps + round((a.timestamps[0] - b.timestamps[0]) / DAY) * DAY
    common, ia, ib = np.intersect1d(a.timestamps, b_times, return_indices=True)
    x, y = a.values[ia], b.values[ib]
    return common, x, y * np.nanmedian(x) / np.nanmedian(y)


def window_stats(canary: np.ndarray, baseline: np.ndarray) -> tuple[float, float]:
    """(paired SD over the baseline's level, relative difference of the means) of a window."""
    level = float(np.mean(baseline))
    return float(np.std(canary - baseline, ddof=1)) / level, float(np.mean(canary)) / level - 1


def drift(deviation: np.ndarray) -> np.ndarray:
    """The slow part of a paired deviation: its centred moving mean over DRIFT_POINTS (NaN-aware)."""
    seen = np.isfinite(deviation)
    kernel = np.ones(DRIFT_POINTS)
    total = np.convolve(np.where(seen, deviation, 0.0), kernel, mode="same")
    count = np.convolve(seen.astype(float), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(seen & (count > 0), total / count, np.nan)


def pick_window(rng: np.random.Generator, times: np.ndarray, x: np.ndarray, y: np.ndarray,
                tolerance: float) -> tuple[int, int, np.ndarray] | None:
    """A deploy index, a number of points and the clean canary window, screened on the realized
    data: paired SD in the band, the mean within half the tolerance. None: no window found.

    The canary is the baseline plus the real paired deviation of the two series: its slow part
    (the two series drifting apart) as it is, its point-to-point part scaled to reach the drawn
    paired SD (the dev series are smoother point to point than real sensor and pod pairs)."""
    slow_all = drift(y - x)
    earliest = int(np.searchsorted(times, times[0] + MIN_HISTORY))
    for _ in range(ATTEMPTS):
        points = int(rng.integers(POINTS[0], POINTS[1] + 1))
        if earliest + points > len(times):
            return None
        i = int(rng.integers(earliest, len(times) - points + 1))
        w = slice(i, i + points)
        if not (np.isfinite(x[w]).all() and np.isfinite(y[w]).all()) or np.any(np.diff(times[w]) != STEP):
            continue
        if not np.mean(x[w]) > 0:
            continue
        slow = slow_all[w]
        fast = y[w] - x[w] - slow
        target = rng.uniform(*PAIRED_SD) * float(np.mean(x[w]))
        # the gain that brings the SD of slow + gain x fast to the target (the positive root)
        a, b, c = np.var(fast, ddof=1), np.cov(slow, fast)[0, 1], np.var(slow, ddof=1) - target ** 2
        if not a > 0 or b * b - a * c < 0:
            continue
        gain = (-b + np.sqrt(b * b - a * c)) / a
        if not gain > 0:
            continue
        canary = np.maximum(0.0, x[w] + slow + gain * fast)  # a level is never negative
        sd, effect = window_stats(canary, x[w])
        if PAIRED_SD[0] <= sd <= PAIRED_SD[1] and abs(effect) <= tolerance / 2:
            return i, points, canary
    return None


def write_case(out: Path, meta: dict, metric: str, times: np.ndarray, baseline: np.ndarray,
               deploy: int, canary: np.ndarray) -> None:
    folder = out / meta["id"]
    folder.mkdir(parents=True)
    (folder / "case.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    lines = [f"timestamp,scope,{metric}"]
    lines += [f"{t},baseline,{'' if not np.isfinite(v) else f'{v:.4f}'}" for t, v in zip(times, baseline)]
    lines += [f"{t},canary,{v:.4f}" for t, v in zip(times[deploy:deploy + len(canary)], canary)]
    # mtime=0: the same case gives the same bytes (bench.cv caches replays by the files' hash)
    with gzip.GzipFile(folder / "series.csv.gz", "wb", mtime=0) as f:
        f.write(("\n".join(lines) + "\n").encode())


def generate(dev: Path, out: Path) -> list[dict]:
    """Every case of the family, written to `out` (replaced); their case.json contents."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    written = []
    for metric, definition in METRICS.items():
        tolerance = definition["tolerance"]
        for a, b in itertools.permutations(real_series(dev, metric), 2):
            times, x, y = overlay(a, b)
            first, second = sorted((a.source, b.source))
            source = (f"noisy pair of {first} and {second} ({metric}); "
                      f"baseline {a.source}, canary {b.source}")
            rng = np.random.default_rng(zlib.crc32(source.encode()))
            for scenario, count in CASES_PER_PAIR.items():
                for _ in range(count):
                    found = pick_window(rng, times, x, y, tolerance)
                    if found is None:
                        print(f"no window for {source}", file=sys.stderr)
                        break
                    i, points, canary = found
                    sd, effect = window_stats(canary, x[i:i + points])
                    injected = {"paired_sd": round(sd, 4), "clean_effect": round(effect, 4)}
                    expect, culprits, name = "pass", [], "aa"
                    if scenario == "shift":
                        factor = 1 + rng.uniform(*SHIFT) * tolerance
                        canary = canary * factor
                        injected["shift_factor"] = round(factor, 4)
                        expect, culprits, name = "fail", [metric], f"{metric}_shift"
                    start = int(np.searchsorted(times, times[i] - HISTORY))
                    meta = {
                        "id": f"noisy-{name.replace('_', '-')}-{len(written):03d}",
                        "family": "canary-vs-baseline", "scenario": name, "source": source,
                        "step_seconds": STEP, "deploy_at": iso(int(times[i])),
                        "end_at": iso(int(times[i + points - 1])),
                        "metrics": [definition], "expect": expect, "culprits": culprits, "injected": injected,
                    }
                    write_case(out, meta, metric, times[start:i + points], x[start:i + points], i - start, canary)
                    written.append(meta)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.noisy_pairs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEV, help="the dev corpus the real series are read from")
    parser.add_argument("--out", type=Path, default=OUT, help="where the cases go (replaced)")
    args = parser.parse_args(argv)
    if not args.corpus.is_dir():
        parser.error(f"{args.corpus}: no such folder (the dev corpus, ../shared/corpus/dev)")
    cases = generate(args.corpus, args.out)
    clean = sum(c["expect"] == "pass" for c in cases)
    print(f"{len(cases)} cases ({clean} clean, {len(cases) - clean} shifted) in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
