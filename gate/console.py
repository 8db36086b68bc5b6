"""Human output for the terminal: the verdict, why, and the numbers per metric."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from gate.verdict import Verdict, iso

STYLE = {"pass": "bold green", "fail": "bold red", "inconclusive": "bold yellow", "skipped": "dim"}


def _pct(x: float | None) -> str:
    return "" if x is None else f"{x:+.1%}"


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.4g}"


def verdict_table(verdict: Verdict) -> Table:
    table = Table(show_edge=False, header_style="bold")
    for column in ("metric", "verdict", "canary", "baseline", "expected", "effect", "interval", "tolerance", "reason"):
        table.add_column(column, overflow="fold")
    for m in verdict.metrics:
        interval = "" if m.interval is None else f"[{_pct(m.interval[0])}, {_pct(m.interval[1])}]"
        tolerance = "" if m.tolerance is None else f"{m.tolerance:.0%}"
        name = m.name + (" (critical)" if m.critical else "") + (" (muted)" if m.muted else "")
        table.add_row(
            name, Text(m.verdict, style=STYLE.get(m.verdict, "")), _num(m.canary), _num(m.baseline),
            _num(m.expected), _pct(m.effect), interval, tolerance, m.reason,
        )
    return table


def print_verdict(verdict: Verdict, console: Console | None = None) -> None:
    console = console or Console()
    head = Text(f"{verdict.verdict.upper()}", style=STYLE[verdict.verdict])
    head.append(f"  release {verdict.release} at {iso(verdict.evaluated_at)}", style="bold")
    head.append(f"  ({(verdict.evaluated_at - verdict.deployed_at) // 60} min after the deploy)")
    console.print(head)
    console.print(verdict.reason)
    for note in verdict.notes:
        console.print(f"note: {note}", style="dim")
    console.print(verdict_table(verdict))
