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


def print_replayed(result: Any, console: Console) -> None:
    """`gate replay`: a case's name and evaluations, then its verdict as `gate check` shows one."""
    console.print(f"[bold]{result.case}[/]: {result.evaluations} evaluations")
    print_verdict(result.verdict, console, policy=result.policy, canary="canary",
                  baseline="baseline" if result.policy is None or result.policy.baseline else None)
    console.print()


def print_rollout_look(release: str, seen: Any, console: Console) -> None:
    """`gate rollout --watch`: each look of the rollout, one line (gate.rollout.Look.summary)."""
    console.print(f"rollout {release}: {seen.summary()}", highlight=False, markup=False)


def print_refresh(group: str, refresh: dict, console: Console) -> None:
    """`gate promote --wait`: where the production group's instance refresh stands, one line."""
    console.print(f"instance refresh {refresh['id']} of {group}: {refresh['status']} "
                  f"({refresh['percent']}%)", highlight=False, markup=False)


def print_action(outcome: Any, console: Console) -> None:
    """`gate promote` / `gate rollback`: what was (or would be) done, a line per step."""
    from gate.actions import describe

    for line in describe(outcome):
        console.print(line, highlight=False)


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


# ------------------------------------------------------------------------------ gate history


def print_history(release: str, records: list[dict], changes: list[dict], console: Console) -> None:
    """`gate history`: the recorded evaluations and, among them, gate rollout's weight changes."""
    from rich.markup import escape

    table = Table(box=None, pad_edge=False, header_style="bold", title_justify="left",
                  title=f"release {escape(release)}: {len(records)} evaluation(s), times in UTC")
    table.add_column("evaluated at", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("reason", overflow="fold", ratio=1)
    rows = [(r["evaluated_at"], escape(str(r["verdict"])), escape(str(r["reason"]))) for r in records]
    if changes:
        rows = sorted(rows + history_rows(changes), key=lambda row: _sort_moment(row[0]))
    for at, verdict, reason in rows:
        table.add_row(_moment(at), verdict, reason)
    console.print(table, highlight=False)


def history_rows(changes: list[dict]) -> list[tuple[Any, str, str]]:
    """`gate history`'s rows for traffic changes: (moment, what, why), escaped for rich."""
    from rich.markup import escape

    rows = []
    for c in changes:
        step, percent = c.get("step"), c.get("percent")
        what = f"traffic {percent}%" + (f" (step {step} of {len(c.get('steps') or [])})" if step else "")
        allowed = c.get("allowed_by") or {}
        why = {"start": "the rollout starts", "pass": "the step before passed", "fail": "the step failed: rolled back",
               "rollback": "gate rollback", "promote": "gate promote"}.get(allowed.get("verdict"), str(allowed.get("verdict")))
        if allowed.get("verdict") in ("pass", "fail") and allowed.get("evaluated_at") is not None:
            why += f" (verdict at {iso(int(allowed['evaluated_at']))})"
        if c.get("recovered"):
            why += "; recorded after a restart (the listener had it)"
        rows.append((c.get("set_at"), escape(what), escape(why)))
    return rows


def _sort_moment(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("inf")  # a damaged moment is shown last, as it is


def _moment(value) -> str:
    """A stored moment as ISO time; a damaged one as it is, flagged (history shows what is there)."""
    from rich.markup import escape

    try:
        return iso(int(value))
    except (TypeError, ValueError, OverflowError, OSError):
        return f"{escape(str(value))[:40]} (damaged)"


# ------------------------------------------------------------------------------ gate backtest, gate plan


def _rate_text(rate: dict) -> str:
    lo, hi = rate["ci95"]
    return f"{rate['count']}/{rate['of']} [{lo:.0%}-{hi:.0%}]" if rate["of"] else "-"


def print_backtest(report: dict, console) -> None:
    """The backtest as rich tables: false alarms, detection per metric and size, the
    recommendation as YAML."""
    from rich.markup import escape
    from rich.table import Table

    from gate.backtest import BROKEN_FACTOR, DECIDED_TARGET, DETECTION_SIZE, DETECTION_TARGET, EFFECT_SIZES
    from gate.policy import _human

    o = report["overall"]
    asked = report["recommendation"]["yaml"] is not None
    console.print(f"[bold]gate backtest[/] {escape(report['policy'])}: {report['windows']} windows of "
                  f"{_human(report['lifetime'])} over {report['history']['start']} .. {report['history']['end']} "
                  f"({report['history']['source_requests']} source request(s)), {report['runs']} judged canaries "
                  f"in {report['seconds']:g} s", highlight=False)
    console.print(f"mode: {report['mode']}: {escape(report['mode_reason'])}", style="dim", highlight=False)
    console.print(f"false alarms (A/A windows failed): {_rate_text(o['false_alarms'])} (95% interval); alpha {report['alpha']:g}; "
                  f"could not tell (A/A windows undecided at the end, {report['on_undecided']} by on_undecided): "
                  f"{_rate_text(o['undecided'])}; rolled back (clean windows the live gate fails): "
                  f"{_rate_text(o['rolled_back'])}; median time to pass {present.minutes_or_dash(o['median_minutes_to_pass'])}; "
                  f"canary stops reporting caught {_rate_text(o['canary_down']['detected'])} in "
                  f"{present.minutes_or_dash(o['canary_down']['median_minutes_to_fail'])}", highlight=False)
    if report["broken_history"]:
        console.print(f"[bold red]broken history[/]: {', '.join(map(escape, report['broken_history']))} failed most "
                      f"A/A windows by more than {BROKEN_FACTOR:g}x the tolerance: these false alarms measure the "
                      "history, not the policy (see the note below)", highlight=False)
    table = Table(box=None, pad_edge=False, header_style="bold", title_justify="left",
                  title="per metric: false alarms, A/A windows undecided (undec), and regressions of 1.5x, 2x, 3x the tolerance caught (median time to fail)")
    table.add_column("metric", overflow="fold")  # wraps a long name: the numbers are never cut
    table.add_column("tol", justify="right", no_wrap=True)
    table.add_column("false alarms", no_wrap=True)
    table.add_column("undec", no_wrap=True)
    for size in EFFECT_SIZES:
        table.add_column(f"{size:g}x", no_wrap=True)
    table.add_column("advised", justify="right", no_wrap=True)
    for m in report["metrics"]:
        kinds = sorted({i["kind"] for i in m["injections"]}, key=["shift", "rate", "tail", "ramp"].index) or [""]
        for n, kind in enumerate(kinds):
            cells = []
            for size in EFFECT_SIZES:
                i = next((i for i in m["injections"] if i["kind"] == kind and i["size"] == size), None)
                d = i["detected"] if i else {"of": 0}
                minutes = i["median_minutes_to_fail"] if i else None
                cells.append(f"{d['rate']:.0%}" + ("" if minutes is None else f" {minutes:.0f}m") if d["of"] else "-")
            first = n == 0
            recommended = m["recommended_tolerance"]
            tolerance = "-" if m["tolerance"] is None else f"{m['tolerance']:g}"
            table.add_row(f"{m['name']} {kind}".strip() if first else f"  {kind}", tolerance if first else "",
                          _rate_text(m["false_alarms"]) if first else "",
                          f"{m['undecided']['count']}/{m['undecided']['of']}" if first else "", *cells,
                          ("-" if not asked else "none" if recommended is None else f"{recommended:g}") if first else "")
    console.print(table, highlight=False)
    alarms = report["false_alarm_windows"]
    if alarms:
        console.print(f"[bold]windows that raised false alarms[/] ({len(alarms)})", highlight=False)
        for a in alarms[:20]:
            console.print(f"  {a['deployed_at']} +{a['minutes']:g} min  {escape(a['metric'])} ({a['rule']}): "
                          f"{escape(a['reason'])}", highlight=False, soft_wrap=True)
        if len(alarms) > 20:
            console.print(f"  ... {len(alarms) - 20} more (--json lists them all)", highlight=False)
    for reason in report["exit_reasons"]:
        console.print(f"[bold red]not fit for this service[/] (exit 3): {escape(reason)}", highlight=False,
                      soft_wrap=True)
    rec = report["recommendation"]
    for note in rec["notes"]:
        console.print(f"note: {escape(note)}", style="yellow", highlight=False, soft_wrap=True)
    if rec["yaml"] is None:
        return
    console.print("[bold]recommended[/] (smallest tolerances and shortest lifetime with clean windows rolled back "
                  "<= alpha, "
                  f"{DETECTION_SIZE:g}x-tolerance regressions caught in >= {DETECTION_TARGET:.0%} and clean windows "
                  f"told in >= {DECIDED_TARGET:.0%}):", highlight=False)
    console.print(escape(rec["yaml"]), highlight=False, soft_wrap=True)


def print_plan(data: dict, console) -> None:
    """The answer first, then a table of short cells only (it fits 80 columns whatever the
    metric names: nothing in it is cut), then the rules and what would suffice, wrapped."""
    from rich.markup import escape
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    from gate.plan import AT_END, OK, REGRESSION, TOO_SHORT, UNTIMED
    from gate.policy import _human

    def when(seconds):
        return "-" if seconds is None else _human(int(seconds)) if seconds % 60 == 0 else f"{seconds}s"

    styles = {OK: "bold green", AT_END: "bold yellow", UNTIMED: "bold yellow", TOO_SHORT: "bold red"}
    console.print(f"[{styles[data['verdict']]}]{data['verdict']}[/]: {escape(data['reason'])}", highlight=False)
    console.print(f"release {escape(data['release'])}, lifetime {_human(data['lifetime'])}, canary share "
                  f"{data['canary_share']:.1%} ({data['mode']}); a canary as good as the baseline passes after "
                  f"{when(data['seconds_to_pass'])}", highlight=False)
    if data.get("mode_reason"):
        console.print(f"mode: {data['mode']}: {escape(data['mode_reason'])}", style="dim", highlight=False)
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("metric", "tol", "passes after", f"fails at {REGRESSION:g}x after", "answer"):
        table.add_column(column, overflow="fold")
    for m in data["metrics"]:
        table.add_row(escape(m["name"]), "-" if m["tolerance"] is None else f"{m['tolerance']:g}",
                      when(m["seconds_to_pass"]),
                      "not in time" if m["tolerance"] and m["seconds_to_fail_2x"] is None else when(m["seconds_to_fail_2x"]),
                      f"[{styles[m['answer']]}]{m['answer']}[/]")
    console.print(table, highlight=False)
    for m in data["metrics"]:
        rules = [f"passes by {m['pass_rule']}" if m["pass_rule"] else "",
                 f"fails by {m['fail_rule']}" if m["fail_rule"] else ""]
        fixes = [f"a lifetime of {_human(m['lifetime_needed'])}" if m["lifetime_needed"] else "",
                 f"a canary share of {m['share_needed']:.1%}" if m["share_needed"] else ""]
        line = ", ".join(r for r in rules if r)
        if m["answer"] != OK and any(fixes):
            line += f"; would suffice: {' or '.join(f for f in fixes if f)}"
        elif m["share_needed"]:
            line += f"; judged from a canary share of {m['share_needed']:.1%}"
        if line:
            console.print(Padding(Text(f"{m['name']}: {line}", style="dim"), (0, 0, 0, 2)))
