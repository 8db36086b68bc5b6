"""Load: 100 concurrent evaluations (a pool of 25 threads, each an Analysis on the real Datadog
source) against fake Datadog APIs sharing one rate limit, which answers 429 with
X-RateLimit-Reset once a one-second window is full. All complete with the right verdict within
their budget, the limit holds (a client told to wait waits: at most one refused request per
worker per window, each request carrying its worker's name), and the store has all 100 records.

Throughput and p95 latency are printed (`-s`) and reported in docs/reliability.md.

And one look, one deadline (issue 26): a first look that waits for the organisation's budget (or a
429's reset) for its history, then for its window, waits within one interval from its start, on
simulated time; past it, could not judge naming the budget, the history it learned kept.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from gate.analysis import Analysis
from gate.policy import load_policy
from gate.sources.datadog import from_policy
from gate.store import SqliteStore
from tests.fake_datadog import API_KEY, APP_KEY, FakeDatadog
from tests.test_reliability_faults import AA, DOWN, datadog_policy, live

# LIMIT: requests per one-second window, over both fakes. The workers' first requests leave
# together (a barrier), so the first window sees more than LIMIT however slow the machine is.
EVALUATIONS, WORKERS, LIMIT = 100, 25, 10
BUDGET = 60.0  # the retry budget of each evaluation's fetches (s): time lost to 429s and faults


class RateLimit:
    """One Datadog organisation's rate limit, shared by the fakes: LIMIT requests per window."""

    def __init__(self, limit: int):
        self.limit = limit
        self.lock = threading.Lock()
        # window -> requests accepted / refused, counted where the decision is made (the time a
        # request was logged on arrival may fall in the window before)
        self.accepted: Counter = Counter()
        self.refused: Counter = Counter()
        self.refused_by: Counter = Counter()  # (worker, window) -> requests refused
        self.unattributed = 0  # requests without the worker header (should be none)
        self.origin: float | None = None  # windows begin at the first request, not on the wall clock

    def admit(self, worker: str | None) -> bool:
        with self.lock:
            now = time.time()
            self.origin = now if self.origin is None else self.origin
            window = int(now - self.origin)
            if worker is None:
                self.unattributed += 1
            if self.accepted[window] >= self.limit:
                self.refused[window] += 1
                self.refused_by[worker, window] += 1
                return False
            self.accepted[window] += 1
            return True


WORKER_HEADER = "X-Load-Test-Worker"  # the client thread that sent a request (set on each source)


class RateLimitedDatadog(FakeDatadog):
    """The fake, behind the shared limit; it knows which worker sent each request (the handler,
    run in the request's own server thread, leaves the header where `next_fault` finds it)."""

    limit: RateLimit

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        local = self._request = threading.local()
        base = self._server.RequestHandlerClass

        class Handler(base):
            def do_POST(self):  # noqa: N802
                local.worker = self.headers.get(WORKER_HEADER)
                super().do_POST()

        self._server.RequestHandlerClass = Handler

    def next_fault(self):
        fault = super().next_fault()
        if fault is None and not self.limit.admit(getattr(self._request, "worker", None)):
            self.reset_after = 1  # X-RateLimit-Reset: the window ends within the second
            return "429"
        return fault


def test_100_concurrent_evaluations_respect_the_rate_limit_and_lose_nothing(corpus, tmp_path, monkeypatch):
    limit = RateLimit(LIMIT)
    policy = load_policy(datadog_policy(tmp_path, timeout=10, retry_budget=BUDGET))
    store = SqliteStore(tmp_path / "gate.sqlite")
    monkeypatch.setenv("DD_API_KEY", API_KEY)
    monkeypatch.setenv("DD_APP_KEY", APP_KEY)
    with live(corpus, AA, ahead=0, fake_class=RateLimitedDatadog) as aa, \
            live(corpus, DOWN, fake_class=RateLimitedDatadog) as down:
        aa.limit = down.limit = limit
        now = int(time.time())
        jobs = [(f"web-{i}", aa if i % 2 else down) for i in range(EVALUATIONS)]
        expected = {release: "pass" if fake is aa else "fail" for release, fake in jobs}
        sources = {}
        for fake in (aa, down):  # the source reads its URL when built
            monkeypatch.setenv("GATE_DATADOG_URL", fake.url)
            sources[fake.url] = [from_policy(policy) for _ in range(EVALUATIONS)]

        ready, first = threading.Barrier(WORKERS), threading.local()

        def evaluate(job):
            release, fake = job
            if not getattr(first, "done", False):  # each worker's first evaluation starts with the others'
                first.done = True
                ready.wait(timeout=120)
            started = time.monotonic()
            source = sources[fake.url].pop()
            source._api.api_client.default_headers[WORKER_HEADER] = threading.current_thread().name
            verdict = Analysis(policy, source, release, fake.deployed_at, store=store).evaluate(now)
            return release, verdict.verdict, time.monotonic() - started

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            results = list(pool.map(evaluate, jobs))
        elapsed = time.monotonic() - started
    requests = aa.timeseries_requests() + down.timeseries_requests()

    # Correct verdicts: none could not judge, so none ran out of its retry budget. (How long
    # each took is printed below, never asserted: a busy machine would fail a timed test.)
    assert {release: verdict for release, verdict, _ in results} == expected
    latencies = np.array([seconds for *_, seconds in results])
    # The client honoured the limit: refused at most once per worker per window. A worker sends
    # one request at a time; refused at second d (window int(d)), it sleeps max(reset, backoff)
    # >= 1 s (X-RateLimit-Reset: 1) after the answer, so its next request is decided after d + 1,
    # in a later window. A client retrying at once would be refused again and again in the window.
    # (Hence at most WORKERS refusals per window in all.)
    accepted, refused = limit.accepted, limit.refused
    assert refused, "the load never reached the limit: the test proves nothing"
    assert limit.unattributed == 0, "a request without its worker's name: the per-worker count proves nothing"
    assert {worker for worker, _ in limit.refused_by} - {None}, limit.refused_by
    assert max(limit.refused_by.values()) == 1, {k: n for k, n in limit.refused_by.items() if n > 1}
    assert max(accepted.values()) <= LIMIT, accepted
    assert sum(r.get("status") == 200 for r in requests) == 2 * EVALUATIONS  # one history and one window request each
    assert sum(accepted.values()) == 2 * EVALUATIONS and sum(refused.values()) == len(requests) - 2 * EVALUATIONS
    # Nothing lost: one record per evaluation, each the release's own.
    for release, verdict in expected.items():
        [record] = store.evaluations(release)
        assert record["verdict"] == verdict and record["payload"]["release"] == release
    p95 = float(np.percentile(latencies, 95))
    print(f"\nload: {EVALUATIONS} evaluations, {WORKERS} workers, limit {LIMIT} req/s: "
          f"{elapsed:.1f}s, {EVALUATIONS / elapsed:.1f} evaluations/s, p50 {np.median(latencies):.2f}s, "
          f"p95 {p95:.2f}s, max {latencies.max():.2f}s, {len(requests)} requests "
          f"({sum(refused.values())} answered 429), peak {max(accepted.values())} accepted/s")
    assert math.isfinite(p95)


# -- one look, one deadline (issue 26: no look later than its interval because of others' requests)


def first_look(corpus, tmp_path, env_keys, prepare, **options):
    """A first look (20 minutes after the deploy, 2 days of history: 2 requests, then 1 for the
    window) on the simulated clock, through a shared budget `prepare(fake, budget, clock)` set up;
    (its verdict or the SourceError's message, the seconds it waited, the fake, the next look's)."""
    from gate.cache import ReferenceCache
    from gate.errors import SourceError
    from gate.sources.replay import load_case
    from tests.test_datadog_source import BASELINE, CANARY, datadog_policy
    from tests.test_scale import SimulatedClock, budgeted_source, shared_file_budget

    case = load_case(corpus / AA)
    clock = SimulatedClock(case.deployed_at + 1220)
    cache = ReferenceCache(tmp_path / "cache")
    policy = datadog_policy(timeout=60, **options).model_copy(update={"history": 2 * 86400})
    outcomes = []
    with FakeDatadog(case, clock=clock) as fake:
        env_keys.setenv("GATE_DATADOG_URL", fake.url)
        budget = shared_file_budget(tmp_path)
        prepare(fake, budget, clock)
        for look in range(2):
            clock.now = max(clock.now, case.deployed_at + 1220 + 60 * look)
            started, slept = clock.now, len(clock.slept)
            analysis = Analysis(policy, budgeted_source(policy, clock, budget), "web-1.0", case.deployed_at,
                                canary=CANARY, baseline=BASELINE, cache=cache)
            try:
                outcome = analysis.evaluate(int(started) // 60 * 60).verdict
            except SourceError as e:
                outcome = str(e)
            outcomes.append((outcome, sum(clock.slept[slept:]), clock.now - started))
    return outcomes, fake


def test_a_first_look_waits_for_its_history_and_window_within_one_interval(corpus, tmp_path, env_keys):
    """The organisation's window (2 requests a minute) is spent by others until 40 s into the look.
    The history (2 requests) waits for the reset and spends the new window; the window's request
    would wait for the next reset, 100 s after the look began. Each fetch had its own deadline (an
    interval from the fetch): the look waited 100 s and came a whole interval late. One deadline a
    look: could not judge at it, the budget named; the history it learned is kept, and the next
    look, on time, judges with one request."""
    from gate.request_budget import Heard

    def spent_by_others(fake, budget, clock):
        fake.rate_limit, fake.rate_period = 2, 60
        reset = 60 - clock() % 60
        fake.rate_origin, fake._window = 0.0, (int(clock()) // 60, 2)  # windows on the minute; the others spent 2
        budget.heard(clock(), Heard(remaining=0, reset=reset, limit=2, period=60))

    (first, waited, took), (second, _, took_next) = first_look(corpus, tmp_path, env_keys, spent_by_others)[0]
    assert "request budget" in first and "could not judge" in first, first
    assert waited == pytest.approx(40) and took <= 60  # the history's wait only: not past the interval
    assert second in ("pass", "inconclusive") and took_next <= 60


def test_a_429_asking_to_wait_past_the_look_s_deadline_is_could_not_judge(corpus, tmp_path, env_keys):
    """Two 429s in one look, each asking 45 s (the history's first request, then the window's):
    each fetch waited for its own, 90 s in all, a look an interval late. The second is past the
    look's deadline: could not judge, naming the budget, without waiting."""

    def refusing(fake, budget, clock):
        fake.faults, fake.reset_after = ["429", None, None, "429"], 45

    (first, waited, took), (second, _, _) = first_look(corpus, tmp_path, env_keys, refusing, retry_budget=300)[0]
    assert "request budget" in first and "429" in first and "could not judge" in first, first
    assert waited == pytest.approx(45) and took <= 60
    assert second in ("pass", "inconclusive")
