"""Human output for the terminal: the verdict, why, and the numbers per metric.

Laid out for an 80-column Jenkins log as well as a wide terminal: one compact table of numbers
(no free text in it, so it never wraps mid-number), then each metric's reason on its own line(s)
with a hanging indent.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.padding import Padding
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from gate import present
from gate.release import iso
from gate.verdict import MetricResult, Verdict

STYLE = {"pass": "bold green", "fail": "bold red", "inconclusive": "bold yellow", "skipped": "dim"}
MARK = {"pass": "✓", "fail": "✗", "inconclusive": "?", "skipped": "-"}


# The table's cells: nothing where a value is missing, narrow percentages (a log is 80 columns).
def _pct(x: float | None) -> str:
    return present.compact_percent(x, "")


def _num(x: float | None) -> str:
    return present.number(x, "")


def _interval(m: MetricResult) -> str:
    return present.interval(m.interval, "", show=_pct)


def _flags(m: MetricResult) -> str:
    flags = present.flags(m)
    return f" ({', '.join(flags)})" if flags else ""


def _rows(verdict: Verdict) -> tuple[list[str], list[list[str]]]:
    """The numbers as strings; the expected column only when some metric has one."""
    with_expected = any(m.expected is not None for m in verdict.metrics)
    header = ["metric", "verdict", "canary", "baseline"] + (["expect"] if with_expected else [])
    header += ["effect", "interval", "tol"]
    with_slo = any(m.slo for m in verdict.metrics)
    header += ["slo"] if with_slo else []
    rows = []
    for m in verdict.metrics:
        row = [m.name, f"{MARK.get(m.verdict, '')} {m.verdict}", _num(m.canary), _num(m.baseline)]
        if with_expected:
            row.append(_num(m.expected))
        row += [_pct(m.effect), _interval(m), present.tolerance(m.tolerance, "")]
        row += [m.slo or ""] if with_slo else []
        rows.append(row)
    return header, rows


def table_width(verdict: Verdict) -> int:
    header, rows = _rows(verdict)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return sum(widths) + len(widths) - 1


def verdict_table(verdict: Verdict) -> Table:
    """The numbers: one row per metric, nothing in it that wraps."""
    header, rows = _rows(verdict)
    table = Table(show_edge=False, header_style="bold", pad_edge=False, box=None, padding=(0, 1, 0, 0))
    for i, name in enumerate(header):
        table.add_column(name, no_wrap=True, justify="left" if name in ("metric", "verdict", "interval") else "right")
    for m, row in zip(verdict.metrics, rows):
        table.add_row(*row[:1], Text(row[1], style=STYLE.get(m.verdict, "")), *row[2:])
    return table


def stacked(verdict: Verdict) -> Group:
    """For a terminal too narrow for the table (or long metric names): a few lines per metric."""
    parts = []
    for m in verdict.metrics:
        head = Text.assemble((f"{MARK.get(m.verdict, '')} {m.name}", STYLE.get(m.verdict, "")),
                             f"  {m.verdict}{_flags(m)}")
        numbers = [f"canary {present.number(m.canary)}", f"baseline {present.number(m.baseline)}"]
        if m.expected is not None:
            numbers.append(f"expected {_num(m.expected)}")
        effect = [f"effect {_pct(m.effect) or '–'} {present.interval(m.interval, '', _pct, m.interval_test)}".rstrip()]
        if m.tolerance is not None:
            effect.append(f"tolerance {present.tolerance(m.tolerance)}")
        if m.slo:
            effect.append(f"SLO {m.slo}")
        reason = Text(m.reason)
        if m.rule:
            reason.append(f" [{m.rule}]", style="dim")
        details = Group(Text(" · ".join(numbers)), Text(" · ".join(effect)), reason)
        parts += [head, Padding(details, (0, 0, 0, 4))]
    return Group(*parts)


def reasons_table(verdict: Verdict) -> Table:
    """Each metric's reason and rule, wrapped under itself."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold", ratio=1)
    for m in verdict.metrics:
        reason = Text(m.reason)
        if _flags(m):
            reason = Text.assemble((_flags(m).strip() + " ", "bold"), reason)
        if m.rule:
            reason.append(f" [{m.rule}]", style="dim")
        grid.add_row(Text(f"{MARK.get(m.verdict, '')} {m.name}", style=STYLE.get(m.verdict, "")), reason)
    return grid


def context_lines(verdict: Verdict, policy: Any = None, canary: str | None = None,
                  baseline: str | None = None) -> list[Text]:
    """What the report's summary says besides the verdict: what decided, the groups, the policy."""
    # Nothing has decided a verdict that is not final yet: the next look may change it.
    lines = [Text.assemble(("decided by: ", "bold"), present.deciding_summary(verdict))] if verdict.final else []
    if canary is None and policy is not None:
        canary, baseline = policy.scopes(baseline=baseline)
    if canary is not None:
        # Scopes quoted: a group's role and its scope are often the same word ("canary 'canary'").
        groups = f"canary {canary!r} vs " + (f"baseline {baseline!r}" if baseline else "its own history (no baseline)")
        lines.append(Text.assemble(("groups: ", "bold"), groups))
    if policy is not None:
        lines.append(Text.assemble(("policy: ", "bold"), (
            f"{policy.name} (source {policy.source.type}, every {present.minutes(policy.interval)}, lifetime "
            f"{present.minutes(policy.lifetime)}, alpha {policy.alpha:g}, undecided: {policy.on_undecided})")))
    return lines


def print_verdict(verdict: Verdict, console: Console | None = None, *, policy: Any = None,
                  canary: str | None = None, baseline: str | None = None) -> None:
    """The verdict, why, what decided it, the groups and the policy (as the report's summary),
    then the numbers per metric. `policy` and the groups are shown when given."""
    console = console or Console()
    minutes = (verdict.evaluated_at - verdict.deployed_at) // 60
    head = Text()
    head.append(f" {verdict.verdict.upper()} ", style=f"reverse {STYLE[verdict.verdict]}")
    head.append(f" release {verdict.release}", style="bold")
    head.append(f"  {iso(verdict.evaluated_at)}, {minutes} min after the deploy")
    if not verdict.final:
        head.append(" (not final)", style="dim")
    console.print(head, soft_wrap=False)
    why = Text.assemble(("why: ", "bold"), verdict.reason)
    console.print(why)
    for line in context_lines(verdict, policy, canary, baseline):
        console.print(line)
    for note in verdict.notes:
        console.print(Text(f"note: {note}", style="dim"))
    if not verdict.metrics:
        return
    console.print()
    if table_width(verdict) <= console.width:
        console.print(verdict_table(verdict))
        console.print()
        console.print(reasons_table(verdict))
    else:
        console.print(stacked(verdict))
    print_links(verdict, console)


def print_links(verdict: Verdict, console: Console) -> None:
    """Each failing metric's evidence links, one per line and never wrapped (a link cut in two at
    80 columns cannot be opened)."""
    linked = [m for m in verdict.metrics if m.links]
    if linked:
        console.print()
        console.print(Text("evidence:", style="bold"))
    for m in linked:
        for name, url in m.links.items():
            console.print(f"  {m.name} {name}: {url}", soft_wrap=True, highlight=False, markup=False)


class WatchProgress:
    """What `gate check --watch` shows while it waits: the lifetime elapsed as a bar, the last
    look's verdict and reason, and when the next look is.

    On a terminal it is a live line refreshed every second; in a log (Jenkins) one line per look,
    so the log tells the story of the release.
    """

    def __init__(self, console: Console, deployed_at: int, end_at: int, interval: int):
        self.console = console
        self.deployed_at, self.end_at, self.interval = deployed_at, end_at, interval
        self.looks = 0
        self.last: Verdict | None = None
        self._live: Live | None = None

    def __enter__(self) -> WatchProgress:
        if self.console.is_terminal:
            self._live = Live(self, console=self.console, refresh_per_second=1, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)

    def update(self, verdict: Verdict) -> None:
        self.looks += 1
        self.last = verdict
        if self._live is None:
            minutes = (verdict.evaluated_at - self.deployed_at) / 60
            total = (self.end_at - self.deployed_at) / 60
            line = Text(f"look {self.looks} at {minutes:.0f}/{total:.0f} min: ")
            line.append(verdict.verdict, style=STYLE.get(verdict.verdict, ""))
            line.append(f": {verdict.reason}")
            self.console.print(line, highlight=False)

    def __rich__(self) -> Group:
        now = time.time()
        total = max(1, self.end_at - self.deployed_at)
        done = min(total, max(0, now - self.deployed_at))
        bar = Table.grid(padding=(0, 1))
        bar.add_row(ProgressBar(total=total, completed=done, width=30),
                    Text(f"{done / 60:.0f}/{total / 60:.0f} min, look {self.looks}"))
        if self.last is None:
            status = Text("first look...", style="dim")
        else:
            status = Text(f"{self.last.verdict}", style=STYLE.get(self.last.verdict, ""))
            wait = self.last.evaluated_at + self.interval - now
            status.append(f" (next look in {max(0, wait):.0f} s): " if wait > 0 else ": ")
            status.append(self.last.reason)
        status.truncate(max(20, self.console.width * 2), overflow="ellipsis")
        return Group(bar, status)


class StageProgress:
    """The progress of a long command (`gate backtest`, `gate plan`) on stderr, as
    `progress(stage, done, total)` (total None: a stage of one step).

    On a terminal a bar per stage that vanishes at the end; in a log (CI), where a bar prints
    nothing, a line when a stage starts and at each tenth of it, with the seconds elapsed, so the
    log never goes silent for long.
    """

    def __init__(self, console: Console, command: str):
        self.console, self.command = console, command
        self.started = time.monotonic()
        self._bar = None
        self._tasks: dict[str, Any] = {}
        self._told: dict[str, int] = {}

    def __enter__(self) -> StageProgress:
        if self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=self.console, transient=True)
            self._bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def __call__(self, stage: str, done: int = 0, total: int | None = None) -> None:
        if self._bar is not None:
            if stage not in self._tasks:
                self._tasks[stage] = self._bar.add_task(stage, total=total)
            self._bar.update(self._tasks[stage], completed=done)
            return
        tenth = 10 * done // total if total else 0
        if self._told.get(stage, -1) >= tenth:
            return
        self._told[stage] = tenth
        count = f" {done}/{total}" if total else ""
        self.console.print(f"{self.command}: {stage}{count} ({time.monotonic() - self.started:.0f} s)",
                           highlight=False, soft_wrap=True)
