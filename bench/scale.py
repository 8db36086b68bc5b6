"""Many canaries at once (issue 26): N releases judged concurrently through the real Lambda handler,
the real stores (DynamoDB and S3 on a moto server) and the real Datadog source, against the fake
Datadog with an organisation-wide limit (600 requests a minute by default), on simulated time.

Each release is one canary deployed at the same moment (the worst case), half of them an A/A canary
(truth: must not fail), half a dead canary (truth: must not pass). Every look, all N evaluations run
at once, one thread each, in `--containers` Lambda containers (each with its own /tmp; a release
lands in another container at each look, as Lambda gives no affinity). Time is simulated: the fake's
clock and the sources' clocks are one `SimulatedClock`, which moves only when every running
evaluation is waiting (for the organisation's budget), so a minute of waiting costs no wall time.

    .venv/bin/python -m bench.scale --n 1,50,500 [--looks 3] [--limit 600] [--containers 100]

Reports, per N: requests per evaluation (first look, later looks), history fetches per deploy,
429s, evaluations later than their interval, could-not-judge looks (and why), wrong verdicts,
CPU seconds and simulated waits per evaluation (-> GB-seconds per canary-hour at the template's
1024 MB), DynamoDB and S3 calls per evaluation. Figures are in docs/scale.md.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import os
import resource
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the gate of this tree (main's, when run from a copy of main: docs/scale.md)

CASES = {"aa": "k1m-aa-039", "down": "k1m-canary-down-012"}  # truth: aa must not fail, down must not pass
TABLE, BUCKET = "gate-bench-evaluations", "gate-bench-bucket"
LAMBDA_GB = 1.0  # infra/template.yaml: MemorySize 1024


class SimulatedClock:
    """Epoch seconds that move only when every running evaluation waits: then to the earliest
    wake-up. `enter`/`leave` count the evaluations running."""

    def __init__(self, now: float):
        self.now = now
        self._cv = threading.Condition()
        self._running = 0
        self._sleepers: list[float] = []
        self.waited = threading.local()

    def __call__(self) -> float:
        return self.now

    def enter(self, count: int = 1) -> None:
        with self._cv:
            self._running += count

    def leave(self) -> None:
        with self._cv:
            self._running -= 1
            self._advance()

    def sleep(self, seconds: float) -> None:
        self.waited.seconds = getattr(self.waited, "seconds", 0.0) + max(0.0, seconds)
        with self._cv:
            target = self.now + max(0.0, seconds)
            heapq.heappush(self._sleepers, target)
            self._advance()
            while self.now < target:
                self._cv.wait()

    def _advance(self) -> None:
        if self._sleepers and len(self._sleepers) >= self._running:
            self.now = max(self.now, self._sleepers[0])
            while self._sleepers and self._sleepers[0] <= self.now:
                heapq.heappop(self._sleepers)
            self._cv.notify_all()


def multi_case_datadog(cases: dict, deploy: int, clock):
    """The fake Datadog serving each case under its own tags (`autoscaling_group:<kind>-canary`),
    all deployed at `deploy`, behind one organisation's limit."""
    from tests import fake_datadog
    from tests.fake_datadog import FakeDatadog

    class MultiCase(FakeDatadog):
        def __init__(self):
            first = next(iter(cases.values()))
            super().__init__(first, clock=clock)
            self._swap = threading.Lock()
            self._served = {}
            for kind, case in cases.items():
                fake_datadog.SCOPES[f"autoscaling_group:{kind}-canary"] = "canary"
                fake_datadog.SCOPES[f"autoscaling_group:{kind}-baseline"] = "baseline"
                series = {scope: (frame.timestamps.astype("int64"), dict(frame.values))
                          for scope, frame in case.frames.items()}
                self._served[kind] = (case, series, deploy - case.deployed_at)

        def timeseries(self, request: dict) -> dict:
            query = request["data"]["attributes"]["queries"][0]["query"]
            kind = next(k for k in self._served if f"autoscaling_group:{k}-" in query)
            with self._swap:
                self.case, self._series, self.offset = self._served[kind]
                return super().timeseries(request)

    return MultiCase()


class Calls:
    """AWS calls by service and operation, counted where every client sends them."""

    def __init__(self):
        from botocore.client import BaseClient

        self.counts: Counter = Counter()
        self.metric_data_ends: list[int] = []  # GetMetricData's EndTime, each call (history or window)
        lock, counts, send, ends = threading.Lock(), self.counts, BaseClient._make_api_call, self.metric_data_ends

        def counted(client, operation, params):
            with lock:
                counts[client.meta.service_model.service_name, operation] += 1
                if operation == "GetMetricData":
                    ends.append(int(params["EndTime"].timestamp()))
            return send(client, operation, params)

        BaseClient._make_api_call = counted


def policy(kind: str, source: str = "datadog", history: str | None = None) -> dict:
    import yaml

    if source == "cloudwatch":
        from tests.test_cloudwatch_moto import policy_data

        data = policy_data(history=history or "1d")
        data["source"]["options"]["groups"] = {g: {"target_group": target_group(kind, g)} for g in ("canary", "baseline")}
        data["canary"] = {"scope": f"{kind}-canary"}
        data["baseline"] = {"scope": f"{kind}-baseline"}
        return data
    data = yaml.safe_load((ROOT / "examples" / "datadog.yaml").read_text())
    if history:
        data["history"] = history
    # A request's timeout is wall time: hundreds of threads on two shared cores answer slowly, and a
    # timeout would be a retry the real service never makes. The counts, not the latency, are measured.
    data["source"]["options"] = {**data["source"]["options"], "settle": 0, "timeout": 600}
    data["canary"] = {"scope": f"autoscaling_group:{kind}-canary"}
    data["baseline"] = {"scope": f"autoscaling_group:{kind}-baseline"}
    return data


def target_group(kind: str, group: str) -> str:
    return f"targetgroup/{kind}-{group}/73e2d6bc24d8a067"


def publish_cloudwatch(cases: dict, deploy: int, history: int) -> None:
    """Each case's rows as CloudWatch metrics on the moto server, its groups named `<kind>-canary`
    and `<kind>-baseline` (and their target groups), deployed at `deploy`."""
    import math
    from datetime import UTC, datetime

    import boto3

    from tests.test_cloudwatch_moto import READ

    batches: dict[str, list[dict]] = {}
    for kind, case in cases.items():
        shift = deploy - case.deployed_at
        for group, frame in case.frames.items():
            part = frame.between(case.deployed_at - history, case.end_at)
            names = {"scope": f"{kind}-{group}", "target_group": target_group(kind, group)}
            for name, (namespace, metric, _, dims) in READ.items():
                dimensions = [{"Name": k, "Value": v.format(**names)} for k, v in sorted(dims.items())]
                for t, value in zip(part.timestamps, part.values[name]):
                    if math.isnan(value) or (name == "errors" and value == 0):
                        continue
                    batches.setdefault(namespace, []).append({
                        "MetricName": metric, "Dimensions": dimensions, "Value": float(value),
                        "Timestamp": datetime.fromtimestamp(int(t) + shift, UTC)})
    cloudwatch = boto3.client("cloudwatch")
    for namespace, data in batches.items():
        for i in range(0, len(data), 1000):
            cloudwatch.put_metric_data(Namespace=namespace, MetricData=data[i:i + 1000])


def run(n: int, looks: int, limit: int, containers: int, first_look: int, workdir: Path, calls: Calls,
        source: str = "datadog", history: str | None = None) -> dict:
    import boto3

    from gate import cache as caching
    from gate.sources.replay import load_case
    from gate.verdict import iso
    from tests.lambda_module import FakeContext, import_handler
    from tests.test_store_dynamodb import create_store_table

    corpus = Path(os.environ.get("GATE_CORPUS", ROOT.parent / "shared" / "corpus" / "dev"))
    cases = {kind: load_case(corpus / name) for kind, name in CASES.items()}
    if source == "cloudwatch":  # moto holds what was put: the looks are in the past of the real clock
        deploy = (int(time.time()) - first_look - 60 * looks - 600) // 60 * 60
    else:
        deploy = (int(time.time()) - 3 * 86400) // 60 * 60
    clock = SimulatedClock(deploy + first_look)
    create_store_table(TABLE)
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    if source == "cloudwatch":
        from gate.policy import parse_policy

        publish_cloudwatch(cases, deploy, parse_policy(policy("aa", source, history)).history)

    handler = import_handler(f"gate_lambda_bench_{n}")
    opened = handler.open_source

    def simulated_source(p):
        opened_source = opened(p)
        if p.source.type == "cloudwatch":
            opened_source.clock, opened_source.sleep = clock, clock.sleep
        else:
            opened_source.clock_wall, opened_source.sleep = clock, clock.sleep
        return opened_source

    handler.open_source = simulated_source
    caches = {}  # container -> its cache: its own /tmp (in front of the stack's bucket, if shared)
    local = threading.local()

    def container_cache(*_):
        c = local.container
        if c not in caches:
            folder = caching.ReferenceCache(workdir / f"container-{c}")
            shared = getattr(caching, "S3ReferenceCache", None)  # main's code (before issue 26): /tmp only
            caches[c] = caching.LayeredCache(folder, shared(BUCKET)) if shared else folder
        return caches[c]

    if hasattr(handler, "reference_cache"):
        handler.reference_cache = container_cache
    else:
        handler.ReferenceCache = container_cache  # main's handler builds its /tmp cache inline

    results = []
    cloudwatch = source == "cloudwatch"
    before_ends = len(calls.metric_data_ends)

    def requests_sent() -> int:
        return len(calls.metric_data_ends) - before_ends if cloudwatch else len(fake.timeseries_requests())

    with (contextlib.nullcontext() if cloudwatch else multi_case_datadog(cases, deploy, clock)) as fake:
        if not cloudwatch:
            fake.rate_limit, fake.rate_period = limit, 60
            os.environ["GATE_DATADOG_URL"] = fake.url
        for look in range(looks):
            moment = deploy + first_look + 60 * look
            clock.now = max(clock.now, moment)
            before_requests, before_calls = requests_sent(), calls.counts.copy()
            outcomes = [None] * n
            clock.enter(n)

            def evaluate(i: int) -> None:
                local.container = (i + look) % containers
                clock.waited.seconds = 0.0
                kind = "aa" if i % 2 == 0 else "down"
                event = {"release": f"svc{i:04d}-1.0", "policy": policy(kind, source, history), "deployed_at": iso(deploy),
                         "now": iso(moment), "examine_past": True}
                cpu, began = time.thread_time(), clock.now
                try:
                    answer = handler.lambda_handler(event, FakeContext())
                finally:
                    # Late: longer than an interval from its own start (the looks run one after the
                    # other here, so a look may start after its moment: that is the bench's, not the gate's).
                    outcomes[i] = (kind, answer, time.thread_time() - cpu, clock.waited.seconds, clock.now - began)
                    clock.leave()

            threads = [threading.Thread(target=evaluate, args=(i,)) for i in range(n)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            requests = requests_sent() - before_requests
            used = calls.counts - before_calls
            results.append({"look": look, "outcomes": outcomes, "requests": requests, "calls": used,
                            "ended_at_minute": round((clock.now - deploy - first_look) / 60, 2)})
            print(f"scale: n={n} look {look} done ({requests} requests)", file=sys.stderr, flush=True)
        if cloudwatch:  # one GetMetricData a fetch (a page holds 100,800 points: a week of 5 metrics at 1 minute)
            history_calls = [end for end in calls.metric_data_ends[before_ends:] if end <= deploy]
            result = summary(n, results, history_calls, Counter(), 0, requests_a_history=1)
            result["source"] = "cloudwatch (moto: no throttling)"
        else:
            history_calls = [r for r in fake.timeseries_requests() if r["to"] // 1000 <= deploy]
            statuses = Counter(r.get("status") for r in fake.timeseries_requests())
            result = summary(n, results, history_calls, statuses, fake.refused)
    return {**result, **stored(n, looks)}


def stored(n: int, looks: int) -> dict:
    """What the store holds once the run is over: one record per evaluation (a verdict or the
    error that kept it from one), read back whole (not counted in the per-look calls)."""
    from gate.store.dynamodb import DynamoStore

    store = DynamoStore(TABLE)
    records = [len(store.evaluations(f"svc{i:04d}-1.0")) for i in range(n)]
    return {"store_records": sum(records), "store_lost": sum(max(0, looks - r) for r in records)}


def summary(n: int, looks: list[dict], history: list, statuses: Counter, refused: int,
            requests_a_history: int = 7) -> dict:
    per_look = []
    wrong = late = 0
    errors: Counter = Counter()
    cpu, waits = [], []
    for look in looks:
        for kind, answer, seconds, waited, took in look["outcomes"]:
            verdict = answer.get("verdict")
            wrong += (kind == "aa" and verdict == "fail") or (kind == "down" and verdict == "pass")
            late += took > 60
            if verdict == "error":
                errors["request budget" if "request budget" in answer["error"] else answer["error"][:80]] += 1
            cpu.append((look["look"], seconds))
            waits.append(waited)
        per_look.append({
            "look": look["look"],
            # Simulated minutes from the first look's moment to this look's last answer: a look
            # that ran late moves every later one (the looks run one after the other).
            "ended_at_minute": look["ended_at_minute"],
            "requests_per_evaluation": round(look["requests"] / n, 2),
            "verdicts": dict(Counter(o[1].get("verdict") for o in look["outcomes"])),
            "dynamodb_per_evaluation": {op: round(c / n, 2) for (svc, op), c in look["calls"].items() if svc == "dynamodb"},
            "s3_per_evaluation": {op: round(c / n, 2) for (svc, op), c in look["calls"].items() if svc == "s3"},
            "cpu_seconds_per_evaluation": round(sum(s for lk, s in cpu if lk == look["look"]) / n, 3),
            "waited_seconds_per_evaluation": round(sum(o[3] for o in look["outcomes"]) / n, 2),
            "later_than_interval": sum(o[4] > 60 for o in look["outcomes"]),
        })
    reads, writes = ({"GetItem", "Query", "BatchGetItem"}, {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"})
    for p, look in zip(per_look, looks):
        dynamodb = {op: c for (svc, op), c in look["calls"].items() if svc == "dynamodb"}
        p["dynamodb_reads_writes_per_evaluation"] = (round(sum(c for op, c in dynamodb.items() if op in reads) / n, 2),
                                                     round(sum(c for op, c in dynamodb.items() if op in writes) / n, 2))
    first = per_look[0]["cpu_seconds_per_evaluation"]
    later = (sum(p["cpu_seconds_per_evaluation"] for p in per_look[1:]) / max(1, len(per_look) - 1)
             if len(per_look) > 1 else first)
    return {
        "n": n,
        "looks": per_look,
        "history_requests_per_deploy": round(len(history) / n, 2),
        "history_fetches_per_deploy": round(len(history) / n / requests_a_history, 2),  # Datadog, a week: 7 requests
        "429s": statuses.get(429, 0),
        "refused_by_limit": refused,
        "later_than_interval": late,
        "could_not_judge": dict(errors),
        "wrong_verdicts": wrong,
        "simulated_wait_seconds_per_evaluation": round(sum(waits) / len(waits), 2),
        # A one-hour canary looked at every minute: one first look, 59 later ones.
        "gb_seconds_per_canary_hour": round(LAMBDA_GB * (first + 59 * later), 2),
        # Lambda bills the wait for the budget too: the looks measured, with their waits, then the
        # rest of the hour as a later look without one (once every history is in, N requests a
        # minute under the limit wait for nothing).
        "gb_seconds_per_canary_hour_with_waits": round(LAMBDA_GB * (
            sum(p["cpu_seconds_per_evaluation"] + p["waited_seconds_per_evaluation"] for p in per_look)
            + (60 - len(per_look)) * later), 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", default="1,50", help="releases judged at once, comma-separated (e.g. 1,50,500)")
    parser.add_argument("--looks", type=int, default=3, help="looks per release, a minute apart")
    parser.add_argument("--limit", type=int, default=600, help="the organisation's requests a minute")
    parser.add_argument("--containers", type=int, default=100, help="Lambda containers (each its own /tmp)")
    parser.add_argument("--first-look", type=int, default=1800, help="seconds from the deploy to the first look")
    parser.add_argument("--source", choices=("datadog", "cloudwatch"), default="datadog",
                        help="the fake Datadog behind the organisation's limit, or CloudWatch on the moto server")
    parser.add_argument("--history", help="the policy's history (default: the example's 7d; CloudWatch 1d, "
                                          "as moto scans every point it holds at each query)")
    args = parser.parse_args(argv)

    from moto.server import ThreadedMotoServer

    from tests.moto_server import MotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    moto = MotoServer(f"http://{host}:{port}")
    os.environ.update(moto.env)
    os.environ.update({"DD_API_KEY": "fake-api-key-0123456789abcdef", "DD_APP_KEY": "fake-app-key-fedcba9876543210",
                       "GATE_STORE_TABLE": TABLE, "GATE_REFERENCE_BUCKET": BUCKET,
                       "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_NAMESPACE": "CanaryGateBench",
                       "POWERTOOLS_LOG_LEVEL": "ERROR", "POWERTOOLS_METRICS_DISABLED": "true"})
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's access log
    for key in ("GATE_IDEMPOTENCY_TABLE", "GATE_SECRET_ID", "SLACK_WEBHOOK_URL", "GATE_REPORT_BUCKET", "AWS_PROFILE"):
        os.environ.pop(key, None)
    run_calls = Calls()
    try:
        for n in (int(x) for x in args.n.split(",")):
            moto.reset()
            with tempfile.TemporaryDirectory() as workdir:
                started = time.perf_counter()
                result = run(n, args.looks, args.limit, min(args.containers, n), args.first_look, Path(workdir), run_calls,
                             args.source, args.history)
                result["wall_seconds"] = round(time.perf_counter() - started, 1)
            print(json.dumps(result), flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
