"""Load: 100 concurrent evaluations (a pool of 25 threads, each an Analysis on the real Datadog
source) against fake Datadog APIs sharing one rate limit, which answers 429 with
X-RateLimit-Reset once a one-second window is full. All complete with the right verdict within
their budget, the limit holds (a client told to wait waits: at most one refused request per
worker per window, each request carrying its worker's name), and the store has all 100 records.

Throughput and p95 latency are printed (`-s`) and reported in docs/reliability.md.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from gate.analysis import Analysis
from gate.policy import load_policy
from gate.sources.datadog import from_policy
from gate.store import SqliteStore
from tests.fake_datadog import API_KEY, APP_KEY, FakeDatadog
from tests.test_reliability_faults import AA, DOWN, datadog_policy, live

EVALUATIONS, WORKERS, LIMIT = 100, 25, 20  # LIMIT: requests per one-second window, over both fakes
BUDGET = 60.0  # seconds one evaluation may take, queueing for a worker excluded


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

    def admit(self, worker: str | None) -> bool:
        with self.lock:
            window = int(time.time())
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

        def evaluate(job):
            release, fake = job
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

    # Correct verdicts, each within its budget.
    assert {release: verdict for release, verdict, _ in results} == expected
    latencies = np.array([seconds for *_, seconds in results])
    assert latencies.max() < BUDGET
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
