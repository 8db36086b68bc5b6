"""Many canaries at once (issue 26): the history learned once per deploy and shared by every
container (S3 on a moto server), the canary group's history never asked when the judge learns from
the baseline's, and the organisation's Datadog requests shared by concurrent evaluations (the fake
Datadog's organisation-wide `rate_limit`, over real HTTP; the budget in DynamoDB on moto).
Figures (requests, GB-seconds, 429s at 500 canaries) are bench/scale.py's, in docs/scale.md."""

from __future__ import annotations

import json
import math
import re
import pickle
import sys
from contextlib import contextmanager

import boto3
import pytest
import yaml

from gate.analysis import Analysis
from gate.cache import ReferenceCache, pack
from gate.errors import SourceError
from gate.sources import open_source
from gate.sources.replay import load_case
from gate.verdict import iso
from tests.fake_datadog import API_KEY, APP_KEY, FakeDatadog
from tests.lambda_module import FakeContext, import_handler
from tests.moto_server import moto_server  # noqa: F401 - fixture
from tests.test_datadog_source import BASELINE, CANARY, datadog_policy
from tests.test_reliability_faults import AA, live
from tests.test_store_dynamodb import create_store_table, moto_endpoint  # noqa: F401 - fixture

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
BUCKET, TABLE = "gate-stack-bucket", "gate-evaluations"


class SimulatedClock:
    """One clock for the fake Datadog and the sources: a wait moves it, nobody sleeps."""

    def __init__(self, now: float):
        self.now, self.slept = now, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if not 0 <= seconds < math.inf:
            raise ValueError(f"Invalid value {seconds}")  # as time.sleep
        self.now += seconds


def shared_file_budget(folder):
    from gate.request_budget import FileBudget

    return FileBudget("datadog", folder / "shared")


def history_requests(fake, deployed_at: int) -> list[dict]:
    return [r for r in fake.timeseries_requests() if r["to"] // 1000 <= deployed_at]


# -- the canary's history is not asked when the judge learns from the baseline's ---------------


def test_the_history_asks_the_baseline_alone_and_learns_the_same(env_keys, corpus):
    case = load_case(corpus / AA)
    verdicts, histories = [], []
    for judge_says in (True, False):
        with FakeDatadog(case, clock=lambda: case.deployed_at + 1200) as fake:
            env_keys.setenv("GATE_DATADOG_URL", fake.url)
            from gate import judge

            judging = judge if judge_says else _Judge()  # a judge that does not say: both groups
            analysis = Analysis(datadog_policy(timeout=60), open_source(datadog_policy(timeout=60)), "web-1.0", case.deployed_at,
                                canary=CANARY, baseline=BASELINE, judge=judging)
            verdicts.append(analysis.evaluate(case.deployed_at + 1200).to_dict())
            histories.append(history_requests(fake, case.deployed_at))
    told, untold = histories
    assert len(told) == len(untold) == 7  # a week, a day a request (points per series)
    assert all(CANARY not in q for r in told for q in r["queries"])  # the new group's history: not asked
    assert all(any(CANARY in q for q in r["queries"]) for r in untold)
    assert sum(len(r["queries"]) for r in told) * 2 == sum(len(r["queries"]) for r in untold)
    assert verdicts[0] == verdicts[1]


class _Judge:
    """gate.judge without `learns_from`: a judge of the bench, say."""

    def learn(self, *args):
        from gate import judge

        return judge.learn(*args)

    def evaluate(self, *args):
        from gate import judge

        return judge.evaluate(*args)


# -- the organisation's request budget, shared by evaluations ---------------------------------


def test_an_evaluation_waits_for_the_window_another_one_spent_instead_of_being_refused(env_keys, corpus, tmp_path):
    """Two evaluations of one organisation (limit: 3 requests a minute), one after the other. The
    first spends the window; the second, told so by the shared budget, waits for the reset and is
    never refused. Without a shared budget the second is refused (429) before it waits."""
    case = load_case(corpus / AA)
    clock = SimulatedClock(case.deployed_at + 1205)
    with FakeDatadog(case, clock=clock) as fake:
        fake.rate_limit, fake.rate_period = 3, 60
        env_keys.setenv("GATE_DATADOG_URL", fake.url)
        budget = shared_file_budget(tmp_path)
        policy = datadog_policy(timeout=60)
        sources = []
        for _ in range(2):
            sources.append(budgeted_source(policy, clock, budget))
        first = Analysis(policy.model_copy(update={"history": 2 * 86400}), sources[0], "web-1.0", case.deployed_at,
                         canary=CANARY, baseline=BASELINE)
        first.evaluate(case.deployed_at + 1200)  # 2 days of history + the window: 3 requests
        second = Analysis(policy.model_copy(update={"history": 86400}), sources[1], "web-2.0", case.deployed_at,
                          canary=CANARY, baseline=BASELINE)
        verdict = second.evaluate(case.deployed_at + 1200)
    assert [r["status"] for r in fake.timeseries_requests()] == [200] * 5 and fake.refused == 0  # 3, then 2
    assert sum(clock.slept) == pytest.approx(60, abs=1)  # waited for the next window (it began at the first request)
    assert verdict.verdict in ("pass", "inconclusive")


def test_a_look_that_cannot_get_its_data_within_its_interval_could_not_judge_naming_the_budget(
        env_keys, corpus, tmp_path):
    case = load_case(corpus / AA)
    clock = SimulatedClock(case.deployed_at + 1205)
    with FakeDatadog(case, clock=clock) as fake:
        fake.rate_limit, fake.rate_period = 2, 3600  # the window resets long after the next look
        env_keys.setenv("GATE_DATADOG_URL", fake.url)
        budget = shared_file_budget(tmp_path)
        policy = datadog_policy(timeout=60).model_copy(update={"history": 86400})
        results = []
        for release in ("web-1.0", "web-2.0"):
            results.append(verdict_or_error(policy, case, release, clock, budget))
    assert results[0] in ("pass", "inconclusive")
    assert "request budget" in results[1] and "could not judge" in results[1]
    assert len(fake.timeseries_requests()) == 2 and fake.refused == 0  # the second sent nothing
    assert clock.slept == []  # nor waited for a reset past its interval


# -- through the Lambda: the stack's bucket and table, several containers ---------------------


@pytest.fixture
def stack(moto_endpoint, monkeypatch, tmp_path):  # noqa: F811
    create_store_table(TABLE)
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    monkeypatch.setenv("GATE_STORE_TABLE", TABLE)
    monkeypatch.setenv("GATE_REFERENCE_BUCKET", BUCKET)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "CanaryGateTest")
    monkeypatch.setenv("DD_API_KEY", API_KEY)
    monkeypatch.setenv("DD_APP_KEY", APP_KEY)
    for key in ("GATE_IDEMPOTENCY_TABLE", "GATE_SECRET_ID", "SLACK_WEBHOOK_URL", "GATE_REPORT_BUCKET", "DD_SITE"):
        monkeypatch.delenv(key, raising=False)
    containers = []

    def container(name: str):
        """A fresh Lambda container: its own import of the handler and its own /tmp."""
        module = import_handler(f"gate_lambda_scale_{name}")
        containers.append(module.__name__)

        def invoke(event: dict) -> dict:
            monkeypatch.setenv("GATE_CACHE_DIR", str(tmp_path / name / "gate-cache"))
            return module.lambda_handler(event, FakeContext())

        return invoke

    yield container
    for name in containers:
        sys.modules.pop(name, None)


def event(fake, release: str, minutes: int) -> dict:
    policy = yaml.safe_load((ROOT / "examples" / "datadog.yaml").read_text())
    policy["history"] = "2d"
    # Generous: a timeout on a loaded machine would be a retry, one request more than counted.
    policy["source"]["options"] = {"timeout": 60, "retry_budget": 2, "settle": 0}
    return {"release": release, "policy": policy, "deployed_at": iso(fake.deployed_at),
            "now": iso(fake.deployed_at + minutes * 60)}


def test_a_new_container_reads_the_history_another_one_learned(stack, corpus, monkeypatch):
    with live(corpus, AA, ahead=0) as fake:
        monkeypatch.setenv("GATE_DATADOG_URL", fake.url)
        first = stack("one")(event(fake, "web-1.0", 20))
        after_first = len(fake.timeseries_requests())
        second = stack("two")(event(fake, "web-1.0", 21))
        after_second = len(fake.timeseries_requests())
    assert first["verdict"] != "error" and second["verdict"] != "error", (first, second)
    assert after_first == 2 + 1  # two days of history, the window
    assert after_second - after_first == 1  # the window only: the history came from the bucket
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert len(keys) == 1 and keys[0].startswith("references/")


@pytest.mark.parametrize("damage", ["truncated", "another deploy's", "an older gate's pickle that runs code"])
def test_a_damaged_shared_entry_costs_a_refetch_never_a_wrong_verdict(stack, corpus, monkeypatch, damage, tmp_path):
    """The bucket's references/ is written by more than this code: an entry that is damaged, of
    another deploy, or a pickle (what entries were: reading one ran whatever it held, here the
    creation of a file) is relearned, the verdict the same, and the entry rewritten whole."""
    from tests.test_cache import RunsCode, entry

    marker = tmp_path / "code-ran"
    with live(corpus, AA, ahead=0) as fake:
        monkeypatch.setenv("GATE_DATADOG_URL", fake.url)
        clean = stack("clean")(event(fake, "web-1.0", 25))
        s3 = boto3.client("s3")
        key = s3.list_objects_v2(Bucket=BUCKET)["Contents"][0]["Key"]
        good = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        if damage == "truncated":
            bad = good[: len(good) // 2]
        elif damage == "another deploy's":  # a whole, valid entry of another deploy, under this key
            other = stack("other")(event(fake, "web-9.9", 25))
            assert other["verdict"] != "error"
            other_key = next(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"] if o["Key"] != key)
            bad = s3.get_object(Bucket=BUCKET, Key=other_key)["Body"].read()
        else:  # as the gate wrote them before, its checksum right, for this key
            bad = entry(key.removeprefix("references/"), pickle.dumps(RunsCode(marker)), magic=b"gate-reference/1\n")
        s3.put_object(Bucket=BUCKET, Key=key, Body=bad)
        before = len(fake.timeseries_requests())
        again = stack("fresh")(event(fake, "web-1.0", 25))
        refetched = len(fake.timeseries_requests()) - before
        repaired = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert not marker.exists()
    assert refetched == 2 + 1  # the history again, and the window
    assert {k: v for k, v in again.items()} == clean
    assert repaired == good  # the next one to learn it wrote it whole again


def test_an_upgraded_gate_learns_the_history_again(stack, corpus, monkeypatch):
    """A new container of an upgraded gate (another `learned_by`) does not read what the older
    one learned: it fetches the history again and shares its own entry beside the old one."""
    import gate.cache

    with live(corpus, AA, ahead=0) as fake:
        monkeypatch.setenv("GATE_DATADOG_URL", fake.url)
        older = stack("older")(event(fake, "web-1.0", 20))
        before = len(fake.timeseries_requests())
        monkeypatch.setattr(gate.cache, "learned_by", lambda: "an upgraded gate")
        upgraded = stack("upgraded")(event(fake, "web-1.0", 21))
        refetched = len(fake.timeseries_requests()) - before
    assert older["verdict"] != "error" and upgraded["verdict"] != "error", (older, upgraded)
    assert refetched == 2 + 1  # two days of history, the window
    assert len(boto3.client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]) == 2


def test_a_folder_entry_of_another_deploy_is_relearned_not_used(tmp_path):
    from tests.test_cache import SIMULATED_POLICY_JSON, learned, same, stored_entry

    cache = ReferenceCache(tmp_path)
    mine = cache.key("web-1.0", 1000, SIMULATED_POLICY_JSON, ("c", "b"))
    other = cache.key("web-1.0", 2000, SIMULATED_POLICY_JSON, ("c", "b"))
    stored_entry(cache, mine).write_bytes(pack(other, learned()))
    assert cache.load(mine) is None
    cache.save(mine, learned())
    assert same(cache.load(mine), learned()) is None


def test_concurrent_containers_share_one_budget_in_the_stack_table(stack, corpus, monkeypatch):
    """The organisation has 4 requests left this hour: the first release's look spends 3 (history and
    window), the second's, in another container, is could not judge at once (its history needs 2),
    saying the budget is why, without being refused by Datadog; the store has its error."""
    with live(corpus, AA, ahead=0) as fake:
        fake.rate_limit, fake.rate_period = 4, 3600
        monkeypatch.setenv("GATE_DATADOG_URL", fake.url)
        first = stack("one")(event(fake, "web-1.0", 20))
        second = stack("two")(event(fake, "web-2.0", 20))
    assert first["verdict"] in ("pass", "inconclusive"), first
    assert second["verdict"] == "error" and second["exit_code"] == 4 and second["statusCode"] == 503
    assert "request budget" in second["error"] and "could not judge" in second["error"]
    assert len(fake.timeseries_requests()) == 3 and fake.refused == 0  # the second's history needs 2: none sent
    from gate.store.dynamodb import DynamoStore

    assert [e["verdict"] for e in DynamoStore(TABLE).evaluations("web-2.0")] == ["error"]


def test_containers_taking_from_one_window_never_take_more_than_it_holds(moto_endpoint):  # noqa: F811
    """Twenty containers, one request each, a window of 8 left: 8 take one, 12 are told to wait
    for the reset; the item ends at 0. (One after the other: each take is one conditional write,
    atomic in DynamoDB; moto does not lock its tables, so truly concurrent takes could race there.)"""
    from gate.request_budget import DynamoBudget, Heard

    create_store_table(TABLE)
    DynamoBudget("datadog", TABLE).heard(1000.0, Heard(remaining=8, reset=30, limit=600, period=60))
    waits = [DynamoBudget("datadog", TABLE).take(1001.0) for _ in range(20)]
    assert sorted(waits) == [0.0] * 8 + [29.0] * 12
    item = boto3.client("dynamodb").get_item(TableName=TABLE, Key={"release": {"S": "#budget#datadog"},
                                                                   "sk": {"S": "budget"}})["Item"]
    assert item["remaining"]["N"] == "0"
    # After the reset the window is the provider's whole limit again, less the one taken.
    assert DynamoBudget("datadog", TABLE).take(1031.0) == 0.0
    assert boto3.client("dynamodb").get_item(TableName=TABLE, Key={"release": {"S": "#budget#datadog"},
                                                                   "sk": {"S": "budget"}})["Item"]["remaining"]["N"] == "599"


def test_cloudwatch_history_asks_the_baseline_alone_and_learns_the_same(moto_server, corpus):  # noqa: F811
    from datetime import UTC, datetime

    from gate.policy import parse_policy
    from tests.test_cloudwatch_moto import ASG, TARGET_GROUPS, policy_data, publish_case

    moto_server.reset()
    deployed_at, _ = publish_case(moto_server, corpus / "k1m-aa-079")
    policy = parse_policy(policy_data())
    verdicts, canary_queries = [], []
    for judging in (None, _Judge()):  # gate.judge (says it learns from the baseline), one that does not say
        source = open_source(policy)
        asked, send = [], source.client.get_metric_data
        source.client.get_metric_data = lambda **kw: (asked.append(kw), send(**kw))[1]
        analysis = Analysis(policy, source, "web-42", deployed_at, canary=ASG["canary"], baseline=ASG["baseline"],
                            **({"judge": judging} if judging else {}))
        verdicts.append(analysis.evaluate(deployed_at + 1200).to_dict())
        history = [kw for kw in asked if kw["EndTime"] <= datetime.fromtimestamp(deployed_at, UTC)]
        values = [d["Value"] for kw in history for q in kw["MetricDataQueries"]
                  for d in q["MetricStat"]["Metric"]["Dimensions"]]
        canary_queries.append(sum(v in (ASG["canary"], TARGET_GROUPS["canary"]) for v in values))
        assert history and any(v == ASG["baseline"] for v in values)
    assert canary_queries[0] == 0 and canary_queries[1] > 0
    assert verdicts[0] == verdicts[1]


def test_a_reset_sooner_than_the_known_one_is_the_provider_s():
    """A 429 saying the window resets in 1 s, where the answers before said 1800 s: the sooner
    reset is believed (waiting for the later one would hold every evaluation half an hour)."""
    from gate.request_budget import Heard, after, taken

    window = after(None, 1000.0, Heard(remaining=990, reset=1800, limit=1000, period=3600))
    same = after(window, 1005.5, Heard(remaining=989, reset=1795))
    assert (same.remaining, same.resets_at) == (989, 2800.0)  # the known reset (within a second), one fewer
    refused = after(window, 1010.0, Heard(remaining=0, reset=1))
    assert (refused.remaining, refused.resets_at) == (0, 1011.0)
    assert taken(refused, 1010.5) == (refused, 0.5)
    assert taken(refused, 1011.0)[1] == 0.0  # the window restarted whole: the provider's limit


def test_a_history_the_window_cannot_hold_sends_nothing_and_leaves_the_requests_to_others(
        env_keys, corpus, tmp_path):
    """5 requests left this hour. A first look (a day of history and the window) takes 2; a week
    of history (7 requests) cannot be had within its interval, so it sends none of them (could not
    judge, the budget named) rather than 3 it would waste; a third look still gets its 2."""
    case = load_case(corpus / AA)
    clock = SimulatedClock(case.deployed_at + 1205)
    with FakeDatadog(case, clock=clock) as fake:
        fake.rate_limit, fake.rate_period = 5, 3600
        env_keys.setenv("GATE_DATADOG_URL", fake.url)
        budget = shared_file_budget(tmp_path)
        results = []
        for release, days in (("web-1.0", 1), ("web-2.0", 7), ("web-3.0", 1)):
            policy = datadog_policy(timeout=60).model_copy(update={"history": days * 86400})
            results.append(verdict_or_error(policy, case, release, clock, budget))
    assert results[0] in ("pass", "inconclusive") and results[2] in ("pass", "inconclusive"), results
    assert "request budget" in results[1] and "could not judge" in results[1]
    assert len(fake.timeseries_requests()) == 4 and fake.refused == 0


# -- a budget that says nonsense holds nothing back for ever ----------------------------------


@pytest.mark.parametrize("text", [
    '{"remaining": 0, "resets_at": NaN}',
    '{"remaining": 0, "resets_at": 0, "limit": 1, "period": NaN}',
    '{"remaining": 0, "resets_at": Infinity}',
    '{"remaining": -1, "resets_at": 1e300, "limit": 1, "period": -60}',
])
def test_a_damaged_budget_file_is_as_if_nothing_was_heard(tmp_path, text):
    """json.loads accepts NaN: a window resetting at NaN made every wait NaN, and time.sleep(NaN)
    an internal error on every look until the file was deleted. Damaged, it holds nothing back,
    and the next answer heard replaces it."""
    from gate.request_budget import Heard, wait_for_request

    budget = shared_file_budget(tmp_path)
    budget.path.parent.mkdir(parents=True)
    budget.path.write_text(text)
    clock = SimulatedClock(1000.0)
    for _ in range(3):
        assert wait_for_request(budget, clock() + 60, clock, clock.sleep, "Datadog") == 0.0
    assert clock.slept == []
    budget.heard(clock(), Heard(remaining=5, reset=30, limit=10, period=60))
    assert json.loads(budget.path.read_text()) == {"remaining": 5, "resets_at": 1030.0, "limit": 10, "period": 60}


@pytest.mark.parametrize("backend", ["file", "dynamodb"])
@pytest.mark.parametrize("period", [60, None])
def test_a_reset_heard_further_than_a_window_is_cut_to_one(backend, period, tmp_path, request):
    """A Reset of 1e12 s (an epoch-style value from a proxy) held every request back for ever (the
    file) or a day (the item's TTL), no answer being asked to correct it. A reset is believed up to
    the window's period (an hour if it is not known): the look waits that long at most."""
    from gate.request_budget import DynamoBudget, Heard, wait_for_request

    if backend == "dynamodb":
        request.getfixturevalue("moto_endpoint")
        create_store_table(TABLE)
        budget = DynamoBudget("datadog", TABLE)
    else:
        budget = shared_file_budget(tmp_path)
    clock = SimulatedClock(1000.0)
    budget.heard(clock(), Heard(remaining=0, reset=1e12, limit=100, period=period))
    longest = period or 3600
    assert wait_for_request(budget, clock() + longest, clock, clock.sleep, "Datadog") == longest


@pytest.mark.parametrize("backend", ["file", "dynamodb"])
@pytest.mark.parametrize("stored, waited", [
    pytest.param({"remaining": 0, "resets_at": 1000.0 + 1.7e9, "limit": 100, "period": 60.0}, 0.0,
                 id="an epoch as a reset"),
    pytest.param({"remaining": 0, "resets_at": 1000.0 + 3599, "limit": 100, "period": 60.0}, 0.0,
                 id="an hour, of a minute's window"),
    pytest.param({"remaining": 0, "resets_at": 1000.0 + 1e7}, 0.0, id="months, of a window of unknown size"),
    pytest.param({"remaining": 0, "resets_at": 1000.0 + 45, "limit": 100, "period": 60.0}, 45.0,
                 id="within its period: waited for"),
    pytest.param({"remaining": 0, "resets_at": 1000.0 + 3000}, 3000.0, id="within an hour, period unknown: waited for"),
])
def test_a_stored_window_resetting_further_than_its_period_holds_nothing_back(
        backend, stored, waited, tmp_path, request):
    """A budget stored by an older build (which believed any Reset) or by hand, saying it resets
    in 54 years, or in an hour for a window of a minute, held every request back until then (the
    file until deleted, the item until its TTL), no answer being asked to correct it. Read, a
    window is believed up to its period (an hour if unknown): beyond, it is as if nothing was
    heard, and the next answer replaces it."""
    from gate.request_budget import DynamoBudget, Heard, wait_for_request

    if backend == "dynamodb":
        request.getfixturevalue("moto_endpoint")
        create_store_table(TABLE)
        budget = DynamoBudget("datadog", TABLE)
        boto3.client("dynamodb").put_item(TableName=TABLE, Item={
            **budget.key, "version": {"N": "7"}, **{k: {"N": repr(v)} for k, v in stored.items()}})
    else:
        budget = shared_file_budget(tmp_path)
        budget.path.parent.mkdir(parents=True)
        budget.path.write_text(json.dumps(stored))
    clock = SimulatedClock(1000.0)
    assert wait_for_request(budget, clock() + 3600, clock, clock.sleep, "Datadog") == waited
    if waited:
        return
    budget.heard(clock(), Heard(remaining=5, reset=30, limit=10, period=60))
    assert wait_for_request(budget, clock() + 60, clock, clock.sleep, "Datadog", count=6) == 30.0  # the answer's window


def test_a_look_waits_for_the_budget_no_longer_than_the_lambda_can(env_keys, corpus, tmp_path):
    """An interval of 5 minutes, the window resetting in 150 s: the look waited for it, past what a
    Lambda (Timeout 300 s) can sleep, and was killed. It waits 100 s at most:
    could not judge, the budget named, nothing slept."""
    from gate.request_budget import Heard

    case = load_case(corpus / AA)
    clock = SimulatedClock(case.deployed_at + 1205)
    with FakeDatadog(case, clock=clock) as fake:
        fake.rate_limit, fake.rate_period = 2, 150
        env_keys.setenv("GATE_DATADOG_URL", fake.url)
        budget = shared_file_budget(tmp_path)
        budget.heard(clock(), Heard(remaining=0, reset=150, limit=2, period=150))
        policy = datadog_policy(timeout=60).model_copy(update={"interval": 300})
        analysis = Analysis(policy, budgeted_source(policy, clock, budget), "web-1.0", case.deployed_at, canary=CANARY, baseline=BASELINE)
        with pytest.raises(SourceError, match="request budget.*could not judge"):
            analysis.evaluate(case.deployed_at + 1200)
    assert fake.timeseries_requests() == [] and clock.slept == []


@pytest.mark.parametrize("wait", [math.nan, math.inf])
def test_a_wait_that_means_nothing_is_no_wait(wait):
    """Whatever a budget backend says, a NaN or infinite wait never reaches time.sleep (nor an endless BudgetSpent)."""
    from gate.request_budget import wait_for_request

    class Nonsense:
        def take(self, now, count=1):
            return wait

    clock = SimulatedClock(1000.0)
    assert wait_for_request(Nonsense(), clock() + 60, clock, clock.sleep, "Datadog") == 0.0
    assert clock.slept == []


def budgeted_source(policy, clock, budget):
    """The policy's Datadog source on the simulated clock, spending from `budget`."""
    source = open_source(policy)
    source.clock_wall, source.sleep, source.request_budget = clock, clock.sleep, budget
    return source


def verdict_or_error(policy, case, release, clock, budget) -> str:
    """One look, 20 minutes in, of a release through the shared budget: its verdict, or the
    message of the SourceError that refused it."""
    analysis = Analysis(policy, budgeted_source(policy, clock, budget), release, case.deployed_at,
                        canary=CANARY, baseline=BASELINE)
    try:
        return analysis.evaluate(case.deployed_at + 1200).verdict
    except SourceError as e:
        return str(e)


# -- the analyzer's role: what the cache and the budget call, and no more ------------------------


def recording_client(service: str, calls: list):
    """A boto3 client that records each call as (IAM action, resource ARN, condition context)."""
    client = boto3.client(service)

    def record(model, params, **kwargs):
        if service == "s3":
            calls.append((f"s3:{model.name}", f"arn:aws:s3:::{params['Bucket']}/{params['Key']}", {}))
        elif model.name == "TransactWriteItems":  # IAM asks for each item's own action
            for item in params["TransactItems"]:
                (kind, write), = item.items()
                key = write.get("Key") or write.get("Item")
                action = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                          "ConditionCheck": "ConditionCheckItem"}[kind]
                table = f"arn:aws:dynamodb:us-east-1:123456789012:table/{write['TableName']}"
                calls.append((f"dynamodb:{action}", table, {"dynamodb:LeadingKeys": [key["release"]["S"]]}))
        else:
            key = params.get("Key") or params.get("Item") or {"release": params["ExpressionAttributeValues"][":r"]}
            calls.append((f"dynamodb:{model.name}", f"arn:aws:dynamodb:us-east-1:123456789012:table/{params['TableName']}",
                          {"dynamodb:LeadingKeys": [key["release"]["S"]]}))

    client.meta.events.register(f"before-parameter-build.{service}", record)
    return client


def role_allows(statements: list[dict], action: str, resource: str, context: dict) -> bool:
    """IAM's answer (Allow statements; StringEquals, StringLike and ForAllValues:StringLike; any
    other condition is taken as not met)."""
    from fnmatch import fnmatchcase

    def met(operator: str, key: str, patterns) -> bool:
        patterns = patterns if isinstance(patterns, list) else [patterns]
        values = context.get(key)
        values = values if isinstance(values, list) else [values]
        match = {"StringEquals": lambda v, p: v == p, "StringLike": fnmatchcase}.get(operator.split(":")[-1])
        if match is None or operator.split(":")[0] not in ("ForAllValues", operator) or values == [None]:
            return False
        return all(any(match(v, p) for p in patterns) for v in values)

    for s in statements:
        if s["Effect"] == "Allow" and any(fnmatchcase(action, a) for a in s["Action"]) \
                and any(fnmatchcase(resource, r) for r in s["Resource"]) \
                and all(met(op, k, p) for op, keys in s.get("Condition", {}).items() for k, p in keys.items()):
            return True
    return False


def analyzer_statements() -> list[dict]:
    """The analyzer role's statements as deployed in the test account (this module's bucket and table)."""
    from tests.test_infra import transformed

    arns = {"ReportsBucket.Arn": f"arn:aws:s3:::{BUCKET}",
            "EvaluationsTable.Arn": f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}"}

    def resolve(value):
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            return arns.get(".".join(value["Fn::GetAtt"]), "unresolved")
        if isinstance(value, dict) and "Fn::Sub" in value and isinstance(value["Fn::Sub"], str):
            return re.sub(r"\$\{([^}]+)\}", lambda m: arns.get(m[1], "unresolved"), value["Fn::Sub"])
        return value if isinstance(value, str) else "unresolved"

    role = transformed()["Resources"]["AnalyzerFunctionRole"]["Properties"]
    listed = lambda v: v if isinstance(v, list) else [v]  # noqa: E731
    return [{**s, "Action": listed(s["Action"]), "Resource": [resolve(r) for r in listed(s["Resource"])]}
            for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]


def test_the_analyzer_role_allows_what_the_cache_and_the_budget_call(moto_endpoint, monkeypatch):  # noqa: F811
    """Every path of the shared cache (miss, write once, hit, a damaged entry rewritten) and of the
    budget (nothing heard, an answer, a take in place, an empty window, its reset) on moto, each call
    checked against the role infra/template.yaml gives the analyzer: all allowed, and the budget's
    in-place update allowed on its own item only."""
    from gate.cache import S3ReferenceCache
    from gate.request_budget import DynamoBudget, Heard
    from tests.test_cache import SIMULATED_POLICY_JSON, learned

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    create_store_table(TABLE)
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    calls: list = []
    cache = S3ReferenceCache(BUCKET, client=recording_client("s3", calls))
    key = cache.key("web-1.0", 1000, SIMULATED_POLICY_JSON, ("c", "b"))
    assert cache.load(key) is None
    cache.save(key, learned())
    boto3.client("s3").put_object(Bucket=BUCKET, Key=f"references/{key}", Body=b"damaged")
    again = S3ReferenceCache(BUCKET, client=cache.client)
    assert again.load(key) is None
    again.save(key, learned())
    assert again.load(key) is not None
    budget = DynamoBudget("datadog", TABLE, client=recording_client("dynamodb", calls))
    assert budget.take(1000.0) == 0.0
    budget.heard(1000.0, Heard(remaining=1, reset=30, limit=10, period=60))
    budget.heard(1000.5, Heard(remaining=1, reset=30))
    assert budget.take(1001.0) == 0.0 and budget.take(1002.0) == 28.0 and budget.take(1031.0) == 0.0

    statements = analyzer_statements()
    assert [c for c in calls if not role_allows(statements, *c)] == []
    assert {a for a, _, _ in calls} == {"s3:GetObject", "s3:PutObject", "dynamodb:GetItem", "dynamodb:PutItem",
                                        "dynamodb:UpdateItem"}

    # The budget's own statement updates its item only (the store's statement updates release
    # items too: a restart, and each record moving its release item's expiry).
    budget_only = [s for s in statements if s.get("Sid") != "EvaluationStore"]
    table = f"arn:aws:dynamodb:us-east-1:123456789012:table/{TABLE}"
    assert not role_allows(budget_only, "dynamodb:UpdateItem", table, {"dynamodb:LeadingKeys": ["web-1.0"]})


def test_the_analyzer_role_allows_what_the_store_calls(moto_endpoint, monkeypatch):  # noqa: F811
    """Every write and read of the DynamoDB store (a registration, records of each kind, a
    restart with its redeploy event in one transaction), each call checked against the analyzer's
    role: a restart's UpdateItem was not allowed (every redeploy in the Lambda: AccessDenied)."""
    from gate.store.dynamodb import DynamoStore
    from tests.test_store_dynamodb import verdict

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    create_store_table(TABLE)
    calls: list = []
    store = DynamoStore(TABLE, client=recording_client("dynamodb", calls))
    store.start_release("web-1.0", 1_000, {"deploy": 1})
    store.record(verdict("web-1.0", 1_060))
    store.record_error("web-1.0", 1_120, "no data")
    store.record_event("web-1.0", "notification", {"deploy": 1})
    store.record_traffic("web-1.0", {"step": 1, "set_at": 1_000, "weights": {}, "deploy": 1})
    assert store.restart_release("web-1.0", 9_000, {"deploy": 2}, previous=1_000) == 9_000
    assert store.evaluations("web-1.0") and store.events("web-1.0") and store.traffic("web-1.0")

    assert [c for c in calls if not role_allows(analyzer_statements(), *c)] == []
    assert {a for a, _, _ in calls} >= {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                                        "dynamodb:Query"}


@contextmanager
def _window_spent_by_others(env_keys, corpus, tmp_path):
    """A deploy's analysis (store kept) whose first look finds the organisation's window (2
    requests a minute) spent by other evaluations for 40 s; the history takes 2 requests, the
    window 1. Yields (analysis, clock, policy)."""
    from gate.request_budget import Heard
    from gate.store import SqliteStore

    case = load_case(corpus / AA)
    clock = SimulatedClock(case.deployed_at + 1220)
    policy = datadog_policy(timeout=60).model_copy(update={"history": 2 * 86400})
    with FakeDatadog(case, clock=clock) as fake:
        env_keys.setenv("GATE_DATADOG_URL", fake.url)
        budget = shared_file_budget(tmp_path)
        fake.rate_limit, fake.rate_period = 2, 60
        fake.rate_origin, fake._window = 0.0, (int(clock()) // 60, 2)  # windows on the minute
        budget.heard(clock(), Heard(remaining=0, reset=60 - clock() % 60, limit=2, period=60))
        yield (Analysis(policy, budgeted_source(policy, clock, budget), "web-1.0", case.deployed_at,
                        canary=CANARY, baseline=BASELINE, store=SqliteStore(tmp_path / "gate.sqlite")),
               clock, policy)


def test_a_watch_goes_on_past_a_look_the_budget_could_not_serve(env_keys, corpus, tmp_path):
    """Review of issue 26: `gate check --watch` (the Jenkins step's mode) ended as could not judge
    at its first look when other evaluations had spent the organisation's window past that look's
    deadline, though the message says the next look asks again. The look is recorded as an error
    and the watch goes on; here it passes later, as a watch did before the one-deadline look."""
    with _window_spent_by_others(env_keys, corpus, tmp_path) as (analysis, clock, _):
        start = int(clock.now) // 60 * 60
        evaluation, _ = analysis.watch(wait=lambda t: setattr(clock, "now", max(clock.now, t)), start=start)
    assert evaluation.verdict.verdict == "pass", evaluation.verdict.reason
    errors = [r for r in analysis.store.evaluations("web-1.0") if r["verdict"] == "error"]
    assert errors and "request budget" in errors[0]["reason"]


def test_a_rollout_step_fetches_the_deploys_history_within_its_look_and_records_a_failure(env_keys, corpus, tmp_path):
    """Review of issue 26: a rollout step fetched the deploy's history outside its look, so the
    history and the window had a deadline each (a look 100 s long on a 60 s interval), and a
    history the budget could not serve raised before the look's error was recorded (no record)."""
    from types import SimpleNamespace

    from gate.request_budget import BudgetSpent
    from gate.rollout import Rollout

    with _window_spent_by_others(env_keys, corpus, tmp_path) as (release, clock, policy):
        machine = SimpleNamespace(release=release, step_policy=policy, dry_run=False, deploy=None)
        step = Rollout.step_analysis(machine, {"set_at": release.deployed_at, "step": 1})
        started = clock.now
        with pytest.raises(BudgetSpent):
            step.evaluation(int(started) // 60 * 60)
    assert clock.now - started <= policy.interval  # one deadline for the history and the window
    [record] = release.store.evaluations("web-1.0")
    assert record["verdict"] == "error" and "request budget" in record["reason"]
