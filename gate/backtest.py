"""`gate backtest`: how often a policy cries wolf on this service's own history, and what it
catches, measured by running the real judge on pseudo-canaries cut from that history.

The history is read once from the policy's source (one request of the source interface, for
every window). Each window of it is judged as a release deployed at its start, step by step as
the live loop judges (`analysis.replay_recorded`, the rule `gate replay` uses):

* A/A (nothing changed): the window as it was. With a concurrent baseline whose canary group
  also has history (the simulated service; a canary scope that existed before), canary vs
  baseline as the policy judges them ("paired"). A new canary group has none: then the baseline
  group is split in two halves of its hosts (the source's `fetch_hosts`: Datadog `by {host}`,
  CloudWatch per InstanceId), judged against each other as canary and baseline ("split by
  host"). Where the source cannot split it (one host, no per-host metric, the replay source),
  the group is judged against its own history ("history-only" judge), and the report says why.
* Injected regressions on the same windows, per metric at 1.5x, 2x and 3x its tolerance: a
  shift, a slow tail (latencies), a leak ramp (memory), a rate factor (counts); and a canary
  that stops reporting.

A false alarm is an A/A window the gate fails for a metric (at any look, or at the end of the
lifetime); an A/A window the judge could not tell at the end is undecided. The policy's
`on_undecided` decides what the live gate makes of an undecided canary: `fail` rolls it back as a
false alarm does, so the A/A windows the policy rolls back (`rolled_back`) are its false alarms
plus, under `fail`, its undecided ones; that is the rate held to alpha. Then the smallest tolerance
per metric, and the shortest lifetime, that keep the rollbacks at or below the policy's alpha and
judge in time (`judged_in_time`, the rule `gate plan` uses too).
"""

from __future__ import annotations

import math
import os
import statistics
import time
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from gate.analysis import group_scopes, replay_recorded
from gate.errors import GateError, InputError, PolicyError, SourceError
from gate.lifecycle import FUTURE_SKEW
from gate.policy import MAX_TOLERANCE, MIN_TOLERANCE, Metric, Policy, _human, parse_policy
from gate.series import Frame, Observations
from gate.sources import CannotSplit, MetricSource, Query
from gate.sources.replay import Case
from gate.stats.rates import proportion_interval, trials_for
from gate.stats.seasonal import same_kind_from
from gate.release import iso
from gate.rules import Rule

DAY = 86400
MAX_DAYS = 366  # of history a backtest reads (the Lambda's event allows as many)
EFFECT_SIZES = (1.5, 2.0, 3.0)  # injected regressions, in multiples of the metric's tolerance
DETECTION_SIZE = 2.0  # the regression a recommendation must catch...
DETECTION_TARGET = 0.9  # ...this often
DECIDED_TARGET = 0.9  # and a clean canary told from it (passed, not "could not tell" at the end) this often
TOLERANCE_FACTORS = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0)  # candidate tolerances, times the policy's
LIFETIME_FACTORS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0)  # candidate lifetimes, times the policy's
TAIL_SHARE = 0.2  # a slow tail: this share of the points, slow enough to move the mean as a shift does
DOWN_AFTER = 0.25  # a canary that stops reporting does so a quarter into its lifetime
MIN_COVERAGE = 0.5  # of the history's moments with a point: fewer, and the windows judge gaps, not the service
PAIRED_COVERAGE = 0.9  # the canary group's history must cover this share of the baseline's to be paired
DEFAULT_WINDOWS = 32
# Split by host: at most this many splits, each with another host on the canary side, dealt over
# the windows (`host_sides`).
MAX_TURNS = 8
SPLIT = "split by host"  # the mode of a baseline split by host into a canary side and a baseline side
# The canary's traffic as a share of the baseline group's, unless asked (`gate plan`'s default too).
DEFAULT_CANARY_SHARE = 0.05
BROKEN_FACTOR = max(TOLERANCE_FACTORS)  # an A/A window failed by more than this x the tolerance...
BROKEN_SHARE = 0.5  # ...in this share of the windows: the history is broken, not the policy too tight
BACKTEST_RELEASE = "backtest"  # what `{release}` in a scope becomes: no real release has run there
MEMORY_UNITS = {"b", "bytes", "kb", "kib", "mb", "mib", "gb", "gib"}


# ------------------------------------------------------------------------------ the history


@dataclass(frozen=True)
class History:
    """What the pseudo-canaries are cut from: the judged group and, paired, its baseline."""

    group: Frame
    baseline: Frame | None
    mode: str  # "paired", "split by host" or "history-only"
    why: str  # why this mode, for the report
    start: int
    end: int
    requests: int  # source requests made to read it (one: never per window)
    # Split by host: the other turns of the sides, each another host on the canary side
    # (`host_sides`); the windows take them in turn (`over`), the first window the first turn.
    turns: tuple[tuple[Frame, Frame], ...] = ()
    windows: tuple[int, ...] = ()  # the window starts the turns are dealt over

    def over(self, windows: list[int]) -> History:
        """The history with its turns dealt over these window starts, one after another."""
        return replace(self, windows=tuple(windows))

    def sides(self, deployed_at: int) -> tuple[Frame, Frame | None]:
        """The group (the canary side) and the baseline a window deployed at `deployed_at` judges."""
        if not self.turns:
            return self.group, self.baseline
        if deployed_at not in self.windows:  # a caller that judged windows not dealt (`over`) the turns
            raise ValueError(f"a window at {iso(deployed_at)} was not dealt a turn of the split: History.over(starts) first")
        every = ((self.group, self.baseline),) + self.turns
        return every[self.windows.index(deployed_at) % len(every)]

    def frames(self, start: int, end: int, deployed_at: int) -> dict[str, Frame]:
        group, baseline = self.sides(deployed_at)
        frames = {"canary": group.between(start, end)}
        if baseline is not None:
            frames["baseline"] = baseline.between(start, end)
        return frames


class CountingSource:
    """The policy's source, counting its requests (the note says how many a backtest makes)."""

    def __init__(self, source: MetricSource):
        self.source, self.requests = source, 0

    def fetch(self, query: Query) -> Observations:
        self.requests += 1
        return self.source.fetch(query)

    @property
    def fetch_hosts(self) -> Callable[[Query], dict[str, Frame]] | None:
        """The source's per-host read, counted; None when it has none."""
        inner = getattr(self.source, "fetch_hosts", None)
        if inner is None:
            return None

        def counted(query: Query) -> dict[str, Frame]:
            self.requests += 1
            return inner(query)

        return counted


@dataclass(frozen=True)
class Options:
    """What a front door calls the backtest's settings, so that a refusal names the one to change:
    the CLI's options by default, the Lambda's event fields (`days`, `windows`, `until`, `canary_share`)."""

    days: str = "--days"
    windows: str = "--windows"
    until: str = "--until"
    canary_share: str = "--canary-share"


def asked_moment(moment: int, asked: str, now: int) -> None:
    """A moment the caller gave for the end of the history (`asked`: its option or field): one
    ahead of the clock has no history yet, however often it is asked: refused, naming it."""
    if moment > now + FUTURE_SKEW:
        raise InputError(f"{asked}: {iso(moment)} is in the future (now {iso(now)}): no history there yet; "
                         f"give a past moment, or leave {asked} out (now)")


def no_history(message: str, asked: str | None) -> GateError:
    """No history up to a moment the caller gave (`asked`: its option or field) is a request no
    retry answers (InputError, naming it); up to now the source may only be late (GateError: could
    not judge, asked again)."""
    if asked is None:
        return GateError(f"no history: {message}")
    return InputError(f"{asked}: no history: {message}: give a moment the source holds history for, or leave "
                      f"{asked} out (now)")


def history_end(source: MetricSource, policy: Policy, until: int | None, now: int) -> int:
    """The last moment of history: `--until`; a recorded case's deploy (its history only, never
    the canary window it holds); otherwise now. On the interval grid."""
    recorded = getattr(source, "known_deployed_at", None)
    end = until if until is not None else (recorded - policy.interval if recorded is not None else now)
    return end - end % policy.interval


def read_history(policy: Policy, source: MetricSource, days: float, end: int, asked: str | None = None,
                 canary_share: float = DEFAULT_CANARY_SHARE) -> History:
    """The history up to `end` (`asked`: the option or field that gave it, None: now); split by
    host, the canary side sized and its traffic thinned to `canary_share` of the group's
    (`split_by_host`, `canary_side`)."""
    counting = CountingSource(source)
    canary_scope, baseline_scope = group_scopes(policy, BACKTEST_RELEASE)
    start = end - int(days * DAY)
    query = Query(tuple(policy.metrics), canary_scope, baseline_scope, start, end, policy.interval)
    counts = {m.name for m in policy.metrics if m.summed}
    seen = counting.fetch(query).cleaned(counts)
    judged = [m.name for m in policy.metrics if m.judged]
    moments = (end - start) // policy.interval + 1

    def covered(frame: Frame) -> float:
        return covered_share(frame, judged, moments)

    baseline = seen.baseline
    group = baseline if baseline is not None else seen.canary
    if covered(group) < MIN_COVERAGE:
        scope = baseline_scope if baseline is not None else canary_scope
        raise no_history(f"the {policy.source.type} source returned points of {', '.join(judged)} for {scope!r} "
                         f"at {covered(group):.0%} of the moments between {iso(start)} and {iso(end)} (a backtest "
                         f"needs {MIN_COVERAGE:.0%})", asked)
    if baseline is None:
        return History(group, None, "history-only", "the policy has no baseline group: each window judges the "
                       "canary group against its own history (history-only judge)", start, end, counting.requests)
    if covered(seen.canary) >= PAIRED_COVERAGE * covered(baseline):
        return History(seen.canary, baseline, "paired", "both groups have history: canary vs baseline, as the "
                       "policy judges them", start, end, counting.requests)
    split = host_sides(policy, counting, replace(query, baseline_only=True), counts, covered(baseline), covered,
                       canary_share, MAX_TURNS)
    if isinstance(split, str):
        why = (f"the baseline cannot be split by host ({split}): each window judges the baseline group against "
               "its own history (history-only judge; the live gate pairs canary and baseline, which usually "
               "raises fewer false alarms)")
        return History(group, None, "history-only", why, start, end, counting.requests)
    sides, why = split
    (one, _), turned = sides[0], [(canary_side(policy, one, baseline, canary_share, end + turn), other)
                                  for turn, (one, other) in enumerate(sides)]
    note = share_note(policy, traffic(policy, one), traffic(policy, baseline), canary_share)
    return History(*turned[0], SPLIT, why + note, start, end, counting.requests, tuple(turned[1:]))


def canary_side(policy: Policy, one: Frame, group: Frame, share: float, seed: int) -> Frame:
    """The canary side with the counts that follow traffic thinned (`thin_to_share`, seeded: one
    backtest answers the same each time) to `share` of the group's traffic, as `gate plan`'s
    canary is: a canary of 5% on one host of four serves a fifth of that host's requests, and its
    error ratio is as noisy as that."""
    keep = share_kept(policy, traffic(policy, one), traffic(policy, group), share)
    return thin_to_share(policy, one, keep, np.random.default_rng([seed, 27]))


def split_by_host(policy: Policy, source: MetricSource, query: Query, counts: set[str], group_coverage: float,
                  covered: Callable[[Frame], float], canary_share: float) -> tuple[Frame, Frame, str] | str:
    """The first turn of `host_sides`: one canary side and one baseline side (`gate plan`'s one
    expected canary), or why not."""
    found = host_sides(policy, source, query, counts, group_coverage, covered, canary_share, turns=1)
    if isinstance(found, str):
        return found
    (one, other), why = found[0][0], found[1]
    return one, other, why


def host_sides(policy: Policy, source: MetricSource, query: Query, counts: set[str], group_coverage: float,
               covered: Callable[[Frame], float], canary_share: float,
               turns: int) -> tuple[list[tuple[Frame, Frame]], str] | str:
    """The baseline group's hosts in two sides judged against each other as canary and baseline:
    two groups of the same code, with the divergence real hosts have. The canary side is as many
    hosts as a canary of `canary_share` of the group's traffic runs, the baseline side the rest
    (`sized_sides`), so that a mean over the canary's few hosts is as noisy as the live canary's
    (halves of a group of 20 are means of 10 hosts: smooth where one host wanders beyond the
    tolerance). Up to `turns` such splits, each with the canary side started one host further
    along the hosts (distinct ones only, and only those whose sides reported together): a live
    canary lands on a host no one chose, so the host the first split puts on the canary side (the
    first to report, perhaps the one that runs hottest) must not stand for every window. Or why
    not (a string): the source cannot read hosts apart, the group ran one host (too few for both
    sides), or the sides rarely reported together."""
    fetch_hosts = getattr(source, "fetch_hosts", None)
    if fetch_hosts is None:
        return f"the {policy.source.type} source cannot read a group host by host"
    try:
        hosts = fetch_hosts(query)
    except CannotSplit as e:
        return str(e)
    except SourceError as e:  # the group's own read worked: judge it alone, labelled, not "could not judge"
        return f"the baseline's per-host read failed ({e})"
    hosts = {h: Observations(canary=f).cleaned(counts).canary for h, f in hosts.items()}
    hosts = {h: f for h, f in hosts.items() if covered(f) > 0}
    if len(hosts) < 2:
        return (f"the baseline group reported {len(hosts)} host{'s' if len(hosts) != 1 else ''}"
                f"{' (' + next(iter(hosts)) + ')' if hosts else ''}: nothing to split")
    # In the order they first reported (then by name): hosts an Auto Scaling group replaces over
    # the history come one after another, and a side follows a host by its replacement.
    judged = [m.name for m in policy.metrics if m.judged]
    names = sorted(hosts, key=lambda h: (first_report(hosts[h], judged), h))
    running = {h: running_between_reports(hosts[h], judged) for h in names}
    group_ran = np.sum([running[h] for h in names], axis=0) > 0
    found, seen, why, thinned, first_size = [], set(), "", [], None
    count = min(turns, len(names))
    # Each turn starts from another host, spread evenly over all of them (not the first few: the
    # hosts that replaced others over the history sort last, and a fresh host is what a canary is).
    for turn, at in enumerate(sorted({round(i * len(names) / count) for i in range(count)})):
        # The names turned to start there, in the order they first reported after that: a
        # replaced host is still followed by its replacement.
        sized = sized_sides(hosts, names[at:] + names[:at], judged, canary_share, running)
        if isinstance(sized, str):
            return sized  # the same for every turn: the group's size decides it
        mine, theirs, sides = sized
        if frozenset(mine) in seen:
            continue
        seen.add(frozenset(mine))
        # A later turn keeps the first turn's canary size: started from a host the group scaled
        # out to, a host that ran all along joins it too, and from then on the canary side is a
        # mean of two hosts (smoother, fewer false alarms than the one-host canary: review), or,
        # started from a host scaled in, none at the end (a window judging the split's gap).
        at_size = _share_at_size(sum(running[h].astype(int) for h in mine), group_ran)
        first_size = at_size if first_size is None else first_size
        if turn > 0 and (at_size[0] != first_size[0] or at_size[1] < PAIRED_COVERAGE * first_size[1]):
            continue
        one, other, made = of_one_size([hosts[h] for h in mine], [hosts[h] for h in theirs], policy)
        least = min(covered(one), covered(other))
        if least < PAIRED_COVERAGE * group_coverage:
            if not found and turn == 0:  # the first split's sides did not report together: say so
                return (f"its {len(names)} hosts split in a canary side and a baseline side that reported together "
                        f"at {least:.0%} of the moments (the group at {group_coverage:.0%})")
            continue
        found.append((one, other))
        why = why or sides
        thinned += [name for name in made if name not in thinned]
    thin_note = (f"; {', '.join(thinned)} (compared as counted) thinned minute by minute to the events of as many "
                 "hosts as the smaller side ran, as the live gate compares groups of one size") if thinned else ""
    turn_note = (f"; the canary side turns over the hosts window by window (up to {len(found)} turns, each "
                 "starting from another host, spread over them), as a live canary lands on a host no one chose"
                 ) if len(found) > 1 else ""
    return found, (f"the baseline group's {len(names)} hosts split in {why} judged against each other as "
                   f"canary and baseline, as the policy judges them{turn_note}{thin_note}")


def _share_at_size(on: np.ndarray, group_ran: np.ndarray) -> tuple[int, float]:
    """The number of hosts a side ran most often while the group ran any, and the share of those
    moments it ran exactly that many."""
    counts = on[group_ran]
    if not len(counts):
        return 0, 0.0
    values, times = np.unique(counts, return_counts=True)
    return int(values[np.argmax(times)]), float(times.max() / len(counts))


def hosts_at_once(running: list[np.ndarray]) -> int:
    """How many hosts a group runs: over the moments any reported, the median number reporting
    (an Auto Scaling group replaces hosts: more names over a history than hosts at once)."""
    count = np.sum(running, axis=0)
    return int(np.median(count[count > 0])) if (count > 0).any() else 0


def sized_sides(hosts: dict[str, Frame], names: list[str], judged: list[str], canary_share: float,
                running_by_host: dict[str, np.ndarray] | None = None) -> tuple[list[str], list[str], str] | str:
    """A canary side of as many hosts as a canary of `canary_share` of the group runs (the share
    of the hosts it runs at once, to the nearest, ties to fewer: the noisier; at least one) and
    a baseline side of the rest: the live baseline is the whole group, a mean over all its hosts,
    which the rest stands for more nearly than a half would. Hosts in the order they first
    reported (`names`) join the canary side while it runs fewer than its size over most of their
    moments, so a host replaced over the history is followed by its replacement. Or why not: too
    few hosts at once for both sides. `running_by_host`: each host's running moments, when the
    caller has them already (`host_sides` asks once per turn)."""
    running_by_host = running_by_host or {h: running_between_reports(hosts[h], judged) for h in names}
    running = [running_by_host[h] for h in names]
    size = hosts_at_once(running)
    if size < 2:
        return (f"the baseline group ran {size} host{'s' if size != 1 else ''} at a time ({len(names)} over the "
                "history): too few to form both a canary side and a baseline side")
    wanted = max(1, math.ceil(canary_share * size - 0.5))
    canary_size = min(wanted, size - 1)  # one host at least on the baseline side
    on_canary = np.zeros(len(running[0]), dtype=int)
    mine = []
    for name, on in zip(names, running):
        if on.any() and np.mean(on_canary[on] < canary_size) > 0.5:
            mine.append(name)
            on_canary += on
    theirs = [h for h in names if h not in mine]
    rest = size - canary_size

    plural = "s" if canary_size != 1 else ""
    if canary_size < wanted:
        why = (f"a {canary_share:.1%} canary of the {size} hosts the group runs at a time would run {wanted}, which "
               f"leaves none for the baseline side: the canary side has {canary_size}, its gauges noisier than the "
               "canary's will be")
    else:
        why = f"as many as a {canary_share:.1%} canary of the {size} hosts the group runs at a time"
    replaced = (f"; {len(mine)} and {len(theirs)} hosts over the history"
                if (len(mine), len(theirs)) != (canary_size, rest) else "")
    sides = (f"a canary side of {canary_size} host{plural} at a time and a baseline side of the other {rest} "
             f"({why}{replaced})")
    return mine, theirs, sides


def covered_share(frame: Frame, judged: list[str], moments: int) -> float:
    """The share of a history's `moments` at which a group reported a judged metric."""
    return float(reporting(frame, judged).sum()) / moments


def reporting(frame: Frame, names: list[str]) -> np.ndarray:
    """The moments a host reported any of `names`."""
    reported = np.zeros(len(frame), dtype=bool)
    for n in names:
        reported |= frame.reporting(n)
    return reported


# A host silent between two of its reports for less than an hour, or for less than this many times
# its own usual gap, is still running: an agent's check collected every 5 minutes (or hourly)
# under a 1-minute policy, each host at its own phase; a count without events that minute.
# Counted moment by moment, 20 such hosts read as 5 running at once and a "one-host" canary side
# as one host per phase (review: a plan of 4-5 hosts' mean said `ok` where the live one-host
# canary was too noisy; its re-review: hourly reporters, past the hour alone). A host scaled in
# for the day and back at night is silent far longer than its usual gap: not running then.
RUNNING_THROUGH_SECONDS = 3600
RUNNING_THROUGH_GAPS = 4


def running_between_reports(frame: Frame, names: list[str]) -> np.ndarray:
    """The moments a host ran: those it reported any of `names` at, and those between two of its
    reports less than RUNNING_THROUGH_SECONDS, or RUNNING_THROUGH_GAPS times its median gap, apart."""
    reported = reporting(frame, names)
    at = np.flatnonzero(reported)
    running = reported.copy()
    if len(at) < 2:
        return running
    gaps = np.diff(at)
    through = max(RUNNING_THROUGH_SECONDS / frame.step, RUNNING_THROUGH_GAPS * float(np.median(gaps)))
    for a, gap in zip(at[:-1], gaps):
        if 1 < gap < through:
            running[a:a + gap] = True
    return running


def first_report(frame: Frame, names: list[str]) -> int:
    """The index of the first moment a host reported a judged metric."""
    reported = reporting(frame, names)
    return int(np.argmax(reported)) if reported.any() else len(frame)


def combine(frames: list[Frame], policy: Policy) -> Frame:
    """Hosts as one group: counts summed, gauges averaged, at each moment over the hosts that
    reported (a moment none reported is missing)."""
    counts = {m.name for m in policy.metrics if m.summed}
    first = frames[0]
    values = {}
    for name in first.values:
        stack = np.vstack([f.values[name] for f in frames])
        reported = np.isfinite(stack).sum(axis=0)
        total = np.nansum(stack, axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            column = total if name in counts else total / reported
        values[name] = np.where(reported > 0, column, np.nan)
    return Frame(first.step, first.timestamps, values)


def compared_as_counted(policy: Policy) -> list[str]:
    """The counts the judge compares group total against group total: judged without a
    denominator; and a ratio's events over such a count (thinned with it, the ratio keeps its level)."""
    names = [m.name for m in policy.metrics if m.summed and m.judged and not m.denominator]
    while grown := [m.name for m in policy.metrics if m.denominator in names and m.name not in names]:
        names += grown
    return names


def of_one_size(one: list[Frame], other: list[Frame], policy: Policy) -> tuple[Frame, Frame, list[str]]:
    """Two sides of hosts (halves, or a canary side and the rest) as two groups (`combine`) of
    one size, and the counts that had to be made so. The live gate compares a count without a denominator as counted, a canary group
    against a baseline group of the same size: halves of 2 hosts and 1 differ by half the events,
    a difference of the split, not of the service. So at each moment the half running more hosts
    (those that reported a judged metric: a sparse count is missing on a host without events)
    keeps each event of such a count with probability fewer/more (binomial thinning): the events
    of n hosts thinned by m/n are those of m hosts, with their Poisson noise, where scaled by m/n
    they would be smoother than m hosts' (and the judge takes counts as Poisson-like). The halves
    never share an event: their divergence stays that of their hosts. Gauges (a mean of hosts)
    and ratios (events per request) are on one scale already."""
    a, b = combine(one, policy), combine(other, policy)
    judged = [m.name for m in policy.metrics if m.judged]
    running_a, running_b = (sum(reporting(f, judged).astype(int) for f in half) for half in (one, other))
    rng = np.random.default_rng(0)  # seeded: a backtest of one history answers the same each time
    thinned = []
    for name in compared_as_counted(policy):
        for group, mine, theirs in ((a, running_a, running_b), (b, running_b, running_a)):
            more = (mine > theirs) & (theirs > 0)  # none of theirs running: the moment is not compared
            if name in group.values and more.any():
                group.values[name] = thin(group.values[name], np.where(more, theirs / np.maximum(mine, 1), 1.0), rng)
                thinned += [] if name in thinned else [name]
    return a, b, thinned


def thin(events: np.ndarray, keep: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each event kept with probability `keep` (a fraction of an event, which a rolled-up count
    may hold, scaled by it); missing stays missing."""
    known = np.isfinite(events)
    events = np.where(known, events, 0.0)
    # Beyond 2**53 a float holds no whole number of events (nor an int64 past 2**63): scaled there.
    drawn = events < 2.0**53
    whole = np.floor(np.where(drawn, events, 0.0))
    thinned = rng.binomial(whole.astype(np.int64), keep) + (events - whole) * keep
    return np.where(known, np.where(drawn, thinned, events * keep), np.nan)


def scaled_by_share(policy: Policy) -> set[str]:
    """The counts that follow the canary's traffic: judged as a ratio, or the ratio's denominator.
    (A count without a denominator is compared as it is, group against group of the same size.)"""
    names = {m.name for m in policy.metrics if m.summed and m.denominator}
    return names | {m.denominator for m in policy.metrics if m.denominator}


def traffic(policy: Policy, frame: Frame) -> dict[str, float]:
    """Each denominator's events over a frame (the totals a canary's share is measured by)."""
    return {d: float(np.nansum(frame.values.get(d, np.array([])))) for d in denominators(policy)}


def denominators(policy: Policy) -> list[str]:
    return list(dict.fromkeys(m.denominator for m in policy.metrics if m.denominator))


def share_kept(policy: Policy, side: dict[str, float], group: dict[str, float], share: float) -> float:
    """Split by host: the one probability with which every count that follows the canary's
    traffic (`scaled_by_share`) keeps an event of the canary side, so that the side carries
    `share` of the group's traffic (`traffic` totals over the history: the group as read, before
    a side was thinned to the other's size, or a judged denominator would be thinned twice). One
    for every count, the smallest any denominator asks: ratios among them (errors per request,
    requests per session) keep their level (one per denominator halved errors per request where
    requests and sessions asked different shares, found by review). At most 1: a share beyond what
    the side ran is judged at the side's own traffic (`share_note` says so)."""
    keeps = [share * group[d] / side[d] for d in denominators(policy) if side.get(d, 0) > 0 and group.get(d, 0) > 0]
    return min([1.0, *keeps])


# A share beyond what the side ran by less than this (its traffic's noise) is not worth a note.
SHARE_NOTE_MARGIN = 1.05


def share_note(policy: Policy, side: dict[str, float], group: dict[str, float], share: float) -> str:
    """Split by host: what the canary carries when the share asks for more than its side ran."""
    for d in denominators(policy):
        if group.get(d, 0) > 0 and share > SHARE_NOTE_MARGIN * side.get(d, 0) / group[d]:
            return (f"; a {share:.1%} canary share is more {d} than the canary's side ran ({side.get(d, 0) / group[d]:.1%} "
                    "of the group): its counts are judged at the side's own traffic, which is slower to judge")
    return ""


def thin_to_share(policy: Policy, frame: Frame, keep: float, rng: np.random.Generator) -> Frame:
    """The counts that follow traffic kept at `keep`: a denominator's events each kept with that
    probability (binomial), then a numerator's drawn out of its denominator's kept events
    (hypergeometric: the errors of the requests kept), where it is a part of them (at most as
    many, whole events); otherwise kept on their own at `keep` (binomial). Drawn apart, errors
    and requests made a ratio near 1 (responses ok per request) about 13x noisier than a canary
    of that share is (review: ok above requests in 2 of 5 minutes). Gauges are left as the
    side's hosts ran them (a latency averaged over fewer requests is noisier: not modelled)."""
    if keep >= 1.0:
        return frame
    follow = scaled_by_share(policy)
    over = {m.name: m.denominator for m in policy.metrics if m.denominator and m.name in follow}
    values = dict(frame.values)
    done: dict[str, np.ndarray] = {}

    def draw(name: str, depth: int = 0) -> np.ndarray:
        if name in done:
            return done[name]
        x = frame.values.get(name)
        if x is None:
            return None
        d = over.get(name)
        of = frame.values.get(d) if d is not None and depth < len(over) else None
        kept_of = draw(d, depth + 1) if of is not None else None
        out = thin(x, np.full(len(x), keep), rng)
        if kept_of is not None:
            part = (np.isfinite(x) & np.isfinite(of) & np.isfinite(kept_of) & (x >= 0) & (x <= of)
                    & (x == np.floor(x)) & (of == np.floor(of)) & (of < HYPERGEOMETRIC_LIMIT))
            if part.any():
                good, total = x[part].astype(np.int64), of[part].astype(np.int64)
                sample = np.clip(kept_of[part], 0, total).astype(np.int64)
                out = out.copy()
                out[part] = rng.hypergeometric(good, total - good, sample)
        done[name] = out
        return out

    for name in sorted(n for n in follow if n in frame.values):
        values[name] = draw(name)
    return Frame(frame.step, frame.timestamps, values)


HYPERGEOMETRIC_LIMIT = 10**9  # numpy's bound on a hypergeometric draw's population


# ------------------------------------------------------------------------- the pseudo-canaries


@dataclass(frozen=True)
class Injection:
    kind: str  # none, shift, tail, ramp, rate, down
    metric: str | None = None
    size: float = 0.0  # times the metric's tolerance

    @property
    def label(self) -> str:
        if self.kind == "none":
            return "A/A"
        if self.kind == "down":
            return "canary stops reporting"
        return f"{self.metric} {self.kind} {self.size:g}x"


AA = Injection("none")
DOWN = Injection("down")


def is_memory(m: Metric) -> bool:
    return not m.summed and ("mem" in m.name.lower() or (m.unit or "").lower() in MEMORY_UNITS)


def injection_kinds(m: Metric) -> list[str]:
    """The regressions a metric is tried with: its shift (a rate factor for counts), and a slow
    tail for a latency, a leak ramp for a memory."""
    if m.summed:
        return ["rate"]
    kinds = ["shift"]
    if m.judges_tail and m.bad_direction == "increase":
        kinds.append("tail")
    if is_memory(m):
        kinds.append("ramp")
    return kinds


def primary_kind(m: Metric) -> str:
    return "rate" if m.summed else "shift"


def testable(policy: Policy) -> list[Metric]:
    """The metrics regressions are injected into: judged, with a tolerance to take multiples of."""
    return [m for m in policy.metrics if m.judged and m.tolerance]


def inject(frame: Frame, policy: Policy, injection: Injection, deployed_at: int, lifetime: int) -> Frame:
    """The window with the regression applied to the canary from the deploy on (a copy)."""
    if injection.kind == "none":
        return frame
    t = frame.timestamps
    values = dict(frame.values)
    if injection.kind == "down":
        stop = t >= deployed_at + max(policy.interval, int(DOWN_AFTER * lifetime))
        return Frame(frame.step, t, {n: np.where(stop, np.nan, x) for n, x in values.items()})
    m = policy.metric(injection.metric)
    effect = injection.size * float(m.tolerance)
    sign = -1.0 if m.bad_direction == "decrease" else 1.0
    x = values[m.name].copy()
    after = (t >= deployed_at) & np.isfinite(x)
    rng = np.random.default_rng([deployed_at, zlib.crc32(injection.label.encode())])
    if injection.kind == "shift":
        x[after] *= max(0.0, 1 + sign * effect)
    elif injection.kind == "tail":
        slow = after & (rng.random(len(x)) < TAIL_SHARE)
        x[slow] *= 1 + effect / TAIL_SHARE
    elif injection.kind == "ramp":
        progress = np.clip((t - deployed_at) / lifetime, 0.0, 1.0)
        x[after] *= np.maximum(0.0, 1 + sign * effect * progress[after])
    elif injection.kind == "rate":
        events = np.maximum(x[after], 0.0)
        if sign > 0:  # extra events at `effect` times the window's own, as counts
            x[after] = events + rng.poisson(effect * events)
        else:
            x[after] = rng.binomial(events.astype(np.int64), max(0.0, 1 - effect))
    values[m.name] = x
    return Frame(frame.step, t, values)


@dataclass(frozen=True)
class Spec:
    """One pseudo-canary: a policy variant and a regression, on a window."""

    label: str  # the policy variant: "policy", "tolerance x0.5", "lifetime 30m"
    policy: Policy
    injection: Injection


def judged_in_time(caught: float, decided: float) -> bool:
    """The one rule of `gate backtest`'s recommendation and `gate plan`'s `too short`: within the
    lifetime, a 2x-tolerance regression is caught (share of windows, or 1/0 for the plan's expected
    canary) and a clean canary is told from it, passed rather than left "could not tell"."""
    return caught >= DETECTION_TARGET and decided >= DECIDED_TARGET


def could_not_tell(m) -> bool:
    """A metric result the judge left undecided at the end of the lifetime."""
    rule = Rule.of(m.rule)
    return m.verdict == "inconclusive" or (rule is not None and rule.could_not_tell)


@dataclass(frozen=True)
class Run:
    label: str
    deployed_at: int
    injection: Injection
    verdict: str  # pass, fail, inconclusive, error (as the policy's on_undecided left it)
    minutes: float  # from the deploy to the decision
    failed: tuple[tuple[str, str, str], ...]  # (metric, rule, reason) of each failing metric
    undecided: tuple[str, ...] = ()  # the metrics the judge could not tell at the end (none failed)
    far_beyond: tuple[str, ...] = ()  # failed metrics whose estimate was beyond BROKEN_FACTOR x their tolerance

    @property
    def outcome(self) -> str:
        """pass; fail (a metric failed, or the window could not be judged: never a pass); or
        undecided (could not tell at the end: no false alarm of the judge, but under on_undecided:
        fail a rollback all the same, see `rolled_back`)."""
        if self.failed:
            return "fail"
        if self.verdict == "pass":
            return "pass"
        return "undecided" if self.undecided else "fail"


class WindowReferences:
    """The judge's reference, learned once per window and shared by all its pseudo-canaries:
    what `learn` reads (the history before the deploy, the metrics' kinds) is the same for every
    variant; tolerances and lifetime, which the variants change, are only read by `evaluate`."""

    def __init__(self):
        self.learned: dict = {}

    @staticmethod
    def key(release, deployed_at, policy_json, scopes):
        return deployed_at, scopes

    def load(self, key):
        return self.learned.get(key)

    def save(self, key, reference):
        self.learned[key] = reference


_HISTORY: History | None = None  # the history, once per worker process


def _adopt(history: History) -> None:
    global _HISTORY
    _HISTORY = history


def judge_window(task: tuple[int, list[Spec]]) -> list[Run]:
    """Every pseudo-canary of one window (a worker's unit: the reference is learned once)."""
    deployed_at, specs = task
    references = WindowReferences()
    runs = []
    for spec in specs:
        policy = spec.policy
        end = deployed_at + policy.lifetime
        frames = _HISTORY.frames(deployed_at - policy.history, end, deployed_at)
        frames["canary"] = inject(frames["canary"], policy, spec.injection, deployed_at, policy.lifetime)
        case = Case(f"{BACKTEST_RELEASE}-{deployed_at}", Path("."), policy.interval, deployed_at, end, [], frames)
        try:
            verdict = replay_recorded(case, policy, cache=references)[1].verdict
        except GateError as e:  # could not judge this window: counted apart, never as a pass
            runs.append(Run(spec.label, deployed_at, spec.injection, "error", policy.lifetime / 60, (("*", "error", str(e)),)))
            continue
        judged = [m for m in verdict.metrics if not m.muted]
        failed = tuple((m.name, m.rule, m.reason) for m in judged if m.verdict == "fail" and not could_not_tell(m))
        undecided = () if failed or verdict.verdict == "pass" else tuple(m.name for m in judged if could_not_tell(m))
        far = tuple(m.name for m in judged if m.verdict == "fail" and m.effect is not None and m.tolerance
                    and abs(m.effect) > BROKEN_FACTOR * m.tolerance)
        runs.append(Run(spec.label, deployed_at, spec.injection, verdict.verdict,
                        (verdict.evaluated_at - deployed_at) / 60, failed, undecided, far))
    return runs


def run_all(history: History, tasks: list[tuple[int, list[Spec]]], jobs: int,
            progress: Callable[[int], None] | None = None) -> list[Run]:
    """The tasks on `jobs` processes (the history is handed to each once), in any order."""
    runs: list[Run] = []
    if jobs <= 1:
        _adopt(history)
        for task in tasks:
            runs.extend(judge_window(task))
            if progress:
                progress(len(task[1]))
        return runs
    with ProcessPoolExecutor(max_workers=jobs, initializer=_adopt, initargs=(history,)) as pool:
        for task, result in zip(tasks, pool.map(judge_window, tasks)):
            runs.extend(result)
            if progress:
                progress(len(task[1]))
    return runs


# ------------------------------------------------------------------------ policy variants


def with_tolerances(policy: Policy, tolerances: dict[str, float]) -> Policy:
    metrics = [m.model_copy(update={"tolerance": tolerances[m.name]}) if m.name in tolerances else m
               for m in policy.metrics]
    return policy.model_copy(update={"metrics": metrics})


def with_lifetime(policy: Policy, lifetime: int) -> Policy | None:
    """The policy at another lifetime, or None when that lifetime is not a valid policy (a
    min_duration or warm-up longer than it allows)."""
    try:
        return parse_policy({**policy.model_dump(), "lifetime": lifetime}, origin="backtest")
    except PolicyError:
        return None


def scaled(policy: Policy, factor: float) -> dict[str, float]:
    # Never below what a policy accepts (MIN_TOLERANCE): a recommendation must load.
    return {m.name: min(MAX_TOLERANCE, max(MIN_TOLERANCE, round(float(m.tolerance) * factor, 4)))
            for m in testable(policy)}


def main_specs(policy: Policy) -> list[Spec]:
    specs = [Spec("policy", policy, AA), Spec("policy", policy, DOWN)]
    for m in testable(policy):
        for kind in injection_kinds(m):
            specs += [Spec("policy", policy, Injection(kind, m.name, size)) for size in EFFECT_SIZES]
    return specs


def detection_specs(label: str, policy: Policy) -> list[Spec]:
    """What a candidate is judged on: A/A, and a 2x-tolerance regression of each metric."""
    return [Spec(label, policy, AA)] + [
        Spec(label, policy, Injection(primary_kind(m), m.name, DETECTION_SIZE)) for m in testable(policy)]


def tolerance_label(factor: float) -> str:
    return "policy" if factor == 1.0 else f"tolerance x{factor:g}"


def tolerance_specs(policy: Policy) -> list[Spec]:
    return [s for f in TOLERANCE_FACTORS if f != 1.0
            for s in detection_specs(tolerance_label(f), with_tolerances(policy, scaled(policy, f)))]


def candidate_lifetimes(policy: Policy) -> list[int]:
    step = policy.interval
    found = sorted({max(step, round(policy.lifetime * f / step) * step) for f in LIFETIME_FACTORS})
    return [life for life in found if with_lifetime(policy, life) is not None]


# ---------------------------------------------------------------------------- the windows


def window_starts(history: History, policy: Policy, count: int, longest: int, days: str = "--days") -> list[int]:
    """`count` deploy moments spread evenly over the history after a learning stretch, so that
    each window has its own past and the windows fall on every hour of the day and day of the
    week, peaks and incidents included.

    The learning stretch is the policy's history, at most half of what was read; but never less
    than a reference of the same kind as the live canary's needs (`same_kind_from`): the live
    canary learns from all the history there is before it (up to the policy's), and a window that
    learned from less than MIN_DAYS would be judged against a model without a daily shape (its
    noise the whole day's swing): another judge than the live canary's. Where no window fits with
    that much behind it, the one as late as the history allows."""
    span = history.end - history.start
    begins = reported_from(history, [m.name for m in policy.metrics if m.judged])
    live = min(policy.history, history.end + policy.interval - begins)  # what the live canary learns from
    step = policy.interval
    first = history.start + min(policy.history, span // 2)
    last = history.end - longest
    if last < first:
        raise InputError(f"{days}: {_human(span)} of history leaves no room for a window: it needs "
                        f"{_human(policy.history)} to learn from (at most half the history) and "
                        f"{_human(longest)} of canary lifetime after it")
    first = min(last, max(first, begins + math.ceil(same_kind_from(live) / step) * step))
    moments = np.linspace(first, last, count) if count > 1 else np.array([last])
    return sorted({int(t) - int(t) % step for t in moments})


def reported_from(history: History, judged: list[str]) -> int:
    """The first moment every group of the history reported a judged metric: where its history
    really starts (a source answers from the first point it holds, however early it was asked)."""
    starts = [history.start]
    for frame in [history.group] + ([history.baseline] if history.baseline is not None else []):
        first = first_report(frame, judged)
        starts.append(int(frame.timestamps[first]) if first < len(frame) else history.end)
    return max(starts)


# ------------------------------------------------------------------------------ the report


@dataclass
class Rate:
    hits: int
    trials: int

    @property
    def rate(self) -> float:
        return self.hits / self.trials if self.trials else float("nan")

    def to_dict(self) -> dict:
        lo, hi = proportion_interval(self.hits, self.trials)
        return {"count": self.hits, "of": self.trials, "rate": _round(self.rate), "ci95": [_round(lo), _round(hi)]}


def _round(x: float | None, digits: int = 4):
    return None if x is None or not math.isfinite(x) else round(x, digits)


def _median(xs: Iterable[float]) -> float | None:
    xs = list(xs)
    return round(statistics.median(xs), 1) if xs else None


def false_alarms(runs: list[Run], label: str, metric: str | None = None) -> Rate:
    aa = [r for r in runs if r.label == label and r.injection == AA]
    hit = [r for r in aa if r.outcome == "fail" and (metric is None or any(f[0] == metric for f in r.failed))]
    return Rate(len(hit), len(aa))


def rolled_back(runs: list[Run], label: str, on_undecided: str, metric: str | None = None) -> Rate:
    """A/A windows the live gate would roll back (on `metric`): a false alarm, or, when the
    policy's `on_undecided` is fail, a window the judge could not tell at the end: a clean canary
    rolled back all the same. Held to alpha by the exit code and the recommendation."""
    aa = [r for r in runs if r.label == label and r.injection == AA]

    def on(r: Run) -> bool:
        if r.outcome == "fail":
            return metric is None or any(f[0] == metric for f in r.failed)
        return r.outcome == "undecided" and on_undecided == "fail" and (metric is None or metric in r.undecided)

    return Rate(sum(map(on, aa)), len(aa))


def undecided(runs: list[Run], label: str, metric: str | None = None) -> Rate:
    """A/A windows the judge could not tell at the end (on `metric`)."""
    aa = [r for r in runs if r.label == label and r.injection == AA]
    hit = [r for r in aa if r.outcome == "undecided" and (metric is None or metric in r.undecided)]
    return Rate(len(hit), len(aa))


def caught(run: Run) -> bool:
    """The regression was caught: failed on the injected metric itself (a window with a gap that
    fails as not reporting, or another metric's false alarm, has not caught it)."""
    if run.verdict != "fail":
        return False
    if run.injection.kind == "down":
        return True
    # (A window that could not be judged fails with the rule "error", no rule of the judge's.)
    return any(name == run.injection.metric and Rule.of(rule) is not Rule.CANARY_NOT_REPORTING
               for name, rule, _ in run.failed)


def detection(runs: list[Run], label: str, injection: Injection) -> tuple[Rate, float | None]:
    tried = [r for r in runs if r.label == label and r.injection == injection]
    hits = [r for r in tried if caught(r)]
    return Rate(len(hits), len(tried)), _median(r.minutes for r in hits)


def broken_history(runs: list[Run], policy: Policy) -> dict[str, Rate]:
    """The metrics whose A/A windows failed by more than BROKEN_FACTOR x the tolerance in at
    least BROKEN_SHARE of the windows: canary and baseline did not run the same thing over this
    history (a faulty version or host in the canary scope, a long incident). No tolerance fixes
    that, and loosening one to hide it would stop the metric from being judged."""
    aa = [r for r in runs if r.label == "policy" and r.injection == AA]
    found = {}
    for m in testable(policy):
        far = Rate(sum(m.name in r.far_beyond for r in aa), len(aa))
        if far.trials and far.rate >= BROKEN_SHARE:
            found[m.name] = far
    return found


def broken_note(broken: dict[str, Rate], policy: Policy) -> str:
    metrics = ", ".join(f"{name} in {r.hits}/{r.trials} (tolerance {policy.metric(name).tolerance:g})"
                        for name, r in broken.items())
    return (f"the history looks broken, not the policy too tight: A/A windows failed by more than "
            f"{BROKEN_FACTOR:g}x the tolerance on {metrics}. Canary and baseline did not run the same thing "
            "over this history (a faulty version or host in the canary scope, a long incident): no tolerance "
            "is recommended. Backtest a stretch where both groups were healthy (--until, --days), or check "
            "the policy's scopes")


@dataclass
class Recommendation:
    tolerances: dict[str, float | None]
    lifetime: int | None
    notes: list[str] = field(default_factory=list)

    def yaml(self, policy: Policy, checks: dict[str, str]) -> str:
        lines = ["# gate backtest: paste over the policy's fields"]
        if self.lifetime is not None:
            lines.append(f"lifetime: {_human(self.lifetime)}")
        lines.append("metrics:")
        for m in testable(policy):
            value = self.tolerances.get(m.name)
            # Never null: a null tolerance would stop the metric being judged against the baseline.
            shown = f"{m.tolerance:g}  # kept: no candidate met the targets (see the notes)" if value is None else f"{value:g}"
            lines += [f"  - name: {m.name}", f"    tolerance: {shown}" + (f"  # {checks[m.name]}" if m.name in checks and value is not None else "")]
        return "\n".join(lines) + "\n"


def recommend_tolerances(policy: Policy, runs: list[Run]) -> tuple[dict[str, float | None], dict[str, str], list[str]]:
    """Per metric the smallest candidate tolerance whose A/A windows were rolled back on that
    metric (`rolled_back`) no more often than alpha allows and that judges it in time
    (`judged_in_time`)."""
    chosen, checks, notes = {}, {}, []
    for m in testable(policy):
        chosen[m.name] = None
        for f in TOLERANCE_FACTORS:
            label = tolerance_label(f)
            alarms = false_alarms(runs, label, m.name)
            back = rolled_back(runs, label, policy.on_undecided, m.name)
            found, _ = detection(runs, label, Injection(primary_kind(m), m.name, DETECTION_SIZE))
            told = undecided(runs, label, m.name)
            if (back.trials and back.rate <= policy.alpha and found.trials
                    and judged_in_time(found.rate, 1 - told.rate)):
                chosen[m.name] = scaled(policy, f)[m.name]
                checks[m.name] = (f"false alarms {alarms.hits}/{alarms.trials}, could not tell {told.hits}/{told.trials}, "
                                  f"2x caught {found.hits}/{found.trials}")
                if f == TOLERANCE_FACTORS[0]:
                    notes.append(f"{m.name}: the smallest tolerance tried ({f:g}x the policy's) met the targets: "
                                 "a smaller one may too")
                break
        if chosen[m.name] is None:
            notes.append(f"{m.name}: no tolerance up to {max(TOLERANCE_FACTORS):g}x the policy's "
                         f"({float(m.tolerance) * max(TOLERANCE_FACTORS):g}) kept the clean windows rolled back "
                         f"(false alarms{', could not tell' if policy.on_undecided == 'fail' else ''}) <= alpha, caught "
                         f"{DETECTION_SIZE:g}x in {DETECTION_TARGET:.0%} and told {DECIDED_TARGET:.0%} of the clean "
                         "windows (not \"could not tell\"): a longer lifetime or more history may")
    return chosen, checks, notes


def choose_lifetime(policy: Policy, runs: list[Run], lifetimes: list[int]) -> int | None:
    for life in lifetimes:
        label = lifetime_label(life)
        back = rolled_back(runs, label, policy.on_undecided)
        ok = back.trials and back.rate <= policy.alpha
        for m in testable(policy):
            found, _ = detection(runs, label, Injection(primary_kind(m), m.name, DETECTION_SIZE))
            ok = ok and found.trials and judged_in_time(found.rate, 1 - undecided(runs, label, m.name).rate)
        if ok:
            return life
    return None


def lifetime_label(lifetime: int) -> str:
    return f"lifetime {_human(lifetime)}"


# ------------------------------------------------------------------------------- the backtest


@dataclass
class Backtest:
    policy: Policy
    history: History
    windows: list[int]
    runs: list[Run]
    recommendation: Recommendation
    checks: dict[str, str]
    lifetimes: list[int]
    seconds: float
    broken: dict[str, Rate] = field(default_factory=dict)  # broken_history: metric -> A/A windows failed far beyond
    canary_share: float = DEFAULT_CANARY_SHARE  # split by host: the canary side's share of the group's traffic

    def to_dict(self) -> dict:
        p = self.policy
        metrics = []
        for m in (m for m in p.metrics if m.judged):
            injections = []
            for kind in injection_kinds(m) if m.tolerance else []:
                for size in EFFECT_SIZES:
                    found, minutes = detection(self.runs, "policy", Injection(kind, m.name, size))
                    injections.append({"kind": kind, "size": size, "detected": found.to_dict(),
                                       "median_minutes_to_fail": minutes})
            metrics.append({"name": m.name, "tolerance": m.tolerance,
                            "false_alarms": false_alarms(self.runs, "policy", m.name).to_dict(),
                            "undecided": undecided(self.runs, "policy", m.name).to_dict(),
                            "rolled_back": rolled_back(self.runs, "policy", p.on_undecided, m.name).to_dict(),
                            "injections": injections,
                            "recommended_tolerance": self.recommendation.tolerances.get(m.name)})
        aa = [r for r in self.runs if r.label == "policy" and r.injection == AA]
        down, down_minutes = detection(self.runs, "policy", DOWN)
        overall_detection = {}
        for size in EFFECT_SIZES:
            tried = [r for r in self.runs if r.label == "policy" and r.injection.size == size]
            hits = [r for r in tried if caught(r)]
            overall_detection[f"{size:g}x"] = {"detected": Rate(len(hits), len(tried)).to_dict(),
                                               "median_minutes_to_fail": _median(r.minutes for r in hits)}
        rec = self.recommendation
        report = {
            "policy": p.name, "source": p.source.type, "mode": self.history.mode, "mode_reason": self.history.why,
            "history": {"start": iso(self.history.start), "end": iso(self.history.end),
                        "days": round((self.history.end - self.history.start) / DAY, 2),
                        "source_requests": self.history.requests},
            "canary_share": self.canary_share if self.history.mode == SPLIT else None,
            "alpha": p.alpha, "on_undecided": p.on_undecided, "lifetime": p.lifetime, "windows": len(self.windows), "runs": len(self.runs),
            "window_starts": [iso(t) for t in self.windows],
            "seconds": round(self.seconds, 1),
            "windows_needed_to_show_alpha": trials_for(p.alpha),
            "overall": {
                "false_alarms": false_alarms(self.runs, "policy").to_dict(),
                "median_minutes_to_pass": _median(r.minutes for r in aa if r.verdict == "pass"),
                "undecided": undecided(self.runs, "policy").to_dict(),
                "rolled_back": rolled_back(self.runs, "policy", p.on_undecided).to_dict(),
                "detection": overall_detection,
                "canary_down": {"detected": down.to_dict(), "median_minutes_to_fail": down_minutes},
            },
            "metrics": metrics,
            "broken_history": {name: rate.to_dict() for name, rate in self.broken.items()},
            "false_alarm_windows": [
                {"deployed_at": iso(r.deployed_at), "minutes": round(r.minutes, 1), "metric": name, "rule": rule, "reason": reason}
                for r in aa if r.outcome == "fail" for name, rule, reason in r.failed],
            "lifetimes_tried": [self._candidate(lifetime_label(life)) | {"lifetime": _human(life)}
                                for life in self.lifetimes],
            "recommendation": {
                "tolerances": rec.tolerances,
                "lifetime": _human(rec.lifetime) if rec.lifetime else None,
                "meets_targets": (rec.lifetime is not None and all(v is not None for v in rec.tolerances.values())
                                  if rec.tolerances else None),
                "notes": rec.notes,
                "yaml": rec.yaml(p, self.checks) if rec.tolerances else None,
            },
        }
        return report | {"exit_reasons": exit_reasons(report)}


    def _candidate(self, label: str) -> dict:
        """A candidate's numbers: its false alarms, and each metric's 2x regression caught."""
        found = {m.name: detection(self.runs, label, Injection(primary_kind(m), m.name, DETECTION_SIZE))
                 for m in testable(self.policy)}
        return {"false_alarms": false_alarms(self.runs, label).to_dict(),
                "undecided": undecided(self.runs, label).to_dict(),
                "rolled_back": rolled_back(self.runs, label, self.policy.on_undecided).to_dict(),
                "detected_2x": {name: {"detected": rate.to_dict(), "median_minutes_to_fail": minutes}
                                for name, (rate, minutes) in found.items()}}


def backtest(policy: Policy, source: MetricSource, *, days: float = 14, windows: int = DEFAULT_WINDOWS,
             until: int | None = None, jobs: int | None = None, lifetime: int | None = None,
             progress: Callable[[str, int, int], None] | None = None, recommend: bool = True,
             canary_share: float = DEFAULT_CANARY_SHARE, options: Options = Options()) -> Backtest:
    """Read the history once, judge every pseudo-canary, recommend (unless not asked: the
    policy's own numbers only, a fifth of the work). `progress(stage, done, total)`; a refusal
    names the setting as `options` calls it."""
    started = time.perf_counter()
    if not 0 < days <= MAX_DAYS:  # NaN too
        raise InputError(f"{options.days}: must be more than 0 and at most {MAX_DAYS} (got {days:g})")
    if windows < 1:
        raise InputError(f"{options.windows}: must be at least 1 (got {windows})")
    if not 0 < canary_share <= 1:  # NaN too
        raise InputError(f"{options.canary_share}: a share of the baseline's traffic in (0, 1], got {canary_share:g}")
    if lifetime is not None:
        changed = with_lifetime(policy, lifetime)
        if changed is None:
            raise PolicyError(f"--lifetime: {_human(lifetime)} is not a valid lifetime for this policy "
                              "(between an interval and 7d, and longer than its min_duration and warm-up)")
        policy = changed
    if recommend and not testable(policy):
        raise PolicyError("metrics: no judged metric has a tolerance: the backtest injects regressions at "
                          "multiples of each metric's tolerance, and recommends tolerances (--no-recommend "
                          "measures the false alarms alone)")
    jobs = jobs or os.cpu_count() or 1
    now = int(time.time())
    if until is not None:
        asked_moment(until, options.until, now)
    end = history_end(source, policy, until, now)
    if end < days * DAY:
        raise InputError(f"{options.until}: {iso(end)} leaves no {days:g} days of history after 1970-01-01: give a "
                         f"moment from {iso(math.ceil(days * DAY))} on, or fewer {options.days}")
    history = read_history(policy, source, days, end, options.until if until is not None else None, canary_share)
    judged_alone = history.mode == "history-only" and policy.baseline is not None
    if history.mode == "history-only":
        policy = policy.model_copy(update={"baseline": None})
    lifetimes = candidate_lifetimes(policy)
    longest = max(lifetimes + [policy.lifetime]) if recommend else policy.lifetime  # the longest judged
    starts = window_starts(history, policy, windows, longest, options.days)
    history = history.over(starts)

    first = main_specs(policy) + (tolerance_specs(policy) if recommend else [])
    runs = _stage("judging the windows", history, [(t, first) for t in starts], jobs, progress)
    broken = broken_history(runs, policy)
    if broken:  # no recommendation from a broken history: it would loosen the policy to hide it
        return Backtest(policy, history, starts, runs, Recommendation({}, None, [broken_note(broken, policy)]), {},
                        [], time.perf_counter() - started, broken, canary_share)
    if not recommend:
        return Backtest(policy, history, starts, runs, Recommendation({}, None, ["not asked (--no-recommend)"]), {},
                        [], time.perf_counter() - started, canary_share=canary_share)
    tolerances, checks, notes = recommend_tolerances(policy, runs)
    tuned = with_tolerances(policy, {k: v for k, v in tolerances.items() if v is not None})
    chosen, tried = None, []
    for life in lifetimes:  # shortest first (and cheapest): the first that meets the targets is the answer
        specs = detection_specs(lifetime_label(life), with_lifetime(tuned, life))
        runs += _stage(f"trying lifetime {_human(life)}", history, [(t, specs) for t in starts], jobs, progress)
        tried.append(life)
        if choose_lifetime(tuned, runs, [life]) is not None:
            chosen = life
            break
    if chosen is None:
        notes.append(f"no lifetime up to {_human(max(lifetimes))} met the targets with these tolerances")
    if judged_alone:
        notes.append("the windows were judged against their own history (the canary scope has none): the "
                     "policy's canary-vs-baseline judge, which pairs minutes, usually raises fewer false alarms")
    if len(starts) < trials_for(policy.alpha):
        notes.append(f"{len(starts)} windows cannot show a false-alarm rate as low as alpha={policy.alpha:g} "
                     f"(that takes {trials_for(policy.alpha)} clean ones): the recommendation rests on the point "
                     "estimate; see each rate's 95% interval")
    return Backtest(policy, history, starts, runs, Recommendation(tolerances, chosen, notes), checks, tried,
                    time.perf_counter() - started, broken, canary_share)


def _stage(name: str, history: History, tasks, jobs: int, progress) -> list[Run]:
    total = sum(len(specs) for _, specs in tasks)
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(name, done, total)

    if progress:
        progress(name, 0, total)
    return run_all(history, tasks, jobs, advance)


def exit_reasons(report: dict) -> list[str]:
    """Why a backtest's policy is not fit for this service (none: exit 0): it rolls back more clean
    canaries than alpha allows (false alarms, and under `on_undecided: fail` the windows the judge
    could not tell at the end, which the live gate rolls back all the same), or leaves more than a
    tenth of them undecided (`judged_in_time`: under `on_undecided: inconclusive` each is a release
    held for a person). The recommendation's targets; never fit on no window at all."""
    o, alpha, on_undecided = report["overall"], report["alpha"], report["on_undecided"]
    back, undecided_ = o["rolled_back"], o["undecided"]
    if not back["of"]:
        return ["no A/A window was judged"]
    reasons = []
    if back["rate"] > alpha:
        alarms = o["false_alarms"]["count"]
        untold = back["count"] - alarms
        parts = ([f"{alarms} false alarm(s)"] if alarms else []) + (
            [f"{untold} the judge could not tell at the end, which on_undecided: fail rolls back"] if untold else [])
        reasons.append(f"{back['count']} of {back['of']} clean (A/A) windows rolled back ({' and '.join(parts)}): "
                       f"{back['rate']:.0%}, more than alpha {alpha:g} allows")
    # Told at least DECIDED_TARGET of the time, as judged_in_time says (1 - 0.9 is 0.0999...98).
    if undecided_["of"] and 1 - undecided_["rate"] < DECIDED_TARGET and not (reasons and on_undecided == "fail"):
        fate = "rolled back" if on_undecided == "fail" else "held for a person (inconclusive)"
        reasons.append(f"{undecided_['count']} of {undecided_['of']} clean windows could not be told at the end of "
                       f"the lifetime ({fate} by on_undecided: {on_undecided}): more than "
                       f"{1 - DECIDED_TARGET:.0%}; a longer lifetime or a wider tolerance may tell them")
    return reasons


def exit_code(report: dict) -> int:
    """A backtest's exit code, as `gate plan`'s: 0 when the policy is fit for this service by its
    own A/A windows (`exit_reasons`: none), 3 when not: this gate would roll back clean releases
    (see the recommendation). Never 0 on 3 of 3 false alarms, nor on 3 of 3 windows it could not
    tell that on_undecided rolls back."""
    return 3 if exit_reasons(report) else 0
