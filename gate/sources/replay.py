"""Recorded cases (../shared/corpus format): a folder with `case.json` and `series.csv.gz`.

The labels of a case (`expect`, `culprits`, `injected`, `scenario`, `source`) are never read:
cases are also judged blind.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gate.errors import CaseError, PolicyError
from gate.kinds import KINDS
from gate.policy import Policy, parse_policy
from gate.series import Frame, Observations
from gate.sources import Query
from gate.release import parse_time

SCOPES = ("canary", "baseline")


@dataclass(frozen=True)
class Case:
    id: str
    path: Path
    step: int
    deployed_at: int
    end_at: int
    metrics: list[dict]
    frames: dict[str, Frame]  # scope -> the whole recorded frame (history and window)

    def policy(self) -> Policy:
        """The policy a case implies: its metrics, its groups, its step and lifetime."""
        metrics = [
            {k: m[k] for k in ("name", "kind", "unit", "bad_direction", "tolerance", "denominator") if k in m}
            for m in self.metrics
        ]
        has_baseline = "baseline" in self.frames and len(self.frames["baseline"]) > 0
        return parse_policy(
            {
                "name": _policy_name(self.id),
                "source": {"type": "replay", "options": {"case": str(self.path)}},
                "canary": {"scope": "canary"},
                "baseline": {"scope": "baseline"} if has_baseline else None,
                "interval": self.step,
                "lifetime": max(self.step, self.end_at - self.deployed_at),
                "history": 14 * 86400,
                "metrics": metrics,
            },
            origin=f"{self.path}/case.json",
        )


def _policy_name(case_id: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_.-" else "-" for c in case_id)
    return cleaned if cleaned[:1].isalpha() else f"case-{cleaned}"[:64]


def load_case(path: str | Path) -> Case:
    path = Path(path)
    if not path.is_dir():
        raise CaseError(f"case folder not found: {path}")
    meta_path, series_path = path / "case.json", path / "series.csv.gz"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CaseError(f"{path}: no case.json") from None
    except (OSError, ValueError) as e:
        raise CaseError(f"{meta_path}: not valid JSON ({e})") from None
    try:
        step = int(meta["step_seconds"])
        deployed_at = parse_time(meta["deploy_at"])
        end_at = parse_time(meta["end_at"])
        metrics = list(meta["metrics"])
        names = [m["name"] for m in metrics]
    except (KeyError, TypeError, ValueError, OverflowError) as e:  # OverflowError: step_seconds 1e400
        raise CaseError(f"{meta_path}: missing or invalid field {e}") from None
    if step <= 0 or end_at <= deployed_at:
        raise CaseError(f"{meta_path}: step_seconds must be > 0 and end_at after deploy_at")
    frames = _read_series(series_path, names, step, summed=_counts(metrics))
    return Case(
        id=str(meta.get("id", path.name)),
        path=path,
        step=step,
        deployed_at=deployed_at,
        end_at=end_at,
        metrics=metrics,
        frames=frames,
    )


def _counts(metrics: list[dict]) -> set[str]:
    """The case's metrics whose points are events (`kind: count`, or any kind registered summed)."""
    return {m["name"] for m in metrics if isinstance(m.get("kind"), str) and m["kind"] in KINDS
            and KINDS[m["kind"]].summed}


def _read_series(path: Path, names: list[str], step: int, summed: set[str]) -> dict[str, Frame]:
    """The recorded frames by scope. A row repeating a timestamp and scope with other values is
    refused: which of the two is the recording is not the gate's to choose (the last one silently
    won); the same row written twice is read once. Rows at different moments of one step (a
    recording finer than its step) share the step's bucket: a count's points add up there, a
    level's are averaged (`Frame.on_grid`)."""
    try:
        with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
            reader = csv.reader(io.StringIO(f.read()))
            header = next(reader)
            rows = list(reader)
    except FileNotFoundError:
        raise CaseError(f"{path.parent}: no series.csv.gz") from None
    except (OSError, EOFError, StopIteration, UnicodeDecodeError) as e:
        raise CaseError(f"{path}: unreadable ({e or 'empty file'})") from None
    if header[:2] != ["timestamp", "scope"]:
        raise CaseError(f"{path}: the header must start with timestamp,scope")
    missing = [n for n in names if n not in header]
    if missing:
        raise CaseError(f"{path}: no column for metric(s) {', '.join(missing)}")
    columns = [header.index(n) for n in names]
    by_scope: dict[str, dict[str, dict[int, float]]] = {}
    recorded: dict[tuple[str, int], tuple[int, list[str]]] = {}  # (scope, timestamp) -> (line, cells)
    try:
        for line, row in enumerate(rows, start=2):
            scope = row[1]
            if scope not in SCOPES:
                raise CaseError(f"{path}: line {line}: unknown scope {scope!r}")
            t = int(row[0])
            cells = [row[c] if c < len(row) else "" for c in columns]
            earlier, before = recorded.setdefault((scope, t), (line, cells))
            if earlier != line:
                if cells == before:  # the same row written twice: nothing to choose between
                    continue
                differ = ", ".join(f"{n} {a[:40] or 'empty'} there, {b[:40] or 'empty'} here"
                                   for n, a, b in zip(names, before, cells) if a != b)
                raise CaseError(
                    f"{path}: line {line}: timestamp {t} of scope {scope!r} is already recorded on line "
                    f"{earlier} with other values ({differ}): one row per timestamp and scope (which "
                    "one is the recording is not for the gate to choose)")
            points = by_scope.setdefault(scope, {n: {} for n in names})
            for n, cell in zip(names, cells):
                if cell != "":
                    points[n][t] = float(cell)
    except (ValueError, IndexError) as e:
        raise CaseError(f"{path}: line {line}: {e}") from None
    frames = {}
    # One grid for both groups, anchored on the first recorded point: a group whose clock is off
    # by less than a step lands in the same buckets as the other, and points pair by time.
    origin = min((t for points in by_scope.values() for p in points.values() for t in p), default=0)
    for scope, points in by_scope.items():
        times = [t for p in points.values() for t in p]
        if not times:
            frames[scope] = Frame.empty(step, names)
            continue
        first = origin + (min(times) - origin) // step * step  # the bucket holding the first point
        frames[scope] = Frame.on_grid(step, first, max(times), points, summed=summed, origin=origin)
    return frames


class ReplaySource:
    """Serves a recorded case. `visible_until` hides the future: rows after it are never served,
    whatever is asked, so a replay cannot peek past the moment it is judging."""

    def __init__(self, case: Case):
        self.case = case
        self.visible_until: int | None = None

    @property
    def known_deployed_at(self) -> int:
        """When the recorded canary started: the deploy time `gate check` judges from unless told."""
        return self.case.deployed_at

    def fetch(self, query: Query) -> Observations:
        end = query.end if self.visible_until is None else min(query.end, self.visible_until)
        names = [m.name for m in query.metrics]
        if query.step != self.case.step:
            raise PolicyError(
                f"interval: the case is recorded every {self.case.step}s, the policy asks {query.step}s"
            )

        def frame(scope: str) -> Frame:
            recorded = self.case.frames.get(scope)
            if recorded is None:
                return Frame.empty(query.step, names)
            window = recorded.between(query.start, end)
            values = {n: window.values[n] for n in names if n in window.values}
            if not len(recorded):
                return Frame(window.step, window.timestamps, values)
            # Up to the moment read, as a metrics API answers: the recorded grid, NaN where the
            # recording has no row (a canary that died stops having rows; it is not "not yet").
            origin = int(recorded.timestamps[0])
            horizon = origin + (min(end, self.case.end_at) - origin) // window.step * window.step
            after = int(window.timestamps[-1]) + window.step if len(window) else origin + max(
                0, -(-(query.start - origin) // window.step)) * window.step
            if horizon < after:
                return Frame(window.step, window.timestamps, values)
            padding = np.arange(after, horizon + 1, window.step, dtype=np.int64)
            return Frame(window.step, np.concatenate([window.timestamps, padding]),
                         {n: np.concatenate([v, np.full(len(padding), np.nan)]) for n, v in values.items()})

        baseline = frame(query.baseline) if query.baseline else None
        return Observations(canary=frame(query.canary), baseline=baseline)


# The files a case is read from: the reference cache's key holds what they are now.
CASE_FILES = ("case.json", "series.csv.gz")


def origin(options: dict) -> str | None:
    """What a replay policy's case folder holds, for the reference cache's key: each file's size and
    modification time (ns), so a case re-recorded in place (same path) is another origin and never
    reads the reference learned from its old recording. None (nothing cached) when a file is missing."""
    case = options.get("case")
    if not isinstance(case, str) or not case:
        return None
    held = []
    for name in CASE_FILES:
        try:
            stat = (Path(case) / name).stat()
        except OSError:
            return None
        held.append(f"{name} {stat.st_size} bytes mtime {stat.st_mtime_ns}")
    return "replay " + ", ".join(held)


def from_policy(policy: Policy) -> ReplaySource:
    case = policy.source.options.get("case")
    if not case:
        raise PolicyError("source.options.case: the replay source needs the case folder")
    return ReplaySource(load_case(case))
