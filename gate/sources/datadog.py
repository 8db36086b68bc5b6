"""Datadog: the canary and baseline series of every policy metric, from the v2 timeseries API.

One fetch is one `POST /api/v2/query/timeseries` (official `datadog-api-client`) carrying two named
queries per metric (canary `c<i>`, baseline `b<i>`) and one formula per query, so an evaluation of
a whole policy costs one request. Only a window longer than `max_points` buckets (the seasonal
history, fetched once per release) is cut into several requests, to stay under Datadog's limit
of points per series (beyond it Datadog silently coarsens the resolution).

The query of a metric lives in the policy, `metrics[].queries.datadog`: a Datadog query string
with `$scope` where the group's tag goes, or a mapping (see `QuerySpec` and
examples/datadog.yaml). The gate pins the rollup to the policy's interval, counts every count
with `.as_count()`, and drops the trailing bucket that is still filling. Datadog answers null
for a sparse counter's bucket without events: a count with a denominator reads 0 there when the
denominator has a point (as CloudWatch's missing datapoints, `Frame.fill_zero_counts`).

Rate limits: the organisation's requests are shared by every evaluation running at once
(`gate.request_budget`): a fetch takes all its requests before the first (a history's chunks
together), a retry one more; every answer's `X-RateLimit-*` headers are kept there, and a 429
empties the window until its `X-RateLimit-Reset`, so that the other evaluations wait for the
reset before they send instead of being refused. Waiting for the budget
is bounded by the look's deadline (one interval from the look's start, at most `MAX_BUDGET_WAIT`),
not by `retry_budget`: past it, `BudgetSpent` (could not judge, the budget named as the reason). The
deadline is the look's (`look`), not each fetch's: a first look's history and window share it, and
so does the wait a 429 asks for, so that no look is later than its interval because of other
evaluations' requests.

Faults: a 429 that comes anyway waits for `X-RateLimit-Reset`, a 5xx, a timeout or a malformed
answer is retried with backoff. The time lost to faults (failed attempts and the waits before
retries) of one fetch (all its chunks) is charged to `retry_budget`, the time of successful
requests is not; once it is spent, `SourceError` ("could not judge", exit 4).
Refused credentials or a refused query are not retried. Keys never leave the client's headers.
"""

from __future__ import annotations

import json
import logging
import math
import re
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gate.datadog_client import API_KEY_ENV, APP_KEY_ENV, SITE_ENV, URL_ENV, configuration, key_forms
from gate.errors import PolicyError, SourceError, quoted, validation_problems
from gate.http_pools import header_deadline_pools
from gate.policy import Metric, Policy
from gate.request_budget import BudgetSpent, Heard, RequestBudget, budget_spent, shared_budget, wait_for_request
from gate.series import Frame, Observations
from gate.sources import CannotSplit, Query, count_denominators

log = logging.getLogger(__name__)

# The longest a look waits for the organisation's request budget (seconds), whatever the interval:
# within the Lambda's Timeout (300 s, infra/template.yaml) with room for its requests; past it the
# look answers could not judge, naming the budget, rather than being killed mid-sleep.
MAX_BUDGET_WAIT = 100.0
# The most `source.options.timeout` (one request) and `retry_budget` (one fetch's faults) may be:
# no request may outlast the Lambda's whole Timeout (300 s), and the retry budget is CloudWatch's
# (`retry_seconds`, at most 600 s: the CLI may wait longer than the Lambda can).
MAX_TIMEOUT, MAX_RETRY_BUDGET = 300.0, 600.0

# Datadog tags: start with a letter; letters, digits, `_ - : . /`; at most 200 characters.
# Anything else (braces, commas, spaces, `!`, `*`, quotes, operators) would change the query.
_TAG = re.compile(r"[^\W\d_][\w\-:./]{0,199}")
_KEYWORDS = {"by", "and", "or", "not", "in"}
_NO_HOST = None  # where a per-host read keeps the points Datadog gave no host (`host:N/A`)
_ROLLUP = re.compile(r"\.rollup\(([^()]*)\)")
_FORMULA = re.compile(r"[\w\s+\-*/().,]+")
MIN_FORMULA_SCALE, MAX_FORMULA_SCALE = 1e-9, 1e9  # a unit's change (ns to s, bytes to GB), no more
# One metric: `aggregation:metric{filter}`, then only .as_count(), .as_rate() or .rollup(...).
_PLAIN_QUERY = re.compile(r"[a-z][a-z0-9.]*:[A-Za-z][\w.]*\{[^{}]*\}"
                          r"(?:\.as_count\(\)|\.as_rate\(\)|\.rollup\([^()]*\))*")
_AGGREGATIONS = ("avg", "sum", "min", "max", "p50", "p75", "p90", "p95", "p99")
_ROLLUPS = ("avg", "sum", "min", "max", "count")
# Why an aggregation other than a sum misreads a count (events per interval, `kind: count`).
_NOT_A_SUM = {"min": "reads the host with the fewest (a bad canary host hidden behind the others)",
              "max": "reads the host with the most (the group's other hosts left out)",
              "avg": "divides them by the hosts that reported in each bucket (a sparse counter's few "
                     "reporting hosts inflate it, and groups of different sizes are not comparable)"}
_NOT_A_SUM.update({p: "reads one host's value at that percentile" for p in ("p50", "p75", "p90", "p95", "p99")})
_NOT_A_SUM_IN_TIME = {"count": "count counts the points Datadog stored, not the events they carry",
                      "min": "min reads the smallest point of the interval",
                      "max": "max reads the largest point of the interval",
                      "avg": "avg reads the mean point of the interval"}


class Options(BaseModel):
    """`source.options` of a Datadog policy. The times are bounded (and never infinite): an
    unbounded `retry_budget` retried a 5xx for ever, an infinite `timeout` failed every look."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    timeout: float = Field(
        default=10.0, gt=0, le=MAX_TIMEOUT, description="Seconds one request may take, its answer read whole."
    )
    max_answer_bytes: int = Field(
        default=50_000_000, ge=1000, description="Bytes one answer may hold; more is a fault (retried)."
    )
    retry_budget: float = Field(
        default=60.0, ge=0, le=MAX_RETRY_BUDGET,
        description="Seconds one fetch may spend waiting and retrying in all."
    )
    max_points: int = Field(
        default=1440, ge=1, le=1500, description="Buckets per series in one request (Datadog: 1500)."
    )
    settle: int = Field(
        default=60, ge=0, description="Seconds of ingestion delay: younger buckets are not read yet."
    )
    host_tag: str = Field(
        default="host", pattern=r"^[^\W\d_][\w\-.]{0,199}$",
        description="The tag that tells a group's hosts apart (`gate backtest` splits the baseline by it).",
    )
    # Datadog events and the groups of promote / rollback are the policy's `notify:` and `actions:`.


class QuerySpec(BaseModel):
    """The mapping form of `queries.datadog`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    query: str = Field(min_length=1, description="Metric query with `$scope` in its tag filter.")
    aggregation: Literal[_AGGREGATIONS] | None = Field(  # type: ignore[valid-type]
        default=None, description="Space aggregation when the query has no `avg:`/`p95:` prefix."
    )
    rollup: Literal[_ROLLUPS] | None = Field(  # type: ignore[valid-type]
        default=None, description="Time aggregation in a bucket; default avg (gauge), sum (count)."
    )
    formula: str | None = Field(
        default=None, description="Formula over the query named `q`, e.g. `100 * (1 - q)`."
    )


@dataclass(frozen=True)
class MetricQuery:
    """A metric's query, compiled: `template` has `$scope`, `formula` has `q` (or is None)."""

    template: str
    formula: str | None = None

    def render(self, scope: str, by: str | None = None) -> str:
        """The query for a group; `by`: grouped by that tag (one series per value, e.g. per host),
        right after the tag filter, before the functions (`.as_count()`, `.rollup()`)."""
        text = self.template.replace("$scope", scope)
        return text if by is None else text.replace("}", f"}} by {{{by}}}", 1)

    def formula_for(self, name: str) -> str:
        return name if self.formula is None else re.sub(r"\bq\b", name, self.formula)


def compile_query(metric: Metric, interval: int) -> MetricQuery:
    """Validate `metric.queries.datadog` and pin its rollup to the interval."""
    where = f"metrics.{metric.name}.queries.datadog"
    raw = metric.queries.get("datadog")
    if raw is None:
        raise PolicyError(f"{where}: missing (every metric of a Datadog policy needs its query)")
    try:
        spec = QuerySpec.model_validate({"query": raw} if isinstance(raw, str) else raw)
    except ValidationError as e:
        raise PolicyError(validation_problems(e, where)) from None
    text = spec.query.strip()

    head = text.split("{", 1)[0]
    if spec.aggregation:
        if ":" in head:
            raise PolicyError(f"{where}: {text!r} has a space aggregation and `aggregation` says another")
        text = f"{spec.aggregation}:{text}"
    elif ":" not in head:
        raise PolicyError(
            f"{where}: {text!r} needs a space aggregation, e.g. 'avg:' or 'p95:' (or `aggregation`)"
        )
    if re.search(r"\bby\s*\{", text, re.IGNORECASE):
        raise PolicyError(f"{where}: {text!r} groups by tags; the gate needs one series per group")
    if not re.fullmatch(r"[^{}]*\{[^{}]*\$scope[^{}]*\}[^{}]*", text):
        raise PolicyError(
            f"{where}: {text!r} must have one tag filter holding $scope, e.g. {{service:web,$scope}}"
        )
    _scope_filter(text, where)
    aggregation, rest = text.split(":", 1)
    if (aggregation not in _AGGREGATIONS and re.fullmatch(r"\s*[A-Za-z0-9.]+\s*", aggregation)
            and _PLAIN_QUERY.fullmatch(f"avg:{rest.lstrip()}")):
        raise PolicyError(f"{where}: {text!r}: space aggregation {aggregation!r} is not one of "
                          f"{', '.join(_AGGREGATIONS)} (lower case, no space around the colon)")
    if not _PLAIN_QUERY.fullmatch(text):
        # Anything around the one metric changes what is compared: `+ 1000` shrinks a relative
        # regression, `* 0` or `timeshift()` compares something else, `.fill(zero)` turns a
        # canary that stopped reporting into one that reports zeros.
        raise PolicyError(
            f"{where}: {text!r} must be one metric, `aggregation:metric{{filter}}`, followed only by "
            ".as_count(), .as_rate() or .rollup(): put a scale or complement in `formula` (over `q`); functions and "
            ".fill() are refused (a missing point must stay missing)"
        )
    if metric.summed and aggregation != "sum":
        # Only a sum adds up the events of the group's hosts: `min:` reads the least erroring host
        # (a bad canary host hidden), `avg:` divides by the hosts that reported in the bucket (a
        # sparse counter's few reporting hosts inflate it), a percentile picks one host's value.
        field, instead = ((f"{where}.aggregation", "aggregation: sum") if spec.aggregation
                          else (where, repr(f"sum:{rest.lstrip()}")))
        raise PolicyError(
            f"{field}: {text!r}: a count is the group's events summed over its hosts, but space "
            f"aggregation {aggregation!r} {_NOT_A_SUM.get(aggregation, 'does not add them up')}: "
            f"write {instead}"
        )

    if metric.summed and ".as_rate()" in text:
        # `.as_rate()` divides each bucket's events by its seconds: a rate is no number of events,
        # and the judge's Poisson model of a count reads its values as events.
        written_in = f"{where}.query" if isinstance(raw, dict) else where  # the mapping form's field
        raise PolicyError(
            f"{written_in}: {text!r}: .as_rate() on a count reads events per second, not the events of an "
            "interval (the judge models a count as a number of events): leave it out (the gate writes "
            ".as_count() for a count)"
        )

    method = spec.rollup
    written_query = text
    named_in_query = False  # the method is written in the query's .rollup(), not in `rollup:`
    rollups = _ROLLUP.findall(text)
    if len(rollups) > 1:
        raise PolicyError(f"{where}: {text!r} has several .rollup()")
    if rollups:
        args = [a.strip() for a in rollups[0].split(",") if a.strip()]
        seconds = [a for a in args if a.isdigit()]
        named = [a for a in args if not a.isdigit()]
        if len(args) > 2 or len(seconds) > 1 or len(named) > 1 or (named and named[0] not in _ROLLUPS):
            raise PolicyError(f"{where}: {text!r}: .rollup() takes a method and a number of seconds")
        if seconds and int(seconds[0]) != interval:
            raise PolicyError(
                f"{where}: {text!r} rolls up every {seconds[0]}s but the policy interval is {interval}s "
                "(leave the seconds out: the gate pins them to the interval)"
            )
        if named and method and named[0] != method:
            raise PolicyError(f"{where}: .rollup({named[0]}) and `rollup: {method}` disagree")
        method = named[0] if named else method
        named_in_query = bool(named)
        text = _ROLLUP.sub("", text)
    if metric.summed and method not in (None, "sum"):
        # `.rollup(count)` counts the points Datadog stored in the bucket, not the events they
        # carry; min, max and avg take one point or their mean: none is the interval's events.
        written = f"{where}: {written_query!r}: .rollup({method})" if named_in_query else f"{where}.rollup: {method!r}"
        raise PolicyError(
            f"{written} on a count does not add up the events of an interval "
            f"({_NOT_A_SUM_IN_TIME[method]}): leave the rollup out (the gate writes "
            f".rollup(sum, {interval}) for a count) or write sum"
        )
    method = method or ("sum" if metric.summed else "avg")
    if metric.summed and ".as_count()" not in text:
        # A count is judged as events per bucket: no interpolation, gaps stay gaps.
        text += ".as_count()"
    text += f".rollup({method}, {interval})"

    formula = spec.formula
    if formula is not None:
        if not _FORMULA.fullmatch(formula) or not re.search(r"\bq\b", formula):
            raise PolicyError(f"{where}.formula: {quoted(formula)} must be arithmetic over the query `q`")
        wrong = _not_a_scale_or_complement(formula)
        if not wrong and metric.summed and _affine_form(formula) != (1.0, 0.0):
            # A scaled count is no number of events: `q * 0.5` halves a regression's evidence (the
            # Poisson noise of half the events), `q / 60` reads events per second, `1 - q` is none.
            raise PolicyError(f"{where}.formula: {quoted(formula)} on a count changes its events: the judge "
                              "models a count as the number of events of an interval, so a count takes no "
                              "formula (leave it out; a ratio is the count's `denominator`)")
        if wrong:
            raise PolicyError(f"{where}.formula: {quoted(formula)} {wrong}: a formula may only scale `q` (q * 1000, "
                              "q / 1024) or take the complement of a fraction or a percentage (1 - q, 100 - q, "
                              "100 * (1 - q))")
    return MetricQuery(text, formula)


def _affine_form(formula: str) -> tuple[float, float]:
    """A formula as (slope, offset) of q; ValueError (saying why), SyntaxError, OverflowError or
    RecursionError when it is not arithmetic linear in q."""
    import ast

    def affine(node: ast.AST) -> tuple[float, float]:
        """The node as (slope, offset) of q, read off its shape (never sampled: a formula flat at
        real values can pass through any three points): q may be multiplied or divided by
        constants only, never by itself."""
        if isinstance(node, ast.Expression):
            return affine(node.body)
        if isinstance(node, ast.Name) and node.id == "q":
            return 1.0, 0.0
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return 0.0, float(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            a, b = affine(node.operand)
            return (-a, -b) if isinstance(node.op, ast.USub) else (a, b)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
            (a1, b1), (a2, b2) = affine(node.left), affine(node.right)
            if isinstance(node.op, ast.Add):
                return a1 + a2, b1 + b2
            if isinstance(node.op, ast.Sub):
                return a1 - a2, b1 - b2
            if isinstance(node.op, ast.Mult):
                if a1 and a2:
                    raise ValueError("is not linear in q (q times q)")
                return a1 * b2 + a2 * b1, b1 * b2
            if a2:
                raise ValueError("is not linear in q (divides by q)")
            if b2 == 0:
                raise ValueError("divides by zero")
            return a1 / b2, b1 / b2
        raise ValueError("calls a function or names something other than q")

    return affine(ast.parse(formula.strip(), mode="eval"))


def _not_a_scale_or_complement(formula: str) -> str | None:
    """Why a formula is neither a scale `a * q` nor a complement `b - a * q` (b > 0), else None.
    Anything else changes what the judge compares: `q + 1000` shrinks every relative change,
    `q - q` or `0 * q` is a constant that always passes, a function (`default_zero(q)`,
    `timeshift(q, -3600)`) fills gaps with zeros or compares another moment."""
    try:
        slope, offset = _affine_form(formula)
    except OverflowError:  # a constant past a float's range (1 followed by 400 zeros)
        return "overflows (a constant too large for a number)"
    except (SyntaxError, ValueError, RecursionError) as e:
        return str(e) if isinstance(e, ValueError) else "is not arithmetic over q"
    if not (math.isfinite(slope) and math.isfinite(offset)):
        return "overflows"
    if slope == 0:
        return "does not depend on q"
    if offset == 0:
        if slope < 0:
            return "flips the sign of q (a negative level has no relative change)"
        if not MIN_FORMULA_SCALE <= slope <= MAX_FORMULA_SCALE:
            return f"scales q by {slope:g}, outside {MIN_FORMULA_SCALE:g} to {MAX_FORMULA_SCALE:g}"
        return None
    # A complement is of a fraction (1 - q) or a percentage (100 - q): `10000 - q` on latency
    # would shrink every relative change as `q + 1000` does.
    if slope < 0 and any(math.isclose(offset / -slope, whole) for whole in (1.0, 100.0)) \
            and MIN_FORMULA_SCALE <= -slope <= MAX_FORMULA_SCALE:
        return None
    return "adds a constant to q, which shrinks or inflates every relative change the judge compares"


def fixed_tags(metric: Metric) -> tuple[str, ...]:
    """The tags a metric's query fixes beside the group's: `{service:web,$scope}` -> `service:web`.
    Every host either group's query selects has them too, so the scopes' overlap is judged with
    them (`analysis.check_scopes`). A filter holding $scope that is not a list of tags is refused
    here, before anything is registered; a query the source would refuse otherwise fixes none here:
    it is refused, naming why, when the source opens."""
    raw = metric.queries.get("datadog")
    text = raw.get("query") if isinstance(raw, dict) else raw
    if not isinstance(text, str):
        return ()
    terms = _scope_filter(text.strip(), f"metrics.{metric.name}.queries.datadog")
    return tuple(t for t in terms if t != "$scope")


def _scope_filter(text: str, where: str) -> list[str]:
    """The terms of the tag filter holding `$scope` (none when there is no such filter); refused
    unless they are comma-separated tags with `$scope` among them as is. Datadog reads
    `{service:web OR $scope}` as a boolean filter: a group's series would hold hosts outside its
    scope (the canary compared with itself), which the overlap check, reading tags, cannot see."""
    found = re.search(r"\{([^{}]*\$scope[^{}]*)\}", text)
    terms = [t.strip() for t in found[1].split(",") if t.strip()] if found else []
    for term in terms:
        if term != "$scope" and ("$scope" in term or re.search(r"[\s()]", term) or term.lower() in _KEYWORDS):
            raise PolicyError(
                f"{where}: {text!r}: its filter holding $scope has boolean syntax (AND, OR, NOT, IN, "
                "parentheses or a negated $scope), which lets a group reach past its scope: write "
                "the filter as comma-separated tags, e.g. {service:web,$scope}"
            )
    return terms


def check_scope(scope: str, role: str) -> str:
    """A scope goes verbatim into a tag filter: it must be one Datadog tag."""
    if not _TAG.fullmatch(scope) or scope.lower() in _KEYWORDS:
        raise PolicyError(
            f"{role} scope {scope!r} is not a Datadog tag (a letter, then letters, digits, _ - : . /; "
            "no spaces, commas, braces, wildcards or operators): it would change the query"
        )
    return scope


def _header(headers: Any, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return value
    return None


class _Fault(Exception):
    """A transient failure worth retrying: 5xx, 429, timeout, malformed answer."""

    def __init__(self, problem: str, wait: float | None = None):
        super().__init__(problem)
        self.wait = wait  # seconds the server asked us to wait (429), None: our own backoff


class _Budget:
    """The retry budget of one fetch (all its chunks): only the time lost to faults is charged
    (failed attempts, waits before retries), never the time of a successful request, so a long
    history read keeps its fault tolerance to its last chunk."""

    def __init__(self, seconds: float, deadline: float = float("inf")):
        self.seconds = seconds
        self.spent = 0.0
        self.deadline = deadline  # the wall-clock moment past which the organisation's budget is not waited for

    @property
    def left(self) -> float:
        return self.seconds - self.spent


class _Bounded:
    """The official client's connection pool, reading every answer whole within the request's
    timeout and up to `max_bytes` before the client sees it (its error bodies included).
    urllib3's timeout is per read: a server trickling a huge body would hold the gate for ever."""

    def __init__(self, pool: Any, seconds: float, max_bytes: int, clock: Callable[[], float]):
        self._pool, self._seconds, self._max_bytes, self._clock = pool, seconds, max_bytes, clock
        pool.pool_classes_by_scheme = header_deadline_pools()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def request(self, method: str, url: str, *, timeout: Any = None, **kwargs: Any) -> Any:
        import urllib3

        started = self._clock()
        response = self._pool.request(method, url, timeout=timeout, **kwargs)
        # the time the client was given for this request (a retry's may be cut to the budget left)
        seconds = timeout.total if isinstance(timeout, urllib3.Timeout) and timeout.total else self._seconds
        try:
            body = self._read(response, started, seconds)
        except BaseException:
            response.close()  # drop the connection: the rest of its answer is never read
            raise
        response.release_conn()
        return urllib3.HTTPResponse(body=body, headers=response.headers, status=response.status,
                                    reason=response.reason, decode_content=False)

    def _read(self, response: Any, started: float, seconds: float) -> bytes:
        from urllib3.exceptions import ReadTimeoutError

        slow = f"no whole answer within {round(seconds, 2):g}s (the answer came too slowly)"
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            raise _Fault(f"an answer of {int(declared)} bytes, more than source.options.max_answer_bytes "
                         f"({self._max_bytes})")
        sock = getattr(response.connection, "sock", None)
        chunks, size = [], 0
        while True:
            left = started + seconds - self._clock()
            if left <= 0:
                raise _Fault(slow)
            if sock is not None:
                sock.settimeout(left)  # a read waits for what is left of the request's time
            try:
                chunk = response.read1(1 << 16)
            except ReadTimeoutError:
                raise _Fault(slow) from None
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > self._max_bytes:
                raise _Fault(f"an answer of more than source.options.max_answer_bytes ({self._max_bytes}) bytes")
            chunks.append(chunk)


class DatadogSource:
    def __init__(
        self,
        metrics: dict[str, MetricQuery],
        interval: int,
        options: Options,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        clock_wall: Callable[[], float] = time.time,
        request_budget: RequestBudget | None = None,
    ):
        self.metrics = metrics
        self.interval = interval
        self.options = options
        self.sleep, self.clock = sleep, clock  # the clock times retries; clock_wall says what is settled
        self.clock_wall = clock_wall
        self.requests = 0  # HTTP requests sent, retries included
        # The organisation's requests, shared with every evaluation running at once.
        self.request_budget = request_budget if request_budget is not None else shared_budget("datadog")
        self._secrets = key_forms()
        self._api = _metrics_api(options.timeout)
        rest = self._api.api_client.rest_client
        rest.pool_manager = _Bounded(rest.pool_manager, options.timeout, options.max_answer_bytes, clock)
        # Counts that have reported a point in some fetch of this source (the history, the
        # window): only those may read as zero where their denominator has a point.
        self._reported: set[str] = set()
        self._look_deadline: float | None = None  # set while a look runs (`look`)

    @contextmanager
    def look(self) -> Iterator[None]:
        """The fetches of one look (a first look's history, then its window) wait for the
        organisation's budget until one deadline: an interval from the look's start (at most
        `MAX_BUDGET_WAIT`). Each fetch had its own: a history that waited most of an interval
        left its window another whole one, and the look came a second interval late."""
        self._look_deadline = self.clock_wall() + min(self.interval, MAX_BUDGET_WAIT)
        try:
            yield
        finally:
            self._look_deadline = None

    # -- the protocol ---------------------------------------------------------------------------

    def fetch(self, query: Query) -> Observations:
        groups = {"canary": check_scope(query.canary, "canary")}
        if query.baseline is not None:
            groups["baseline"] = check_scope(query.baseline, "baseline")
            if query.baseline_only:
                del groups["canary"]
        names = [m.name for m in query.metrics]
        points = {g: {n: {} for n in names} for g in groups}
        first, last = self._read(query, groups, None, lambda payload, slots: self._collect(payload, slots, query.step, points))
        self._reported.update(n for g in groups for n in names if points[g][n])
        frames = {g: self._frame(query.metrics, first, last, points[g]) for g in groups}
        canary = frames["canary"] if "canary" in frames else Frame.empty(query.step, names)
        return Observations(canary=canary, baseline=frames.get("baseline"))

    def fetch_hosts(self, query: Query) -> dict[str, Frame]:
        """The baseline group host by host: each metric's query grouped `by {<host_tag>}` (one
        series per host of the scope), in as many requests as `fetch` makes for the span."""
        if query.baseline is None:
            raise CannotSplit("no baseline group to split")
        groups = {"baseline": check_scope(query.baseline, "baseline")}
        names = [m.name for m in query.metrics]
        per_host: dict[str | None, dict[str, dict[int, float]]] = {}
        first, last = self._read(query, groups, self.options.host_tag,
                                 lambda payload, slots: self._collect_hosts(payload, slots, query.step, per_host))
        untagged = per_host.pop(_NO_HOST, {})
        # Points Datadog could not give a host (`host:N/A`, or an empty value) are of no one host:
        # counted as one, the untagged points of many hosts became one "host" in a half. Dropping
        # them would fail open: the halves would be the part of the group that carries the tag
        # (perhaps every host of one kind, or a metric's events without its denominator's), judged
        # as if it were the group, and the backtest's rates and the plan's times would describe
        # that part without a word. So a split with any of them is refused, saying how much of
        # each metric they hold; the backtest and plan fall back to one group's history, labelled.
        held = [f"{n} ({_share(untagged[n], per_host, n):.0%} of its points)" for n in names if untagged.get(n)]
        if held:
            raise CannotSplit(f"points of {', '.join(held)} carry no {self.options.host_tag} (Datadog's "
                              f"{self.options.host_tag}:N/A): they belong to no one host, and halves built "
                              "without them would not be the group")
        self._reported.update(n for points in per_host.values() for n in names if points.get(n))
        return {host: self._frame(query.metrics, first, last, {n: points.get(n, {}) for n in names})
                for host, points in sorted(per_host.items())}

    def _frame(self, metrics, first: int, last: int, points: dict[str, dict[int, float]]) -> Frame:
        return Frame.on_grid(self.interval, first, max(last, first - self.interval), points,
                             summed={m.name for m in metrics if m.summed}).fill_zero_counts(
            count_denominators(metrics), self._reported)

    def _read(self, query: Query, groups: dict[str, str], by: str | None, collect) -> tuple[int, int]:
        """Every chunk of the query's span (`by`: a tag to group each query by), each answer given
        to `collect(payload, slots)`; the first and last bucket of the span."""
        step = query.step
        if step != self.interval:
            raise PolicyError(f"interval: the queries are pinned to {self.interval}s, asked {step}s")
        unknown = [m.name for m in query.metrics if m.name not in self.metrics]
        if unknown:
            raise PolicyError(f"no Datadog query for metric(s) {', '.join(unknown)}")
        first = -(-query.start // step) * step
        # A bucket [t, t + step) is read only once it is complete (and settled): the one still
        # filling would show a fraction of the events and read as a drop. At `end` = t + step the
        # bucket is over (as in CloudWatch): `end` is a moment, not the last second of a bucket.
        # `settle` is counted back from the clock, not from the moment judged: judging the end of
        # a lifetime that is over reads every bucket of it.
        last = min(query.end // step * step, int(self.clock_wall() - self.options.settle) // step * step) - step
        chunk = self.options.max_points * step
        # One budget for the whole fetch: a history read in several chunks shares it.
        # The organisation's budget is waited for until the next look is due (one interval from
        # the look's start; from the fetch's outside a look), and no longer than the Lambda can wait.
        deadline = self._look_deadline
        if deadline is None:
            deadline = self.clock_wall() + min(self.interval, MAX_BUDGET_WAIT)
        budget = _Budget(self.options.retry_budget, deadline=deadline)
        starts = range(first, last + 1, chunk)
        if starts:  # every request of the fetch at once (a retry takes its own): all or none
            wait_for_request(self.request_budget, budget.deadline, self.clock_wall, self.sleep, "Datadog",
                             count=len(starts))
        for start in starts:
            end = min(last + step, start + chunk)  # exclusive
            self._fetch_chunk(query.metrics, groups, start, end, step, budget, by, collect)
        return first, last

    # -- one request ----------------------------------------------------------------------------

    def _fetch_chunk(self, metrics, groups, start, end, step, budget: _Budget, by: str | None, collect) -> None:
        from datadog_api_client.v2.model.metrics_data_source import MetricsDataSource
        from datadog_api_client.v2.model.metrics_timeseries_query import MetricsTimeseriesQuery
        from datadog_api_client.v2.model.query_formula import QueryFormula
        from datadog_api_client.v2.model.timeseries_formula_query_request import (
            TimeseriesFormulaQueryRequest,
        )
        from datadog_api_client.v2.model.timeseries_formula_request import TimeseriesFormulaRequest
        from datadog_api_client.v2.model.timeseries_formula_request_attributes import (
            TimeseriesFormulaRequestAttributes,
        )
        from datadog_api_client.v2.model.timeseries_formula_request_queries import (
            TimeseriesFormulaRequestQueries,
        )
        from datadog_api_client.v2.model.timeseries_formula_request_type import (
            TimeseriesFormulaRequestType,
        )

        queries, formulas, slots = [], [], []
        for group, scope in groups.items():
            for i, m in enumerate(metrics):
                compiled = self.metrics[m.name]
                name = f"{group[0]}{i}"
                queries.append(
                    MetricsTimeseriesQuery(
                        data_source=MetricsDataSource.METRICS, query=compiled.render(scope, by), name=name
                    )
                )
                formulas.append(QueryFormula(formula=compiled.formula_for(name)))
                slots.append((group, m.name))
        body = TimeseriesFormulaQueryRequest(
            data=TimeseriesFormulaRequest(
                type=TimeseriesFormulaRequestType.TIMESERIES_REQUEST,
                attributes=TimeseriesFormulaRequestAttributes(
                    _from=start * 1000,
                    to=end * 1000,
                    interval=step * 1000,
                    queries=TimeseriesFormulaRequestQueries(queries),
                    formulas=formulas,
                ),
            )
        )
        self._call(body, budget, lambda payload: collect(payload, slots))

    def _call(self, body, budget: _Budget, collect: Callable[[Any], None]) -> None:
        """Send and collect the answer, retrying faults while the fetch's budget lasts.

        Only the time lost to faults is charged to the budget: a failed attempt (from its start
        to its failure) and the wait before the next one. A retry is made only if the budget
        leaves time for it after the wait, and it may not take longer than what is left (its
        timeout is cut to it), so a fetch never takes longer than the budget plus the time of
        its successful requests. Before any fault a request has the whole `timeout`."""
        attempt = 0
        while True:
            attempt += 1
            if attempt > 1:  # a retry: one more of the organisation's requests (the fetch took the first ones)
                wait_for_request(self.request_budget, budget.deadline, self.clock_wall, self.sleep, "Datadog")
            limit = None if budget.spent == 0 else max(0.01, min(self.options.timeout, budget.left))
            started = self.clock()
            try:
                payload = self._send(body, limit)
                return collect(payload)
            except _Fault as fault:
                budget.spent += max(0.0, self.clock() - started)
                left = budget.left
                backoff = min(0.5 * 2 ** (attempt - 1), 10.0, max(left, 0.0))
                # 429: the server says when; never sooner than backoff (the shared budget heard it
                # too: the other evaluations wait for the reset before they send, not after a 429)
                wait = backoff if fault.wait is None else max(fault.wait, backoff)
                if fault.wait is not None and self.clock_wall() + wait > budget.deadline:
                    # The organisation's limit, spent by others: waited for within the look, never past it.
                    raise BudgetSpent(budget_spent("Datadog", str(fault), budget.deadline - self.clock_wall()))
                if wait >= left:  # no time left for another attempt after the wait
                    raise SourceError(
                        f"Datadog: {fault} ({attempt} attempt(s), retry budget {budget.seconds:g}s spent); "
                        "could not judge"
                    ) from None
                log.warning("Datadog: %s; retrying in %.1fs (attempt %d)", fault, wait, attempt)
                started = self.clock()
                self.sleep(wait)
                budget.spent += max(wait, self.clock() - started)

    def _send(self, body, timeout: float | None = None) -> dict:
        from datadog_api_client.exceptions import ApiException
        from urllib3.exceptions import HTTPError, NewConnectionError, TimeoutError as UrllibTimeout

        self.requests += 1
        config = self._api.api_client.configuration
        default, limit = config.request_timeout, timeout or self.options.timeout
        config.request_timeout = limit  # a retry may have less than `timeout` left in the budget
        try:
            response = self._api.query_timeseries_data(body)
            data = response.data  # already read whole, within the timeout (_Bounded)
        except _Fault:
            raise
        except ApiException as e:
            self._headroom(e.headers)
            if e.status == 429:
                reset = _header(e.headers, "X-RateLimit-Reset")
                try:
                    wait = max(0.0, float(reset)) if reset is not None else None
                except ValueError:
                    wait = None
                raise _Fault(f"rate limited (429), the limit resets in {reset or '?'}s", wait) from None
            if e.status is not None and e.status >= 500:
                raise _Fault(f"server error {e.status} {e.reason or ''}".rstrip()) from None
            if not e.status:  # the client's own failure before any answer (TLS, ...)
                raise SourceError(f"Datadog: cannot connect ({self._scrub(str(e.reason))[:120]})") from None
            if e.status in (401, 403):
                raise SourceError(
                    f"Datadog refused the credentials ({e.status} {e.reason}): check {API_KEY_ENV}, "
                    f"{APP_KEY_ENV} and the site ({SITE_ENV} / {URL_ENV}); could not judge"
                ) from None
            raise SourceError(
                f"Datadog refused the query ({e.status} {e.reason}): {self._scrub(_errors(e.body))}"
            ) from None
        except NewConnectionError as e:
            if _unknown_host(e):  # a misspelt site or URL: no retry will make the name exist
                raise SourceError(
                    f"Datadog: the host {self._host()} does not exist (DNS: unknown name): check {SITE_ENV} / "
                    f"{URL_ENV}; could not judge") from None
            # urllib3 makes a refused connection a kind of connect timeout: say what it was.
            raise _Fault(f"cannot reach the API ({type(e).__name__})") from None
        except (UrllibTimeout, TimeoutError):
            cut = ""
            if limit < self.options.timeout:
                cut = f", the retry cut to the {limit:.2g}s left of the retry budget"
            raise _Fault(f"no answer within {self.options.timeout:g}s (timeout){cut}") from None
        except (HTTPError, OSError) as e:
            raise _Fault(f"cannot reach the API ({type(e).__name__})") from None
        except Exception as e:  # noqa: BLE001 - e.g. the client refusing a header: it may hold a key
            raise SourceError(
                f"Datadog: the request failed ({type(e).__name__}: {self._scrub(str(e))}); could not judge"
            ) from None
        finally:
            config.request_timeout = default
        self._headroom(response.headers)
        if response.status != 200:
            raise _Fault(f"unexpected status {response.status}")
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise _Fault("malformed answer (not JSON)") from None

    def _host(self) -> str:
        """The API's host name, for people (never the URL: a proxy's may carry credentials)."""
        from urllib.parse import urlsplit

        return urlsplit(self._api.api_client.configuration.host).hostname or "?"

    def _collect(self, payload: Any, slots, step: int, points) -> None:
        """Lay the answer's series on `points`; a shape we do not know is a malformed answer,
        retried like one (nothing is laid on `points` before the whole answer is read)."""
        found: dict[tuple[str, str], dict[int, float]] = {}
        try:
            times, series, values = self._columns(payload, step)
            seen = set()
            for s, column in zip(series, values):
                index = int(s["query_index"])
                if not 0 <= index < len(slots):
                    raise ValueError(f"query_index {index} out of range")
                group, name = slots[index]
                if index in seen:
                    raise SourceError(
                        f"the Datadog query of {name} for the {group} returned several series "
                        "(group-by, or a scope matching several groups); the gate needs one"
                    )
                seen.add(index)
                # null: no point in that bucket (a gap; a count may still read 0, Frame.fill_zero_counts)
                found[(group, name)] = {t: float(v) for t, v in zip(times, column) if v is not None}
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise _Fault(f"malformed answer ({type(e).__name__}: {self._scrub(str(e))[:120]})") from None
        for (group, name), by_time in found.items():
            points[group][name].update(by_time)

    def _columns(self, payload: Any, step: int) -> tuple[list[int], list, list]:
        """An answer's times (seconds), series and value columns, checked: one column per series,
        one value per time, on the `step` grid at its full resolution. (A shape we do not know
        raises the errors `_collect` turns into a malformed answer.)"""
        if payload.get("errors"):
            raise SourceError(f"Datadog could not run the queries: {self._scrub(str(payload['errors']))}")
        attributes = (payload.get("data") or {}).get("attributes") or {}
        times = [int(t) // 1000 for t in attributes.get("times") or []]
        series = attributes.get("series") or []
        values = attributes.get("values") or []
        if len(series) != len(values) or any(len(v) != len(times) for v in values):
            raise ValueError("series, values and times do not match")
        if any(t % step for t in times):
            raise SourceError(f"Datadog answered off the {step}s grid (times not multiples of it)")
        gaps = [b - a for a, b in zip(times, times[1:])]
        if len(gaps) >= 2 and min(gaps) > step:
            raise SourceError(
                f"Datadog answered every {min(gaps)}s instead of {step}s: too many points in one "
                "request (lower source.options.max_points)"
            )
        return times, series, values

    def _collect_hosts(self, payload: Any, slots, step: int, per_host) -> None:
        """Lay a grouped answer's series on `per_host[host][metric]` (the host from the series'
        `group_tags`); a shape we do not know is a malformed answer, retried like one."""
        found: dict[tuple[str, str], dict[int, float]] = {}
        prefix = f"{self.options.host_tag}:"
        try:
            times, series, values = self._columns(payload, step)
            for s, column in zip(series, values):
                index = int(s["query_index"])
                if not 0 <= index < len(slots):
                    raise ValueError(f"query_index {index} out of range")
                tags = [t for t in s.get("group_tags") or [] if isinstance(t, str) and t.startswith(prefix)]
                # Points of no host, of several, or a host twice: halves built from what is left
                # would drop or overwrite a host's points without a word; say why, and split none.
                if len(tags) != 1:
                    raise CannotSplit(f"a series of {slots[index][1]} carries {len(tags)} {prefix} tags "
                                      f"({', '.join(tags) or 'none'}): its points belong to no one host")
                host = tags[0][len(prefix):]
                key = (_NO_HOST if host.strip().upper() in ("", "N/A") else host, slots[index][1])
                if key in found:
                    raise CannotSplit(f"two series of {key[1]} carry {tags[0]}: that host's points cannot be told apart")
                found[key] = {t: float(v) for t, v in zip(times, column) if v is not None}
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise _Fault(f"malformed answer ({type(e).__name__}: {self._scrub(str(e))[:120]})") from None
        for (host, name), by_time in found.items():
            per_host.setdefault(host, {}).setdefault(name, {}).update(by_time)

    # -- hygiene --------------------------------------------------------------------------------

    def _headroom(self, headers: Any) -> None:
        """Keep what the answer says of the organisation's rate limit in the shared budget."""
        remaining = _header(headers, "X-RateLimit-Remaining")
        heard = _heard(headers)
        if heard is not None:
            self.request_budget.heard(self.clock_wall(), heard)
        if remaining is not None:
            log.debug(
                "Datadog rate limit %s: %s of %s requests left, resets in %ss",
                _header(headers, "X-RateLimit-Name") or "?",
                remaining,
                _header(headers, "X-RateLimit-Limit") or "?",
                _header(headers, "X-RateLimit-Reset") or "?",
            )

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text[:300]


def _unknown_host(error: BaseException) -> bool:
    """The resolver's definite "no such name" (EAI_NONAME), not its temporary failure (EAI_AGAIN:
    a DNS blip, retried like any connection fault)."""
    cause = error.__cause__ or error.__context__
    return isinstance(cause, socket.gaierror) and cause.errno == socket.EAI_NONAME


def _share(untagged: dict[int, float], per_host: dict, name: str) -> float:
    """The share of a metric's points (host by host, and untagged) that are untagged."""
    tagged = sum(len(points.get(name, {})) for points in per_host.values())
    return len(untagged) / (len(untagged) + tagged)


def _heard(headers: Any) -> Heard | None:
    """The X-RateLimit-* headers of an answer, or None without a usable Remaining and Reset."""
    def number(name: str) -> float | None:
        try:
            value = float(_header(headers, f"X-RateLimit-{name}") or "")
        except ValueError:
            return None
        return value if value >= 0 and value == value and value != float("inf") else None

    remaining, reset, limit, period = (number(n) for n in ("Remaining", "Reset", "Limit", "Period"))
    if remaining is None or reset is None:
        return None
    return Heard(int(remaining), reset, int(limit) if limit else None, period or None)


def _errors(body: Any) -> str:
    if isinstance(body, dict) and body.get("errors"):
        return "; ".join(map(str, body["errors"]))
    return str(body or "no detail")


def _metrics_api(timeout: float):
    from datadog_api_client import ApiClient
    from datadog_api_client.v2.api.metrics_api import MetricsApi

    return MetricsApi(ApiClient(configuration(timeout)))


def from_policy(policy: Policy) -> DatadogSource:
    try:
        options = Options.model_validate(policy.source.options)
    except ValidationError as e:
        raise PolicyError(validation_problems(e, "source.options")) from None
    metrics = {m.name: compile_query(m, policy.interval) for m in policy.metrics}
    # Fixed scopes are checked now; those naming {release} once the release is known.
    for role, scope in (("canary", policy.canary), ("baseline", policy.baseline)):
        if scope is not None and "{release}" not in scope.scope:
            check_scope(scope.scope, role)
    return DatadogSource(metrics, policy.interval, options)
