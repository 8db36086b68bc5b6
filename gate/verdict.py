"""What a judgement says: the verdict, and per metric the numbers and the rule behind it.

Everything downstream (store, report, Slack, Jenkins JUnit, exit codes) reads these, never the
judge's internals, so the judge can be replaced whole.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Literal

Outcome = Literal["pass", "fail", "inconclusive"]
MetricOutcome = Literal["pass", "fail", "inconclusive", "skipped"]

EXIT_CODES = {"pass": 0, "fail": 1, "inconclusive": 3, "error": 4}
EXIT_ERROR = 4

MAX_RELEASE = 200
LAST_MOMENT = 253402300799  # 9999-12-31T23:59:59Z: the last moment `iso` can write


def release_problem(name: object) -> str | None:
    """What is wrong with a release name, or None: 1 to 200 printable characters, no control
    characters (a newline would forge log lines, an escape sequence rewrite the terminal), not
    starting with `-` (`--help` put where a command expects the release would be read as an
    option: help printed, exit 0, a pass)."""
    if not isinstance(name, str):
        return f"must be a string, got {type(name).__name__}"
    if not name:
        return "must not be empty"
    if len(name) > MAX_RELEASE:
        return f"must be at most {MAX_RELEASE} characters, got {len(name)}"
    if not name.isprintable():
        return "must be printable characters only (no newline, tab, escape or other control character)"
    if name != name.strip():
        return "must not start or end with a space"
    if name.startswith("-"):
        return "must not start with '-' (a command would read it as an option)"
    return None


def check_release(name: str) -> str:
    """The release name itself, or ReleaseError naming what is wrong with it."""
    from gate.errors import ReleaseError, quoted

    problem = release_problem(name)
    if problem is not None:
        shown = f" {quoted(name, 60)}" if isinstance(name, str) else ""
        raise ReleaseError(f"release{shown}: {problem}")
    return name


def iso(epoch: int | float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> int:
    """ISO 8601 (with Z or an offset) or epoch seconds -> epoch seconds.

    Anything else (not a string, `nan`, `yesterday`, month 13, a moment past year 9999) is a
    ValueError that says what a moment looks like. A time without its zone is refused too: read
    as UTC, a local time would move the canary's window by hours."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a moment: ISO 8601 text like 2024-05-01T10:00:00Z, or epoch seconds")
    stripped = text.strip()
    naive = False
    try:
        if stripped.lstrip("-").isdigit() and stripped.isascii():
            seconds = int(stripped)
        else:
            moment = datetime.fromisoformat(stripped.replace("Z", "+00:00"))
            naive = moment.tzinfo is None
            seconds = int(moment.timestamp())
    except (ValueError, OverflowError, OSError):
        seconds = None
    if naive:
        raise ValueError(f"{text[:60]!r} has no time zone: add Z for UTC or an offset like +02:00 "
                         "(e.g. 2024-05-01T10:00:00Z)")
    if seconds is None or not 0 <= seconds <= LAST_MOMENT:
        raise ValueError(f"{text[:60]!r} is not a moment: ISO 8601 like 2024-05-01T10:00:00Z, or epoch seconds "
                         "(1970 to 9999)")
    return seconds


def _finite(x: float | None) -> float | None:
    """Full precision (JSON keeps every digit of a float): what is stored must show, rounded once
    for display, exactly what the verdict showed."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass
class MetricResult:
    name: str
    verdict: MetricOutcome
    reason: str
    rule: str = ""
    canary: float | None = None  # the canary's value over the window (mean, rate or quantile)
    baseline: float | None = None  # the concurrent baseline's value over the same points
    expected: float | None = None  # what the seasonal model expected for the window
    effect: float | None = None  # relative effect estimate: canary / reference - 1
    interval: tuple[float, float] | None = None  # confidence interval of `effect`
    tolerance: float | None = None
    critical: bool = False
    muted: bool = False
    slo: str | None = None  # the metric's guardrails in words ("max 800 ms"), None: it has none

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("canary", "baseline", "expected", "effect"):
            d[key] = _finite(d[key])
        if self.interval is not None:
            lo, hi = self.interval
            d["interval"] = [_finite(lo), _finite(hi)]
        if self.slo is None:  # only then: the JSON of a metric without guardrails is unchanged
            del d["slo"]
        return d


def joined_reasons(results: list[MetricResult]) -> str:
    """`name: reason` per metric, the metrics with one reason named together: a canary that died
    fails every metric for one cause, said once ("cpu, memory: the canary has not reported...")."""
    names_by_reason: dict[str, list[str]] = {}
    for r in results:
        names_by_reason.setdefault(r.reason, []).append(r.name)
    return "; ".join(f"{', '.join(names)}: {reason}" for reason, names in names_by_reason.items())


@dataclass
class Verdict:
    release: str
    verdict: Outcome
    reason: str
    deployed_at: int
    evaluated_at: int
    final: bool  # decisive, or the end of the lifetime was reached
    metrics: list[MetricResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # The demo source (`simulate`, `replay`) the verdict was judged from; None for a live source.
    demo: str | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    @property
    def demo_label(self) -> str | None:
        """How every output (report, Slack, JUnit) marks a verdict not judged on a live release."""
        return None if self.demo is None else f"DEMO ({self.demo})"

    @property
    def decisive(self) -> bool:
        return self.verdict in ("pass", "fail")

    def to_dict(self) -> dict:
        d = {
            "release": self.release,
            "verdict": self.verdict,
            "reason": self.reason,
            "deployed_at": iso(self.deployed_at),
            "evaluated_at": iso(self.evaluated_at),
            "final": self.final,
            "metrics": [m.to_dict() for m in self.metrics],
            "notes": list(self.notes),
        }
        if self.demo is not None:  # only then: a live verdict's JSON is unchanged
            d["demo"] = self.demo
        return d

    @staticmethod
    def from_dict(d: dict) -> Verdict:
        metrics = []
        for m in d.get("metrics", []):
            m = dict(m)
            if m.get("interval") is not None:
                m["interval"] = tuple(m["interval"])
            metrics.append(MetricResult(**m))
        return Verdict(
            release=d["release"],
            verdict=d["verdict"],
            reason=d["reason"],
            deployed_at=parse_time(d["deployed_at"]),
            evaluated_at=parse_time(d["evaluated_at"]),
            final=d["final"],
            metrics=metrics,
            notes=list(d.get("notes", [])),
            demo=d.get("demo"),
        )


def release_name(value: object) -> object:
    """For pydantic models (the Lambda event): a string that is a good release name passes,
    anything else that is a string raises ValueError saying why; non-strings are left to the type."""
    if isinstance(value, str) and 0 < len(value) <= MAX_RELEASE:  # the length is the field's to say
        problem = release_problem(value)
        if problem is not None:
            raise ValueError(problem)
    return value
