"""How a verdict reads to people, the same in the HTML report, Slack, the terminal and JUnit:
numbers, effects, intervals, tolerances and durations as text, and which metrics decided.

Each medium says only what is its own: the mark of a missing value ("–" in the report and Slack,
"" in the terminal's table, "-" in JUnit's plain text) and, where a column is narrow or a CI
server's reader wants more, the decimals of a percentage.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from gate.verdict import MetricResult, Verdict

MISSING = "–"  # a value the verdict does not have (no baseline, no interval)


def number(x: float | None, missing: str = MISSING) -> str:
    """A measured value: 4 significant digits (3 below 0.01), e-notation from a million on."""
    if x is None or not math.isfinite(x):
        return missing
    if x != 0 and abs(x) < 0.01:
        return f"{x:.3g}"
    return f"{x:,.4g}" if abs(x) < 1e6 else f"{x:.3e}"


def percent(x: float | None, missing: str = MISSING, decimals: int = 1) -> str:
    """An effect (a relative difference) as a signed percentage."""
    return missing if x is None or not math.isfinite(x) else f"{x:+.{decimals}%}"


def compact_percent(x: float | None, missing: str = MISSING) -> str:
    """A percentage for a narrow column: no decimal from ±100% on (`+125%`, not `+125.0%`)."""
    if x is None or not math.isfinite(x):
        return missing
    return percent(x, missing, 1 if abs(x) < 1 else 0)


def interval(bounds: tuple[float, float] | None, missing: str = MISSING,
             show: Callable[[float | None], str] = percent, test: str | None = None) -> str:
    """An effect's interval, `[low, high]`, each bound written by `show`, and the test it is of
    (the one that decided: a pass's interval is the pass test's, not the wider fail test's)."""
    if bounds is None:
        return missing
    return f"[{show(bounds[0])}, {show(bounds[1])}]" + (f" ({test})" if test else "")


def tolerance(x: float | None, missing: str = MISSING) -> str:
    """A metric's tolerance: a whole percentage (policies write 0.1, people read 10%)."""
    return missing if x is None else f"{x:.0%}"


def minutes(seconds: float) -> str:
    """A duration of a canary's life: minutes up to two hours, then hours."""
    if seconds / 60 < 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def flags(m: MetricResult, deciding: bool = False) -> list[str]:
    """What sets a metric apart besides its verdict: it decided the release, it is critical, muted."""
    return [f for f, on in (("deciding", deciding), ("critical", m.critical), ("muted", m.muted)) if on]


# --- what decided ------------------------------------------------------------------------------


def deciding_metrics(verdict: Verdict) -> list[MetricResult]:
    """The metrics that made the verdict: the failures of a fail, the undecided ones of a canary
    that ran out of time; none for a pass (every judged metric decided it together)."""
    counted = [m for m in verdict.metrics if not m.muted]
    if verdict.verdict == "fail":
        failed = [m for m in counted if m.verdict == "fail"]
        return failed or [m for m in counted if m.verdict != "pass"]
    if verdict.verdict == "inconclusive" or (verdict.verdict == "pass" and verdict.final and
                                             any(m.verdict != "pass" for m in counted)):
        return [m for m in counted if m.verdict != "pass"]
    return []


def deciding_summary(verdict: Verdict) -> str:
    deciding = deciding_metrics(verdict)
    if deciding:
        return ", ".join(m.name for m in deciding)
    if verdict.verdict == "pass":
        return "all judged metrics (each within its tolerance)"
    return "none"


def deciding_first(verdict: Verdict) -> list[MetricResult]:
    """The verdict's metrics, those that decided it first, each group in the verdict's order."""
    deciding = {m.name for m in deciding_metrics(verdict)}
    return sorted(verdict.metrics, key=lambda m: (m.name not in deciding, verdict.metrics.index(m)))


def minutes_or_dash(x: float | None) -> str:
    return "-" if x is None else f"{x:g} min"
