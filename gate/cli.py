"""`gate`: the command line. Thin: parsing, output and exit codes; the work is in gate.analysis.

Exit codes: 0 pass, 1 fail, 3 inconclusive, 4 could not judge; 2 is a usage error (click).
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from gate.errors import CrashError, GateError, PolicyError, ReleaseError, SourceError
from gate.release import check_release, parse_time
from gate.verdict import EXIT_CODES, EXIT_ERROR, Verdict


class HelpAlone(TyperGroup):
    """`--help` prints the help and exits 0, so it is honoured only alone: asked with other
    arguments (`gate check --help --policy P web-1`, a release where an option can be read) that 0
    would read as a pass and promote. Refused as a usage error (exit 2); `gate check --help` and
    `gate --help` stay help. After `--` it is an argument, not the option."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        command = self.get_command(ctx, args[0]) if args else None
        if isinstance(command, TyperGroup):  # a group of commands (`gate policy ...`) checks its own
            return super().parse_args(ctx, args)
        options = args[: args.index("--")] if "--" in args else args
        helps = [a for a in options if a in ctx.help_option_names]
        others = [a for a in args if a not in helps][1 if command is not None else 0:]
        if helps and others:
            alone = " ".join([ctx.command_path, *args[:1 if command is not None else 0], helps[0]])
            ctx.fail(f"{helps[0]} asked with other arguments ({' '.join(others)[:100]}) would only print the "
                     f"help and exit 0, which reads as a pass: ask for it alone ({alone})")  # exit 2
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=HelpAlone,
    help="canary-gate: judge a canary release against its baseline and its seasonal history.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
policy_app = typer.Typer(cls=HelpAlone, help="Policy files: validate them, publish their JSON Schema.",
                         no_args_is_help=True)
app.add_typer(policy_app, name="policy")

out = Console()
err = Console(stderr=True)

PolicyOption = Annotated[Path, typer.Option("--policy", "-p", help="Policy file (YAML).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
StoreOption = Annotated[
    Optional[Path], typer.Option("--store", help="SQLite file of the evaluation history [env GATE_STORE].")
]
ReleaseArgument = Annotated[str, typer.Argument(help="Release name (also usable in scopes as {release}).")]
CanaryOption = Annotated[Optional[str], typer.Option(help="Canary scope, overrides the policy's.")]
BaselineOption = Annotated[Optional[str], typer.Option(help="Baseline scope, overrides the policy's.")]
DeployedAtOption = Annotated[Optional[str], typer.Option(
    help="When the canary started (ISO 8601 or epoch). Default: the first check of the release.")]


def print_error(message: str) -> int:
    """The one way an error is shown: one line on stderr (no markup taken from the message)."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return EXIT_ERROR


def fail_closed(message: str) -> typer.Exit:
    """Could not judge: one line on stderr, exit 4. Never a pass."""
    return typer.Exit(print_error(message))


def parse_deployed_at(text: str) -> int:
    """`--deployed-at`: a moment, or a ReleaseError naming the option (exit 4, never a traceback)."""
    try:
        return parse_time(text)
    except ValueError as e:
        raise ReleaseError(f"--deployed-at: {e}") from None


def print_result(verdict: Verdict, as_json: bool, analysis=None) -> None:
    if as_json:
        print(json.dumps(verdict.to_dict()), flush=True)
    else:
        from gate.console import print_verdict

        if analysis is None:
            print_verdict(verdict, out)
        else:
            print_verdict(verdict, out, policy=analysis.policy, canary=analysis.canary, baseline=analysis.baseline)


@app.command()
def check(
    release: ReleaseArgument,
    policy: PolicyOption,
    canary: CanaryOption = None,
    baseline: BaselineOption = None,
    deployed_at: DeployedAtOption = None,
    watch: Annotated[bool, typer.Option(help="Repeat every interval until decided or the lifetime ends.")] = False,
    as_json: JsonOption = False,
    store: StoreOption = None,
    interval: Annotated[Optional[str], typer.Option(help="Evaluation interval, overrides the policy's (e.g. 5m).")] = None,
    lifetime: Annotated[Optional[str], typer.Option(help="Canary lifetime, overrides the policy's (e.g. 2h).")] = None,
    junit: Annotated[
        Optional[Path], typer.Option("--junit", help="Also write the verdict as JUnit XML, one test case per metric.")
    ] = None,
    examine_past: Annotated[bool, typer.Option(
        "--examine-past", help="Judge a deploy whose canary window is already over (a recorded canary).")] = False,
) -> None:
    """Evaluate a release now (or watch it until it is decided)."""
    from gate import junit as junit_xml

    if junit:  # written first: a gate killed before its verdict leaves a could-not-judge report
        write_junit(junit, junit_xml.error_report(release, "the gate stopped before a verdict: see its log"))
    try:
        check_release(release)  # before anything is written with its name but the JUnit report
        analysis, now = _open_release(release, policy, canary, baseline, deployed_at, store, interval, lifetime,
                                      examine_past)
        evaluation = _watch(analysis, now) if watch else analysis.evaluation(now)
    except (Exception, KeyboardInterrupt) as e:
        if junit:  # the cause, for the CI server's test report
            write_junit(junit, junit_xml.error_report(release, error_line(e)))
        raise
    verdict = evaluation.verdict
    if junit:
        write_junit(junit, junit_xml.report(verdict))
    print_result(verdict, as_json, analysis)
    _announce(analysis, evaluation)
    raise typer.Exit(EXIT_CODES[verdict.verdict])


def _open_release(release, policy, canary, baseline, deployed_at, store, interval, lifetime, examine_past: bool):
    """The release's analysis (its deploy registered in the store) and the moment to judge."""
    from gate.analysis import current_moment, open_release
    from gate.cache import ReferenceCache
    from gate.policy import load_policy, with_overrides
    from gate.sources import open_source_from
    from gate.store import open_store

    requested = parse_deployed_at(deployed_at) if deployed_at is not None else None
    loaded = load_policy(policy)
    if interval or lifetime:
        overrides = {k: v for k, v in (("interval", interval), ("lifetime", lifetime)) if v}
        loaded = with_overrides(loaded, f"{policy} with --interval/--lifetime", **overrides)
    now = current_moment(loaded)
    analysis = open_release(loaded, release, now, open_source=lambda p: open_source_from(p, str(policy)),
                            store=open_store(store), requested=requested, canary=canary, baseline=baseline,
                            examine_past=examine_past, cache=ReferenceCache())
    return analysis, now


def write_junit(path: Path, xml: str) -> None:
    """`--junit`: a report that cannot be written is a could-not-judge of its own, in one line."""
    from gate import junit as junit_xml

    try:
        junit_xml.write(path, xml)
    except OSError as e:
        cause = e.strerror or type(e).__name__
        # a folder on the way that is not one ("File exists: out"); not the temporary file's name
        where = f": {e.filename}" if e.filename and Path(e.filename) in Path(path).parents else ""
        raise GateError(f"--junit {path}: cannot write the report ({cause}{where})") from None


def _announce(analysis, evaluation) -> None:
    """A decisive verdict gets its report, its Slack message and its Datadog event; none can change it."""
    from gate.analysis import announce

    location = announce(analysis, evaluation)
    if location:
        err.print(f"report: {location}", highlight=False, soft_wrap=True)


def _sleep_until(t: int) -> None:
    """A live watch's wait before the evaluation at moment t (a replay only moves its clock)."""
    while time.time() < t:
        time.sleep(min(1.0, max(0.0, t - time.time())))


def _watch(analysis, now: int):
    from gate.console import WatchProgress

    with WatchProgress(err, analysis.deployed_at, analysis.end_at, analysis.policy.interval) as progress:
        evaluation, _ = analysis.watch(wait=_sleep_until, on_verdict=progress.update, start=max(now, analysis.deployed_at))
    return evaluation


@app.command()
def rollout(
    release: ReleaseArgument,
    policy: PolicyOption,
    canary: CanaryOption = None,
    baseline: BaselineOption = None,
    deployed_at: DeployedAtOption = None,
    watch: Annotated[bool, typer.Option(help="Go on every interval until every step passed or one failed.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="One look: say what would change; change no weight.")] = False,
    simulated_alb: Annotated[bool, typer.Option("--simulated-alb", help="Steer a simulated load balancer (its "
                                                "weights kept in the store), no AWS: a demo source only.")] = False,
    as_json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Shift traffic to the canary in the policy's steps (rollout:), judging each step; a fail sends it back to 0.

    Exit 0 once the last step passed, 1 when a step failed (the canary's weight is 0 again), 3 while
    steps remain (run again: it resumes at the recorded step), 4 when it could not judge or the
    load balancer's weights were changed by someone else."""
    from gate import rollout as steps
    from gate.console import print_rollout_look
    from gate.simulated_alb import router_for

    check_release(release)
    analysis, _ = _open_release(release, policy, canary, baseline, deployed_at, store, None, None, False)
    try:
        analysis.policy.rollout_or_refuse()
    except PolicyError as e:
        raise fail_closed(f"{policy}: {e}") from None
    router = router_for(analysis.policy, analysis.store, release, simulated=simulated_alb)
    machine = steps.Rollout(analysis, router, dry_run=dry_run)

    def progress(seen) -> None:
        print_rollout_look(release, seen, err)

    seen = steps.watch(machine, _sleep_until, progress) if watch else machine.tick(int(time.time()))
    if as_json:
        print(json.dumps(seen.to_dict()), flush=True)
    else:
        out.print(f"rollout {escape(release)}: {escape(seen.summary())}", highlight=False)
        if seen.verdict is not None:
            print_result(seen.verdict, False, analysis)
    if seen.to_announce:
        _announce(machine.judged, machine.evaluation)  # the step's analysis: its window, its verdict
    raise typer.Exit(seen.exit_code)  # a dry run's is never 0 (gate.rollout.Look), as its JSON says


@app.command()
def replay(
    cases: Annotated[list[Path], typer.Argument(help="Case folders (docs/case-format.md), e.g. examples/cases/k1m-aa-000.")],
    policy: Annotated[Optional[Path], typer.Option("--policy", "-p", help="Policy file; default: from case.json.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Replay recorded cases step by step, as the live loop would, and print their verdicts."""
    from gate.console import print_replayed
    from gate.policy import load_policy
    from gate.replays import Replays

    replays = Replays(cases, load_policy(policy) if policy else None)
    for replayed in replays:
        if replayed.error is not None:
            print_error(replayed.error)
        if as_json:
            print(json.dumps(replayed.to_dict()), flush=True)
        elif replayed.result is not None:
            print_replayed(replayed.result, out)
    if not as_json and len(cases) > 1:
        out.print(replays.summary(), highlight=False)
    raise typer.Exit(replays.exit_code)


@app.command()
def backtest(
    policy: PolicyOption,
    days: Annotated[float, typer.Option(help="Days of history to read (once) and cut windows from.")] = 14,
    lifetime: Annotated[Optional[str], typer.Option(help="Canary lifetime to test, overrides the policy's (e.g. 1h).")] = None,
    windows: Annotated[int, typer.Option(help="A/A windows spread over the history.")] = 32,
    until: Annotated[Optional[str], typer.Option(help="End of the history (ISO 8601 or epoch); default now "
                                                 "(a recorded case: its deploy).")] = None,
    jobs: Annotated[int, typer.Option(help="Processes judging windows (default: every core).")] = 0,
    recommend: Annotated[bool, typer.Option(help="Search the tolerances and lifetime to recommend "
                                            "(--no-recommend: the policy's own numbers only, a third of the canaries).")] = True,
    canary_share: Annotated[float, typer.Option(help="The canary's traffic as a share of the baseline group's: split "
                                                "by host, the canary side runs as many hosts and as much traffic.")] = 0.05,
    html: Annotated[Optional[Path], typer.Option("--html", help="Also write the backtest as an HTML page.")] = None,
    as_json: JsonOption = False,
) -> None:
    """How often this policy's gate would cry wolf on the service's own history, what it
    catches, and the tolerances and lifetime that meet its alpha: the real judge on
    pseudo-canaries cut from the history (read once). Exit 0 when the clean windows it would roll
    back (false alarms, and undecided ones under on_undecided: fail) are within alpha and at most a
    tenth are undecided; 3 otherwise (as `gate plan`'s too short)."""
    from gate.backtest import backtest as run_backtest, exit_code
    from gate.console import StageProgress, print_backtest
    from gate.policy import load_policy, parse_duration
    from gate.sources import open_source_from

    loaded = load_policy(policy)
    try:
        override = parse_duration(lifetime) if lifetime is not None else None
    except ValueError as e:
        raise fail_closed(f"--lifetime: {e}") from None
    try:
        end = parse_time(until) if until is not None else None
    except ValueError as e:
        raise fail_closed(f"--until: {e}") from None
    source = open_source_from(loaded, str(policy))
    with StageProgress(err, "backtest") as progress:
        result = run_backtest(loaded, source, days=days, windows=windows, until=end, jobs=jobs or None,
                              lifetime=override, progress=progress, recommend=recommend, canary_share=canary_share)
    report_data = result.to_dict()
    if html is not None:
        from gate.report.backtest import write

        err.print(f"backtest page: {write(html, report_data)}", highlight=False, soft_wrap=True)
    if as_json:
        print(json.dumps(report_data), flush=True)
    else:
        print_backtest(report_data, out)
    raise typer.Exit(exit_code(report_data))


@app.command()
def plan(
    release: ReleaseArgument,
    policy: PolicyOption,
    canary_share: Annotated[float, typer.Option(help="The canary's traffic as a share of the baseline group's.")] = 0.05,
    at: Annotated[Optional[str], typer.Option(help="When the canary would start (ISO 8601 or epoch); default now.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Pre-flight: how long this canary needs to pass when as good as the baseline, and to fail
    at 2x tolerance, at today's traffic and noise (the judge's own model). Exit 0 ok, 3 too short or at the end."""
    from gate.console import StageProgress, print_plan
    from gate.plan import OK, Options, plan as make_plan
    from gate.policy import load_policy
    from gate.sources import open_source_from

    check_release(release)
    loaded = load_policy(policy)
    try:
        deployed_at = parse_time(at) if at is not None else int(time.time())
    except ValueError as e:
        raise fail_closed(f"--at: {e}") from None
    source = open_source_from(loaded, str(policy))
    with StageProgress(err, "plan") as progress:
        data = make_plan(loaded, source, release, share=canary_share, deployed_at=deployed_at,
                         progress=progress, options=Options(at="--at" if at is not None else None)).to_dict()
    if as_json:
        print(json.dumps(data), flush=True)
    else:
        print_plan(data, out)
    raise typer.Exit(0 if data["verdict"] == OK else EXIT_CODES["inconclusive"])


@app.command()
def demo(
    scenario: Annotated[
        Optional[str],
        typer.Argument(help="healthy, db_connections (default), payment_failures, bad_version, gateway_killed."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the simulated data (same seed, same data).")] = 7,
    pace: Annotated[float, typer.Option(help="Seconds of pause per simulated interval.")] = 0.15,
    rollout: Annotated[bool, typer.Option("--rollout", help="Step the canary's traffic 5% -> 25% -> 50% on a "
                                          "simulated load balancer, as gate rollout does on an ALB.")] = False,
    as_json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Run a whole simulated canary release, time compressed (no account needed)."""
    if rollout:
        from gate.demo_rollout import run_rollout_demo as run
    else:
        from gate.demo import run_demo as run

    raise typer.Exit(run(scenario, seed=seed, pace=pace, as_json=as_json, store=store, out=out, err=err))


@app.command()
def history(release: str, store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Show the recorded evaluations of a release."""
    from gate.store import open_store

    check_release(release)
    history_store = open_store(store)
    records = history_store.evaluations(release)
    changes = history_store.traffic(release)  # gate rollout's weight changes, shown among the evaluations
    if not records and not changes:
        raise fail_closed(f"no evaluation recorded for release {release!r}")
    if as_json:
        print(json.dumps(records))
        return
    from gate.console import print_history

    print_history(release, records, changes, out)


@app.command()
def report(
    release: str,
    store: StoreOption = None,
    out_file: Annotated[Optional[Path], typer.Option("--out", help="File to write; default reports/RELEASE.html "
                                                     "(or S3 when GATE_REPORT_BUCKET is set).")] = None,
) -> None:
    """Write the HTML report of a release's last decisive verdict, from the store alone."""
    from gate.report import rebuild
    from gate.report.publish import publish
    from gate.store import open_store

    check_release(release)
    out.print(publish(rebuild(open_store(store), release), release, out_file), highlight=False, soft_wrap=True)


AsgOption = Annotated[Optional[str], typer.Option(help="Auto Scaling group name, overrides the policy's.")]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Print what would change; change nothing.")]


def _groups_and_aws(release: str, loaded, **names):
    from gate import actions

    return actions.resolve_groups(release, loaded, **names), actions.clients(loaded)


def _print_action(outcome, as_json: bool) -> None:
    from gate.console import print_action

    if as_json:
        print(json.dumps(outcome.to_dict()), flush=True)
    else:
        print_action(outcome, out)


@app.command()
def promote(
    release: Annotated[str, typer.Argument(help="Release name (recorded in the store).")],
    policy: Annotated[Optional[Path], typer.Option("--policy", "-p", help="Policy file naming the groups.")] = None,
    production_asg: AsgOption = None,
    canary_asg: AsgOption = None,
    baseline_asg: AsgOption = None,
    strategy: Annotated[Optional[str], typer.Option(help="refresh (instance refresh with checkpoints) or swap. "
                                                    "Default: the policy's actions.strategy (refresh).")] = None,
    checkpoints: Annotated[Optional[str], typer.Option(help="Instance refresh checkpoints, percent. Default: the "
                                                       "policy's actions.checkpoints (20,50,100).")] = None,
    checkpoint_delay: Annotated[Optional[str], typer.Option(help="Pause at each checkpoint (e.g. 10m). Default: "
                                                            "the policy's actions.checkpoint_delay (10m).")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the instance refresh to end, then scale "
                                       "the canary and baseline down (exit 4 if it fails or times out).")] = False,
    timeout: Annotated[str, typer.Option(help="With --wait: how long to wait for the refresh (e.g. 2h).")] = "2h",
    force: Annotated[bool, typer.Option("--force", help="Start a new instance refresh even though the last "
                                        "one failed, was cancelled or rolled back.")] = False,
    dry_run: DryRunOption = False,
    as_json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Roll the canary's launch template version out to production, then scale the canary and
    baseline groups to zero (after an instance refresh, once it has succeeded: run promote again,
    or use --wait). Safe to run again. Unlike rollback, a store that cannot be opened stops it
    before any change (exit 4): a promotion can wait, and must not change production unrecorded."""
    from gate import actions
    from gate.console import print_refresh
    from gate.policy import load_policy, parse_duration
    from gate.rollout import rollback_traffic_planner
    from gate.store import open_store

    check_release(release)
    loaded = load_policy(policy) if policy else None
    settings = actions.promote_settings(loaded, strategy=strategy, checkpoints=checkpoints,
                                        checkpoint_delay=checkpoint_delay)
    try:
        wait_seconds = parse_duration(timeout)
    except ValueError as e:
        raise fail_closed(f"--timeout: {e}") from None
    groups, aws = _groups_and_aws(release, loaded, production=production_asg, canary=canary_asg,
                                  baseline=baseline_asg)
    def progress(refresh: dict) -> None:
        print_refresh(groups.production, refresh, err)

    # Opened before anything is changed, on purpose (rollback does the opposite): waiting costs a
    # promotion nothing (the canary keeps its share, a rerun finishes it), and production changed
    # with no record of the promotion would leave no trace of who promoted what, nor the traffic
    # step the deploy it belongs to.
    history = None if dry_run else open_store(store)
    promote_groups = actions.ACTIONS["promote"]
    outcome = promote_groups(release, groups, aws, strategy=settings.strategy,
                             refresh=actions.Refresh(settings.checkpoints, settings.checkpoint_delay), dry_run=dry_run,
                             store=history, force=force, wait=wait,
                             timeout=wait_seconds, on_progress=progress,
                             traffic=rollback_traffic_planner(loaded, release, history, by="promote"))
    _print_action(outcome, as_json)


@app.command()
def rollback(
    release: Annotated[str, typer.Argument(help="Release name (recorded in the store).")],
    policy: Annotated[Optional[Path], typer.Option("--policy", "-p", help="Policy file naming the groups.")] = None,
    canary_asg: AsgOption = None,
    baseline_asg: AsgOption = None,
    dry_run: DryRunOption = False,
    as_json: JsonOption = False,
    store: StoreOption = None,
) -> None:
    """Scale the canary (and baseline) groups to zero; production is left untouched. Safe to run
    again. A store that cannot be opened, read or written to does not stop it: what it could not
    record is said (a note, and a warning on stderr). A rollout's traffic goes back to production
    first: a listener AWS could not read at first (denied, throttled, unreachable) is read again
    then; one that does not hold the policy's target groups, cannot be written, or is not seen at 0
    after the write stops the rollback before any group scales down (exit 4, the shares said)."""
    from gate import actions
    from gate.policy import load_policy
    from gate.rollout import rollback_traffic_planner
    from gate.store import BestEffort, open_store

    check_release(release)
    loaded = load_policy(policy) if policy else None
    groups, aws = _groups_and_aws(release, loaded, canary=canary_asg, baseline=baseline_asg)
    # The safety action never waits on a record: the store's faults are kept and told after it.
    history = None if dry_run else BestEffort(lambda: open_store(store))
    traffic = rollback_traffic_planner(loaded, release, history, by="rollback")
    outcome = None
    try:
        outcome = actions.ACTIONS["rollback"](release, groups, aws, dry_run=dry_run, store=history,
                                              traffic=traffic() if traffic else [])
    finally:  # a failed AWS step's record lost too is said, not swallowed (review)
        for fault in history.faults if history is not None else []:
            if outcome is not None:
                outcome.notes.append(f"not recorded: {fault}")
            err.print(f"[bold yellow]warning:[/] {'the rollback went on, ' if outcome is not None else ''}not recorded: "
                      f"{escape(fault)}", highlight=False, soft_wrap=True)
    _print_action(outcome, as_json)


@policy_app.command("schema")
def policy_schema() -> None:
    """Print the JSON Schema of policy files."""
    from gate.policy import json_schema

    print(json_schema())


@policy_app.command("validate")
def policy_validate(files: Annotated[list[Path], typer.Argument(help="Policy files.")]) -> None:
    """Validate policy files, their source's queries and options included; exit 4 on the first invalid one."""
    from gate.policy import load_policy
    from gate.sources import open_source_from

    for f in files:
        p = load_policy(f)
        # Building the source checks what only it knows (Datadog queries, CloudWatch options, the
        # replay case) and fetches nothing. It checks the policy before the environment, so a
        # SourceError (keys not set here, an unknown site) means the policy itself is fine.
        try:
            open_source_from(p, str(f))
        except SourceError:
            pass
        out.print(f"{f}: ok ({p.name}, {len(p.metrics)} metrics, source {p.source.type})", highlight=False)


def reflow_help(*apps: typer.Typer) -> None:
    """Each command's help as paragraphs the terminal wraps: typer keeps the docstring's own line
    breaks after the first paragraph, which at 80 columns (a CI log) cut sentences in two."""
    import inspect

    for group in apps:
        for command in group.registered_commands:
            text = command.help or inspect.getdoc(command.callback) or ""
            command.help = "\n\n".join(" ".join(p.split()) for p in text.split("\n\n"))


reflow_help(app, policy_app)


def main() -> None:
    """Entry point: maps every 'could not judge' to exit 4 with one line, never a traceback.

    Usage errors stay click's (exit 2); anything unexpected is a could-not-judge, not a pass.
    GATE_LOG_LEVEL (DEBUG, INFO, ...) shows the gate's own log lines on stderr.
    """
    from gate.settings import current_settings

    settings = current_settings()
    configure_logging(settings.log_level)
    try:
        app()
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - a crash must never read as a pass
        if settings.debug and is_crash(e):
            traceback.print_exc()  # a crash while judging: the CrashError and, above it, the bug's own
        sys.exit(print_error(error_line(e)))


def is_crash(e: BaseException) -> bool:
    """A bug of the gate's rather than a fault it names: anything that is no GateError, and a
    crash while judging (CrashError: recorded as could-not-judge, its cause the bug)."""
    return isinstance(e, CrashError) or not isinstance(e, (GateError, KeyboardInterrupt))


def error_line(e: BaseException) -> str:
    """What stopped the gate, as the one error line (stderr, the JUnit report)."""
    if isinstance(e, CrashError):
        return f"{e} (set GATE_DEBUG=1 for the traceback)"
    if isinstance(e, GateError):
        return str(e)
    if isinstance(e, KeyboardInterrupt):
        return "interrupted"
    return f"internal error: {type(e).__name__}: {e} (set GATE_DEBUG=1 for the traceback)"


def configure_logging(level: str | None) -> None:
    """GATE_LOG_LEVEL=DEBUG|INFO|WARNING|ERROR: the `gate.*` loggers (Datadog rate-limit headroom,
    retries, notifications) on stderr. Only the gate's own loggers: libraries' debug lines can
    carry credentials."""
    if not level:
        return
    value = logging.getLevelName(level.strip().upper())
    if not isinstance(value, int):
        err.print(f"warning: GATE_LOG_LEVEL={level!r} is not DEBUG, INFO, WARNING or ERROR: ignored",
                  highlight=False, markup=False)
        return
    logger = logging.getLogger("gate")
    if not any(getattr(h, "_gate", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._gate = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(value)


if __name__ == "__main__":
    main()
