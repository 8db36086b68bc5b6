"""A fake Datadog API: a real HTTP server on 127.0.0.1 serving a corpus case.

Implements `POST /api/v2/query/timeseries` (named metric queries + formulas, times in ms, the
real response shape: `data.attributes.{times, series[query_index], values}`, `null` for a
missing point, no series for a query without data) and `POST /api/v1/events`. It checks the
`DD-API-KEY` / `DD-APPLICATION-KEY` headers (403 otherwise), serves the case as if it were
happening now (`offset` seconds later than recorded, nothing after the served clock, the bucket
still filling holds only part of its events), coarsens the resolution beyond `max_points`
points per series as Datadog does, and can answer 429 with rate-limit headers, 5xx, slowly,
with a malformed body, or trickle its headers (`trickle_headers`), or trickle a body (`trickle`: a `trickle_length` Content-Length, one
byte every `trickle_every` seconds, until the client hangs up or `trickle_for` seconds). With `null_zero_counts` it answers `null` for a count bucket that
counted zero events, as Datadog does for a sparse counter without `default_zero()` (a minute
without 5xx has no point). With `rate_limit` it is one organisation's limit of timeseries queries:
`rate_limit` requests per `rate_period` seconds in fixed windows of its clock, told in every
answer's X-RateLimit-* headers, a 429 beyond it (`refused` counts them). Every request is logged
(never its keys).
"""

from __future__ import annotations

import ast
import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

API_KEY, APP_KEY = "fake-api-key-0123456789abcdef", "fake-app-key-fedcba9876543210"

# Datadog metric -> (case column, value as Datadog would hold it).
METRICS: dict[str, tuple[str, Callable[[float], float]]] = {
    "system.cpu.user": ("cpu", lambda v: v),
    "system.mem.pct_usable": ("memory", lambda v: 1 - v / 100),  # a fraction of memory free
    "trace.http.request": ("latency", lambda v: v / 1000),  # APM durations are in seconds
    "trace.http.request.errors": ("errors", lambda v: v),
    "trace.http.request.hits": ("requests", lambda v: v),
}
COUNTS = {"errors", "requests"}
SCOPES = {"autoscaling_group:web-canary": "canary", "autoscaling_group:web-baseline": "baseline"}

_QUERY = re.compile(
    r"(?P<agg>\w+):(?P<metric>[\w.]+)\{(?P<filter>[^{}]*)\}(?:\s*by\s*\{(?P<by>[^{}]*)\})?"
    r"(?P<funcs>(?:\.\w+\([^()]*\))*)"
)
_FUNC = re.compile(r"\.(\w+)\(([^()]*)\)")


class FakeDatadog:
    def __init__(self, case, *, offset: int = 0, clock: Callable[[], float] = time.time):
        self.case = case
        self.offset = offset  # served time = recorded time + offset
        self.clock = clock  # the served "now" (real time unless a test drives it)
        self.api_key, self.app_key = API_KEY, APP_KEY
        self.faults: list[str] = []  # consumed one per request: "429", "500", "slow", "malformed"...
        self.fault: str | None = None  # answered to every request once `faults` is empty
        self.reset_after = 1  # X-RateLimit-Reset on a 429
        self.slow_seconds = 3.0
        self.sleep = time.sleep  # how a "slow" answer waits (a test's fake clock may count it instead)
        self.trickle_length = 10**9  # the Content-Length a trickled answer claims
        self.trickle_every, self.trickle_for = 0.1, 120.0
        self.max_points = 1500
        self.null_zero_counts = False  # True: a count bucket of zero events is null (sparse counter)
        self.requests: list[dict] = []
        self.events: list[dict] = []
        self.hung_up = 0  # trickled answers the client hung up on
        self._remaining = 1000
        self.rate_limit: int | None = None  # requests per rate_period (the organisation's); None: no limit
        self.rate_period = 60
        self.refused = 0  # requests refused by rate_limit (429)
        self._window: tuple[int, int] = (0, 0)  # (window index, requests accepted in it)
        # When the first window began; None: at the first request, not at the wall clock's hour (a
        # test meeting a window's end by the time of day, a wait for the reset, would be flaky).
        self.rate_origin: float | None = None
        self._lock = threading.Lock()
        self._series = {
            scope: (frame.timestamps.astype(np.int64), {k: np.asarray(v) for k, v in frame.values.items()})
            for scope, frame in (case.frames.items() if case is not None else ())
        }
        # Per-host series of a group ("canary"/"baseline" -> host -> Frame), answered to a query
        # grouped `by {host}` (one series per host, `group_tags: ["host:<name>"]`). A group
        # without them answers such a query with its one series as one host (`<group>-host`).
        self.hosts: dict[str, dict[str, object]] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeDatadog:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def timeseries_requests(self) -> list[dict]:
        return [r for r in self.requests if r["path"] == "/api/v2/query/timeseries"]

    # -- answers --------------------------------------------------------------------------------

    def next_fault(self) -> str | None:
        with self._lock:
            return self.faults.pop(0) if self.faults else self.fault

    def admit(self) -> bool:
        """Whether the organisation's limit (`rate_limit`) takes one more request now."""
        if self.rate_limit is None:
            return True
        with self._lock:
            index = self._window_index(self.clock())
            count = self._window[1] if self._window[0] == index else 0
            if count >= self.rate_limit:
                self.refused += 1
                return False
            self._window = (index, count + 1)
            return True

    def _window_index(self, now: float) -> int:
        if self.rate_origin is None:
            self.rate_origin = now
        return int((now - self.rate_origin) // self.rate_period)

    def rate_headers(self) -> dict[str, str]:
        if self.rate_limit is not None:
            with self._lock:
                now = self.clock()
                index = self._window_index(now)
                count = self._window[1] if self._window[0] == index else 0
                return {
                    "X-RateLimit-Limit": str(self.rate_limit),
                    "X-RateLimit-Period": str(self.rate_period),
                    "X-RateLimit-Remaining": str(max(0, self.rate_limit - count)),
                    "X-RateLimit-Reset": str(max(1, int(self.rate_origin + (index + 1) * self.rate_period - now))),
                    "X-RateLimit-Name": "timeseries_query",
                }
        with self._lock:
            self._remaining = max(0, self._remaining - 1)
            return {
                "X-RateLimit-Limit": "1000",
                "X-RateLimit-Period": "3600",
                "X-RateLimit-Remaining": str(self._remaining),
                "X-RateLimit-Reset": "1800",
                "X-RateLimit-Name": "timeseries_query",
            }

    def timeseries(self, request: dict) -> dict:
        attributes = request["data"]["attributes"]
        assert request["data"]["type"] == "timeseries_request"
        start, end = attributes["from"] // 1000, attributes["to"] // 1000
        interval = attributes.get("interval", 60_000) // 1000
        now = int(self.clock()) - self.offset  # in recorded time
        inputs, bucket = {}, interval
        parsed = {q["name"]: _parse(q["query"]) for q in attributes["queries"]}
        for name, q in parsed.items():
            bucket = max(bucket, q["rollup_seconds"] or interval)
        # Datadog coarsens the resolution rather than return more points than its limit.
        while (end - start) / bucket > self.max_points:
            bucket *= 2
        first = start // bucket * bucket
        buckets = np.arange(first, end, bucket, dtype=np.int64)
        buckets = buckets[buckets - self.offset <= now]
        # One column per (query, host): a grouped query has one per host of its group.
        grouped: dict[str, dict[str | None, np.ndarray]] = {}
        for name, q in parsed.items():
            grouped[name] = {host: self._values(q, buckets - self.offset, bucket, now, series)
                             for host, series in self._sources(q)}
        formulas = attributes.get("formulas") or [{"formula": n} for n in parsed]
        columns = []  # (formula index, host, values)
        for index, f in enumerate(formulas):
            used = [n for n in parsed if re.search(rf"\b{re.escape(n)}\b", f["formula"])]
            hosts = sorted({h for n in used for h in grouped[n]}, key=lambda h: (h is not None, h or ""))
            for host in hosts:
                inputs = {n: grouped[n].get(host, grouped[n].get(None, np.full(len(buckets), np.nan))) for n in parsed}
                columns.append((index, host, _evaluate(f["formula"], inputs)))
        keep = np.zeros(len(buckets), dtype=bool)
        for _, _, c in columns:
            keep |= np.isfinite(c)
        series, values = [], []
        for index, host, c in columns:
            if not np.isfinite(c).any():
                continue  # no data at all: Datadog returns no series for the query
            tags = [] if host is None else [f"{parsed_by(parsed, formulas[index])}:{host}"]
            series.append({"group_tags": tags, "query_index": index, "unit": None})
            values.append([float(v) if np.isfinite(v) else None for v in c[keep]])
        return {
            "data": {
                "id": "0",
                "type": "timeseries_response",
                "attributes": {
                    "series": series,
                    "times": [int(t) * 1000 for t in buckets[keep]],
                    "values": values,
                },
            }
        }

    def _sources(self, q: dict):
        """(host, (times, columns)) of the query's group: one pair with host None when not grouped,
        one per host when grouped `by {...}`."""
        scope = next((SCOPES[t] for t in q["tags"] if t in SCOPES), None)
        whole = self._series.get(scope)
        if not q["by"]:
            return [(None, whole)]
        if scope in self.hosts:
            return [(host, (f.timestamps.astype(np.int64), {k: np.asarray(v) for k, v in f.values.items()}))
                    for host, f in sorted(self.hosts[scope].items())]
        return [(f"{scope}-host", whole)] if whole is not None else []

    def _values(self, q: dict, starts: np.ndarray, bucket: int, now: int, series=None) -> np.ndarray:
        """The query's value in each bucket (recorded time), NaN where nothing was reported."""
        out = np.full(len(starts), np.nan)
        mapping = METRICS.get(q["metric"])
        if mapping is None or series is None:
            return out
        column, convert = mapping
        times, columns = series
        data = columns.get(column)
        if data is None:
            return out
        step = self.case.step
        method = q["rollup_method"] or ("sum" if q["as_count"] else "avg")
        if bucket == step:  # the recorded resolution: one row per bucket
            index = np.clip(np.searchsorted(times, starts), 0, max(len(times) - 1, 0))
            found = (times[index] == starts) if len(times) else np.zeros(len(starts), dtype=bool)
            out[found] = data[index[found]]
        else:
            aggregate = {"avg": np.mean, "sum": np.sum, "min": np.min, "max": np.max, "count": len}[method]
            for i, s in enumerate(starts):
                lo, hi = np.searchsorted(times, [s, min(s + bucket, now + 1)])
                chunk = data[lo:hi][np.isfinite(data[lo:hi])]
                if len(chunk):
                    out[i] = aggregate(chunk)
        if q["as_count"] and len(starts) and starts[-1] + step > now:
            # The bucket still filling holds only the events reported so far.
            out[-1] *= max(0.0, (now - starts[-1]) / step)
        if q["as_count"] and self.null_zero_counts:
            out[out == 0] = np.nan  # no event in the bucket: no point at all
        return np.array([convert(v) if np.isfinite(v) else np.nan for v in out])

    def post_event(self, request: dict) -> dict:
        event = {
            "id": len(self.events) + 1,
            "id_str": str(len(self.events) + 1),
            "title": request["title"],
            "text": request["text"],
            "tags": request.get("tags", []),
            "alert_type": request.get("alert_type", "info"),
            "date_happened": request.get("date_happened", int(time.time())),
            "url": f"https://app.datadoghq.com/event/event?id={len(self.events) + 1}",
        }
        self.events.append(event)
        return {"status": "ok", "event": event}


def _parse(query: str) -> dict:
    m = _QUERY.fullmatch(query.strip())
    if m is None:
        raise ValueError(f"unparsable query {query!r}")
    functions = _FUNC.findall(m.group("funcs"))
    rollup = next((args for name, args in functions if name == "rollup"), None)
    method, seconds = None, None
    if rollup is not None:
        for arg in (a.strip() for a in rollup.split(",") if a.strip()):
            if arg.isdigit():
                seconds = int(arg)
            else:
                method = arg
    return {
        "aggregation": m.group("agg"),
        "metric": m.group("metric"),
        "tags": [t.strip() for t in m.group("filter").split(",")],
        "by": (m.group("by") or "").strip() or None,
        "as_count": any(name == "as_count" for name, _ in functions),
        "rollup_method": method,
        "rollup_seconds": seconds,
    }


def parsed_by(parsed: dict, formula: dict) -> str:
    """The tag a formula's grouped queries are grouped by."""
    return next(q["by"] for n, q in parsed.items() if q["by"] and re.search(rf"\b{re.escape(n)}\b", formula["formula"]))


def _evaluate(formula: str, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Arithmetic over named queries (+ - * /, unary minus, numbers)."""
    operators = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide}

    def walk(node):
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Name):
            return inputs[node.id]
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in operators:
            return operators[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        raise ValueError(f"unsupported formula {formula!r}")

    with np.errstate(divide="ignore", invalid="ignore"):
        result = walk(ast.parse(formula, mode="eval"))
    size = len(next(iter(inputs.values()))) if inputs else 0
    return np.broadcast_to(np.asarray(result, dtype=float), (size,)).copy()


def _handler(fake: FakeDatadog):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            entry: dict = {"path": self.path, "at": time.time()}
            fake.requests.append(entry)
            if (
                self.headers.get("DD-API-KEY") != fake.api_key
                or (self.path.startswith("/api/v2/") and self.headers.get("DD-APPLICATION-KEY") != fake.app_key)
            ):
                entry["status"] = 403
                return self._json(403, {"errors": ["Forbidden"]})
            try:
                body = json.loads(raw)
            except ValueError:
                entry["status"] = 400
                return self._json(400, {"errors": ["Malformed JSON"]})
            if self.path == "/api/v1/events":
                if fake.fault == "trickle_headers":
                    return self._trickle_headers()
                entry["status"] = 202
                return self._json(202, fake.post_event(body))
            if self.path != "/api/v2/query/timeseries":
                entry["status"] = 404
                return self._json(404, {"errors": ["Not found"]})
            attributes = body["data"]["attributes"]
            entry.update(
                {
                    "from": attributes["from"],
                    "to": attributes["to"],
                    "interval": attributes.get("interval"),
                    "queries": [q["query"] for q in attributes["queries"]],
                    "formulas": [f["formula"] for f in attributes.get("formulas", [])],
                }
            )
            fault = fake.next_fault()
            entry["fault"] = fault
            if fault == "429":
                entry["status"] = 429
                headers = {**fake.rate_headers(), "X-RateLimit-Remaining": "0",
                           "X-RateLimit-Reset": str(fake.reset_after)}
                return self._json(429, {"errors": ["Too many requests"]}, headers)
            if fault is None and not fake.admit():  # the organisation's limit (rate_limit)
                entry["status"] = 429
                return self._json(429, {"errors": ["Too many requests"]}, fake.rate_headers())
            if fault in ("500", "502", "503"):
                entry["status"] = int(fault)
                return self._json(int(fault), {"errors": ["Internal Server Error"]})
            if fault == "slow":
                fake.sleep(fake.slow_seconds)
            if fault == "trickle":
                entry["status"] = 200
                return self._trickle()
            if fault == "trickle_headers":
                entry["status"] = 200
                return self._trickle_headers()
            if fault == "malformed":
                entry["status"] = 200
                return self._send(200, b'{"data": {"type": "timeseries_response", "attributes": {"times": [1', {})
            if fault == "bad_shape":
                entry["status"] = 200
                return self._json(200, {"data": {"attributes": {"times": [0, 60000], "series": [{"query_index": 0}],
                                                                "values": [[1.0]]}}})
            try:
                answer = fake.timeseries(body)
            except (KeyError, ValueError) as e:
                entry["status"] = 400
                return self._json(400, {"errors": [f"Error parsing query: {e}"]})
            entry["status"] = 200
            self._json(200, answer, fake.rate_headers())

        def _trickle(self) -> None:
            """Headers claiming `trickle_length` bytes, then a body a byte at a time."""
            head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {fake.trickle_length}\r\n\r\n")
            self._drip(head.encode(), b" ")

        def _trickle_headers(self) -> None:
            """A status line, then one header a byte at a time: no answer ever starts."""
            self._drip(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Pad: ", b"a")

        def _drip(self, first: bytes, byte: bytes) -> None:
            """`first`, then `byte` every `trickle_every` s until `trickle_for` s or the client hangs up."""
            try:
                self.wfile.write(first)
                ends = time.monotonic() + fake.trickle_for
                while time.monotonic() < ends:
                    self.wfile.write(byte)
                    self.wfile.flush()
                    time.sleep(fake.trickle_every)
            except (BrokenPipeError, ConnectionResetError):
                fake.hung_up += 1  # the client gave up before the server did
            self.close_connection = True

        def _json(self, status: int, payload: dict, headers: dict | None = None) -> None:
            self._send(status, json.dumps(payload).encode(), headers or {})

        def _send(self, status: int, body: bytes, headers: dict) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout): nothing to answer

    return Handler
