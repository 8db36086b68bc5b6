"""lambda/handler.py in-process, with a fake Lambda context and AWS on a moto server."""

from __future__ import annotations

import base64
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import boto3
import pytest

from gate.analysis import Analysis
from gate.sources.replay import ReplaySource, load_case
from gate.store import SqliteStore
from gate.verdict import Verdict, iso, parse_time
from tests.lambda_module import FakeContext, import_handler
from tests.moto_server import moto_server  # noqa: F401 - fixture
from tests.test_store_dynamodb import create_store_table, moto_endpoint  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[1]
SECRETS = {"DD_API_KEY": "dd-api-key-3f9a1c77e0", "DD_APP_KEY": "dd-app-key-b81d44aa92",
           "SLACK_WEBHOOK_URL": "https://hooks.slack.invalid/services/T000/B000/sekrit-9d2e"}


@pytest.fixture
def handler(monkeypatch, tmp_path):
    """A fresh import of the handler (its caches are per container), with a local SQLite store."""
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "CanaryGateTest")
    monkeypatch.setenv("GATE_STORE", str(tmp_path / "gate.sqlite"))
    for key in ("GATE_STORE_TABLE", "GATE_IDEMPOTENCY_TABLE", "GATE_SECRET_ID", *SECRETS):
        monkeypatch.delenv(key, raising=False)
    from aws_lambda_powertools.utilities import parameters

    # A new container starts with none of powertools' providers: one kept by an earlier test holds
    # that test's endpoint (a server that never answers, test_aws_timeouts) and its cached values.
    parameters.clear_caches()
    module = import_handler("gate_lambda_handler", replays=True)
    yield module
    sys.modules.pop("gate_lambda_handler", None)
    parameters.clear_caches()


def case_event(corpus: Path, name: str, only: tuple[str, ...] = (), **extra) -> dict:
    """An event judging a recorded case at the end of its lifetime (so the verdict is final)."""
    case = load_case(corpus / name)
    policy = case.policy().model_dump(mode="json", exclude_none=True)
    if only:
        policy["metrics"] = [m for m in policy["metrics"] if m["name"] in only]
    return {"release": name, "policy": policy, "canary": "canary", "baseline": "baseline",
            "deployed_at": iso(case.deployed_at), "now": iso(case.end_at), "examine_past": True, **extra}


def expected_verdict(corpus: Path, event: dict) -> Verdict:
    from gate.policy import parse_policy
    from gate.verdict import parse_time

    case = load_case(corpus / event["release"])
    analysis = Analysis(parse_policy(event["policy"]), ReplaySource(case), event["release"], case.deployed_at,
                        canary="canary", baseline="baseline")
    # The Lambda registers the deploy (the first of the release: 1) and its verdict names it.
    return replace(analysis.evaluate(parse_time(event["now"])), deploy=1)


# -- verdicts ---------------------------------------------------------------------------------


def test_a_dead_canary_fails_with_the_same_json_as_the_cli(handler, corpus):
    event = case_event(corpus, "k1m-canary-down-012")
    result = handler.lambda_handler(event, FakeContext())
    assert result["verdict"] == "fail" and result["exit_code"] == 1 and result["final"] is True
    assert result["interval_seconds"] == 60  # the policy's: when the Step Functions loop asks again
    expected = expected_verdict(corpus, event).to_dict()
    assert result["same_deploy"] == {"deployed_at": result["deployed_at"]}  # what a loop pins
    assert {k: v for k, v in result.items() if k not in ("exit_code", "interval_seconds", "same_deploy")} == expected
    assert json.loads(json.dumps(result)) == result


def test_an_aa_canary_passes(handler, corpus):
    result = handler.lambda_handler(case_event(corpus, "k1m-aa-000", only=("cpu",)), FakeContext())
    assert (result["verdict"], result["exit_code"]) == ("pass", 0)
    assert [m["name"] for m in result["metrics"]] == ["cpu"]


def test_the_deploy_time_comes_from_the_store_when_the_event_has_none(handler, corpus, tmp_path):
    event = case_event(corpus, "k1m-canary-down-012")
    first = {**event, "now": event["deployed_at"]}
    first.pop("deployed_at")
    handler.lambda_handler(first, FakeContext())  # registers the release at its first evaluation
    later = {k: v for k, v in event.items() if k != "deployed_at"}
    result = handler.lambda_handler(later, FakeContext())
    assert result["deployed_at"] == event["deployed_at"]
    assert result["verdict"] == "fail"
    store = SqliteStore(tmp_path / "gate.sqlite")
    assert [r["verdict"] for r in store.evaluations("k1m-canary-down-012")][-1] == "fail"


def test_without_now_the_moment_is_the_current_interval(handler, corpus, monkeypatch):
    import time
    from types import SimpleNamespace

    from gate.verdict import parse_time

    event = case_event(corpus, "k1m-canary-down-012")
    event.pop("now")
    interval_start = parse_time(event["deployed_at"]) + 20 * 60  # a whole minute: on the policy's grid
    # The clock reads 47 s into that interval: the moment judged is the interval's start.
    monkeypatch.setattr(handler, "time", SimpleNamespace(time=lambda: interval_start + 47.9,
                                                         perf_counter=time.perf_counter))
    result = handler.lambda_handler(event, FakeContext())
    assert result["evaluated_at"] == iso(interval_start)
    expected = expected_verdict(corpus, {**event, "now": iso(interval_start)})
    assert {k: v for k, v in result.items() if k not in ("exit_code", "interval_seconds", "same_deploy")} == expected.to_dict()
    assert result["exit_code"] == expected.exit_code


# -- bad input: 400 naming the field, exit 4, never a pass --------------------------------------


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda e: e.pop("release"), "release: Field required"),
        (lambda e: e.update(release=""), "release: String should have at least 1 character"),
        (lambda e: e.update(policy=42), "policy: "),
        (lambda e: e.update(now="yesterday"), "now: 'yesterday' is not a moment"),
        (lambda e: e.update(deployed_at=True), "deployed_at: "),
        (lambda e: e.update(deployed_at=1e400), "deployed_at: inf is not a moment"),
        (lambda e: e.update(deployed_at=-5), "deployed_at: '-5' is not a moment"),
        (lambda e: e.update(deployed_at="2017-05-24T15:42:00"), "deployed_at: '2017-05-24T15:42:00' has no time zone"),
        (lambda e: e.update(now="2017-05-24T16:42:00"), "now: '2017-05-24T16:42:00' has no time zone"),
        (lambda e: e.update(examine_past="yes"), "examine_past: Input should be a valid boolean"),
        (lambda e: e.pop("examine_past"), "the canary window of a deploy then ended at 2017-05-27T05:44:00Z, "
                                          "before now"),
        (lambda e: e.update(canery="x"), "canery: Extra inputs are not permitted"),
        (lambda e: e["policy"].pop("metrics"), "metrics: Field required"),
        (lambda e: e["policy"].update(interval="soon"), "interval: 'soon' is not a duration"),
        (lambda e: e.update(policy="ftp://x/y"), "policy: expected a mapping, s3://bucket/key or ssm:/name"),
        # review (fail-open sweep): an action that is no name was a 500 (TypeError: unhashable
        # type: 'list'); an SSM reference without a name went to AWS
        (lambda e: e.update(action=[1]), "action: '[1]' is not evaluate, plan or backtest"),
        (lambda e: e.update(action={"plan": 1}), "action: "),
        (lambda e: e.update(policy="ssm:"), "policy: 'ssm:' names no parameter (ssm:/name)"),
        # issue 15: a release the Jenkins step would have passed as an option; a canary judged
        # against itself; a policy nested deeper than a policy can be
        (lambda e: e.update(release="--help"), "release: must not start with '-'"),
        (lambda e: e.update(baseline="canary"), "are the same group: the canary would be compared with itself"),
        (lambda e: e["policy"]["metrics"][0].update(queries={"cloudwatch": nested(40)}),
         "nested more than 32 levels deep"),
    ],
)
def test_a_bad_event_is_a_400_naming_the_field(handler, corpus, change, field):
    event = case_event(corpus, "k1m-canary-down-012")
    change(event)
    result = handler.lambda_handler(event, FakeContext())
    assert result["statusCode"] == 400
    assert result["verdict"] == "error" and result["exit_code"] == 4
    assert field in result["error"], result["error"]
    assert "\n" not in result["error"] and "Traceback" not in result["error"]


@pytest.mark.parametrize("change, field", [
    (lambda cpu, options: cpu["queries"].update(datadog={"query": "avg:system.cpu.user{$scope}",
                                                        "formula": "q * 1" + "0" * 400}),
     "metrics.cpu.queries.datadog.formula: "),
    (lambda cpu, options: options.update(timeout=1e308 * 10), "source.options.timeout: "),
], ids=["formula past a float", "timeout inf"])
def test_a_datadog_policy_the_source_cannot_read_is_a_400_naming_the_field(handler, corpus, monkeypatch,
                                                                           change, field):
    """Review (sources): a formula constant past a float's range was a 500 `internal error:
    OverflowError`; `timeout: .inf` failed every look naming no field. Both are the policy's fault:
    a 400 naming the field, before any request (the fake Datadog counts none)."""
    import yaml

    from tests.fake_datadog import API_KEY, APP_KEY, FakeDatadog

    policy = yaml.safe_load((ROOT / "examples" / "datadog.yaml").read_text())
    (cpu,) = [m for m in policy["metrics"] if m["name"] == "cpu"]
    change(cpu, policy["source"]["options"])
    case = load_case(corpus / "k1m-aa-039")
    with FakeDatadog(case) as fake:
        monkeypatch.setenv("GATE_DATADOG_URL", fake.url)
        monkeypatch.setenv("DD_API_KEY", API_KEY)
        monkeypatch.setenv("DD_APP_KEY", APP_KEY)
        event = {"release": "web-1", "policy": policy, "deployed_at": iso(case.deployed_at),
                 "now": iso(case.deployed_at + 600), "examine_past": True}
        result = handler.lambda_handler(event, FakeContext())
    assert (result["statusCode"], result["verdict"], result["exit_code"]) == (400, "error", 4), result
    assert field in result["error"] and "OverflowError" not in result["error"], result["error"]
    assert fake.requests == []


def test_now_ahead_of_the_clock_is_refused_and_registers_nothing(handler, corpus, tmp_path):
    """Issue 17.7: `now` at the end of the lifetime while the clock was short gave a final pass
    early; a first call with a future `now` registered a deploy in the future."""
    import time

    event = case_event(corpus, "k1m-canary-down-012", now=iso(int(time.time()) + 300))
    event.pop("deployed_at")
    result = handler.lambda_handler(event, FakeContext())
    assert (result["statusCode"], result["exit_code"]) == (400, 4), result
    assert result["error"].startswith("now: ") and "is in the future" in result["error"]
    assert SqliteStore(tmp_path / "gate.sqlite").release("k1m-canary-down-012") is None


def test_a_deploy_time_stored_in_the_future_is_a_400_not_a_wait_until_2100(handler, corpus, tmp_path):
    event = case_event(corpus, "k1m-canary-down-012")
    event.pop("deployed_at")
    SqliteStore(tmp_path / "gate.sqlite").start_release(event["release"], 4_102_444_800, {})
    result = handler.lambda_handler(event, FakeContext())
    assert (result["statusCode"], result["exit_code"]) == (400, 4), result
    assert "registered as deployed at 2100-01-01T00:00:00Z, in the future" in result["error"]


def test_another_policy_for_the_same_deploy_is_a_400(handler, corpus):
    """Issue 17.6: the policy edited under a running canary (lifetime 1 h -> 20 m) used to turn
    failing regressions into passes."""
    event = case_event(corpus, "k1m-canary-down-012")
    event["now"] = event["deployed_at"]  # its first minute
    assert handler.lambda_handler(event, FakeContext())["verdict"] == "inconclusive"
    shorter = {**event, "policy": {**event["policy"], "lifetime": "20m"}}
    result = handler.lambda_handler(shorter, FakeContext())
    assert (result["statusCode"], result["exit_code"]) == (400, 4), result
    assert "differs from the policy release 'k1m-canary-down-012' was registered with" in result["error"]


def test_a_damaged_store_row_is_a_503_naming_it(handler, corpus, tmp_path):
    import sqlite3

    event = case_event(corpus, "k1m-canary-down-012")
    store = SqliteStore(tmp_path / "gate.sqlite")
    store.start_release(event["release"], 1_000, {})
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE releases SET deployed_at = 'soon'")
    result = handler.lambda_handler(event, FakeContext())
    assert (result["statusCode"], result["exit_code"]) == (503, 4), result
    assert "release 'k1m-canary-down-012' is damaged: its deploy time (deployed_at) is 'soon'" in result["error"]


@pytest.mark.parametrize("event", [None, [], "release", 3])
def test_an_event_that_is_not_an_object_is_a_400(handler, event):
    result = handler.lambda_handler(event, FakeContext())
    assert (result["statusCode"], result["exit_code"]) == (400, 4)
    assert result["error"].startswith("event: expected a JSON object")


def test_a_source_that_cannot_answer_is_could_not_judge_not_a_pass(handler, corpus, tmp_path):
    event = case_event(corpus, "k1m-aa-000", only=("cpu",))
    event["policy"]["source"]["options"]["case"] = str(tmp_path / "gone")
    result = handler.lambda_handler(event, FakeContext())
    assert result["verdict"] == "error" and result["exit_code"] == 4 and result["statusCode"] == 503
    assert "could not judge" in result["error"] and "gone" in result["error"]


def test_a_crash_is_an_internal_error_not_a_pass(handler, corpus, monkeypatch):
    def explode(*args, **kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(handler, "open_source", explode)
    result = handler.lambda_handler(case_event(corpus, "k1m-aa-000", only=("cpu",)), FakeContext())
    assert (result["statusCode"], result["verdict"], result["exit_code"]) == (500, "error", 4)
    assert result["error"] == "internal error: ZeroDivisionError: boom"


# -- HTTP: Function URL / API Gateway ----------------------------------------------------------


def test_a_function_url_request_gets_an_http_response(handler, corpus):
    body = json.dumps(case_event(corpus, "k1m-canary-down-012")).encode()
    event = {"version": "2.0", "rawPath": "/", "requestContext": {"http": {"method": "POST"}},
             "body": base64.b64encode(body).decode(), "isBase64Encoded": True}
    response = handler.lambda_handler(event, FakeContext())
    assert response["statusCode"] == 200
    assert response["headers"]["content-type"] == "application/json"
    result = json.loads(response["body"])
    assert (result["verdict"], result["exit_code"]) == ("fail", 1)
    assert "statusCode" not in result


@pytest.mark.parametrize(
    ("body", "message"),
    [("{not json", "body: not valid JSON"), (json.dumps({"policy": {}}), "release: Field required")],
)
def test_a_bad_http_request_is_a_400_response(handler, body, message):
    response = handler.lambda_handler({"body": body, "isBase64Encoded": False}, FakeContext())
    assert response["statusCode"] == 400
    result = json.loads(response["body"])
    assert result["exit_code"] == 4 and message in result["error"]


# -- with AWS (moto server): policy references, idempotency, secrets, DynamoDB store ------------


def test_the_policy_can_come_from_s3_or_ssm(handler, corpus, moto_endpoint):  # noqa: F811
    event = case_event(corpus, "k1m-canary-down-012")
    text = json.dumps(event["policy"])
    boto3.client("s3").create_bucket(Bucket="policies")
    boto3.client("s3").put_object(Bucket="policies", Key="web/policy.yaml", Body=text.encode())
    boto3.client("ssm").put_parameter(Name="/canary-gate/web", Value=text, Type="String")
    for reference in ("s3://policies/web/policy.yaml", "ssm:/canary-gate/web"):
        result = handler.lambda_handler({**event, "policy": reference}, FakeContext())
        assert (result["verdict"], result["exit_code"]) == ("fail", 1), result
    missing = handler.lambda_handler({**event, "policy": "s3://policies/nope.yaml"}, FakeContext())
    assert missing["statusCode"] == 400 and "s3://policies/nope.yaml: NoSuchKey" in missing["error"]


# What S3 and SSM may answer while the policy is read: a fault of the moment is a 503 (the loop
# asks again), a missing or forbidden policy a 400 (final).
FAULTS = [
    ("SlowDown", 503, 503), ("InternalError", 500, 503), ("ServiceUnavailable", 503, 503),
    ("ThrottlingException", 400, 503), ("InternalServerError", 500, 503), ("TooManyRequestsException", 429, 503),
    ("NoSuchKey", 404, 400), ("AccessDenied", 403, 400), ("ParameterNotFound", 400, 400),
    ("AccessDeniedException", 400, 400),
]


def stubbed(service: str, fault):
    """A client of `service` whose next call fails with `fault`: (code, HTTP status) or an exception."""
    from botocore.config import Config
    from botocore.stub import Stubber

    client = boto3.session.Session().client(service, region_name="us-east-1", aws_access_key_id="x",
                                            aws_secret_access_key="x", config=Config(retries={"max_attempts": 1}))
    if isinstance(fault, Exception):
        def fail(**kwargs):
            raise fault
        client.meta.events.register("before-send", fail)
        return client
    stubber = Stubber(client)
    code, status = fault
    operation = "get_object" if service == "s3" else "get_parameter"
    stubber.add_client_error(operation, service_error_code=code, service_message=f"{code}!", http_status_code=status)
    stubber.activate()
    return client


def connection_faults():
    from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

    return [EndpointConnectionError(endpoint_url="https://127.0.0.1:9"),
            ReadTimeoutError(endpoint_url="https://127.0.0.1:9"), ConnectTimeoutError(endpoint_url="https://127.0.0.1:9")]


def policy_behind(handler, monkeypatch, where: str, client, name: str) -> str:
    """A policy reference whose store (S3 or SSM) is the given stubbed client."""
    if where == "s3":
        real_client = boto3.client
        monkeypatch.setattr(boto3, "client", lambda service, *a, **k: client if service == "s3" else real_client(service, *a, **k))
        return "s3://gate-reports/policies/web.yaml"
    from aws_lambda_powertools.utilities.parameters import base

    monkeypatch.setitem(base.DEFAULT_PROVIDERS, "ssm", handler.parameters.SSMProvider(boto3_client=client))
    return f"ssm:/canary-gate/{name}"


@pytest.mark.parametrize(("code", "status", "expected"), FAULTS)
@pytest.mark.parametrize("where", ["s3", "ssm"])
def test_a_policy_store_fault_of_the_moment_is_503_a_missing_policy_400(handler, corpus, monkeypatch,
                                                                         where, code, status, expected):
    event = case_event(corpus, "k1m-aa-000", only=("cpu",))
    reference = policy_behind(handler, monkeypatch, where, stubbed(where, (code, status)), code.lower())
    result = handler.lambda_handler({**event, "policy": reference}, FakeContext())
    assert (result["statusCode"], result["verdict"], result["exit_code"]) == (expected, "error", 4), result
    assert reference in result["error"] and code in result["error"]
    assert result["error"].startswith("could not judge: policy: cannot read" if expected == 503 else "policy: cannot read")


@pytest.mark.parametrize("fault", range(3))
@pytest.mark.parametrize("where", ["s3", "ssm"])
def test_an_unreachable_policy_store_is_503(handler, corpus, monkeypatch, where, fault):
    event = case_event(corpus, "k1m-aa-000", only=("cpu",))
    reference = policy_behind(handler, monkeypatch, where, stubbed(where, connection_faults()[fault]),
                              f"unreachable-{fault}")
    result = handler.lambda_handler({**event, "policy": reference}, FakeContext())
    assert (result["statusCode"], result["exit_code"]) == (503, 4), result
    assert "127.0.0.1:9" in result["error"] and reference in result["error"]


def create_idempotency_table(name: str) -> None:
    """As infra/template.yaml declares it: id (hash), TTL expiration."""
    client = boto3.client("dynamodb")
    client.create_table(TableName=name, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                        BillingMode="PAY_PER_REQUEST")


@pytest.fixture
def aws_tables(moto_endpoint, monkeypatch):  # noqa: F811
    create_store_table("gate-evaluations")
    create_idempotency_table("gate-idempotency")
    monkeypatch.setenv("GATE_STORE_TABLE", "gate-evaluations")
    monkeypatch.setenv("GATE_IDEMPOTENCY_TABLE", "gate-idempotency")
    from gate.store.dynamodb import DynamoStore

    return DynamoStore("gate-evaluations")


def test_a_retried_invocation_is_judged_once(handler, corpus, aws_tables, monkeypatch, capfd):
    judged = []
    real_judge = handler.judge
    monkeypatch.setattr(handler, "judge", lambda request: judged.append(request["now"]) or real_judge(request))
    event = case_event(corpus, "k1m-canary-down-012")
    first = handler.lambda_handler(event, FakeContext())
    capfd.readouterr()
    retry = handler.lambda_handler(json.loads(json.dumps(event)), FakeContext())
    assert '"RetriesAnswered":[1.0]' in capfd.readouterr().out
    assert first == retry and first["verdict"] == "fail"
    assert len(judged) == 1
    assert len(aws_tables.evaluations("k1m-canary-down-012")) == 1  # recorded once
    # Another moment of the same deploy is another request (the idempotency key holds the moment),
    # answered with the deploy's final verdict: never judged anew, nor recorded again.
    earlier = handler.lambda_handler({**event, "now": event["deployed_at"]}, FakeContext())
    assert (earlier["verdict"], earlier["evaluated_at"]) == ("fail", first["evaluated_at"])
    assert len(judged) == 2 and len(aws_tables.evaluations("k1m-canary-down-012")) == 1
    assert aws_tables.release("k1m-canary-down-012")["info"]["policy"] == event["policy"]["name"]


def test_a_failed_evaluation_is_not_cached_so_a_retry_judges_again(handler, corpus, aws_tables, tmp_path):
    event = case_event(corpus, "k1m-aa-000", only=("cpu",))
    good_case = event["policy"]["source"]["options"]["case"]
    event["policy"]["source"]["options"]["case"] = str(tmp_path / "not-yet")
    assert handler.lambda_handler(event, FakeContext())["exit_code"] == 4
    event["policy"]["source"]["options"]["case"] = good_case
    # The payload differs only in the policy: same key (release, now), and nothing was cached.
    assert handler.lambda_handler(event, FakeContext())["verdict"] == "pass"
    assert [r["verdict"] for r in aws_tables.evaluations("k1m-aa-000")] == ["error", "pass"]


@pytest.fixture
def secret(moto_endpoint, monkeypatch):  # noqa: F811
    arn = boto3.client("secretsmanager").create_secret(Name="canary-gate/keys", SecretString=json.dumps(SECRETS))["ARN"]
    monkeypatch.setenv("GATE_SECRET_ID", arn)
    for key in SECRETS:
        monkeypatch.setenv(key, "placeholder")  # monkeypatch restores them after the test
    return arn


def test_secrets_are_fetched_once_and_never_logged(handler, corpus, secret, capfd, monkeypatch):
    fetches = []
    provider = handler._secrets_provider()
    provider.client.meta.events.register(
        "provide-client-params.secrets-manager.GetSecretValue", lambda **kwargs: fetches.append(kwargs["params"]["SecretId"]))
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "DEBUG")
    event = case_event(corpus, "k1m-canary-down-012")
    results = [handler.lambda_handler({**event, "now": event["now"] if i == 0 else event["deployed_at"]},
                                      FakeContext()) for i in range(3)]
    assert fetches == [secret]
    import os

    assert {k: os.environ[k] for k in SECRETS} == SECRETS  # where the sources read them
    assert all(r["exit_code"] in (0, 1, 3) for r in results)
    output = capfd.readouterr()
    logged = output.out + output.err
    assert '"verdict"' in logged and '"release":"k1m-canary-down-012"' in logged.replace(" ", "")
    dumped = json.dumps(results)
    for value in SECRETS.values():
        assert value not in logged and value not in dumped


def test_a_secret_in_an_error_message_is_redacted(capfd, handler, corpus, secret, monkeypatch):
    def leaky(policy):
        raise RuntimeError(f"connection refused: key={SECRETS['DD_API_KEY']}")

    monkeypatch.setattr(handler, "open_source", leaky)
    result = handler.lambda_handler(case_event(corpus, "k1m-aa-000", only=("cpu",)), FakeContext())
    assert result["exit_code"] == 4 and "key=***" in result["error"]
    logged = "".join(capfd.readouterr())
    assert "key=***" in logged and SECRETS["DD_API_KEY"] not in logged + json.dumps(result)


def test_a_crash_while_judging_logs_its_traceback(capfd, handler, corpus, monkeypatch):
    """Review: a crash while judging (CrashError: 503 could-not-judge, recorded) logged only its one
    line, where an internal error (500) logs its traceback: the bug could not be found from the logs."""
    import gate.evidence

    def bug(*args, **kwargs):
        return {}["links"]

    monkeypatch.setattr(gate.evidence, "with_links", bug)
    result = handler.lambda_handler(case_event(corpus, "k1m-aa-000", only=("cpu",)), FakeContext())
    assert (result["statusCode"], result["exit_code"]) == (503, 4)
    assert result["error"] == "could not judge: the gate failed at this look (KeyError: 'links')"
    logged = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith("{")]
    (crash,) = [entry for entry in logged if entry.get("message") == "crash while judging"]
    assert "Traceback (most recent call last)" in crash["traceback"] and "in bug" in crash["traceback"]


def test_an_unreadable_secret_is_could_not_judge(handler, corpus, moto_endpoint, monkeypatch):  # noqa: F811
    monkeypatch.setenv("GATE_SECRET_ID", "no-such-secret")
    result = handler.lambda_handler(case_event(corpus, "k1m-aa-000", only=("cpu",)), FakeContext())
    assert result["exit_code"] == 4 and "no-such-secret" in result["error"]


def test_a_look_that_fails_after_the_deploy_is_registered_names_the_deploy(handler, corpus, monkeypatch):
    """Review round 4: an error answer carried no `same_deploy`, so a Step Functions loop whose
    first look failed (Datadog down, the budget spent) asked its next look about whatever deploy
    was registered by then, and could end on a redeploy's pass."""
    from gate.analysis import Analysis
    from gate.errors import SourceError

    def down(self, now):
        raise SourceError("Datadog: 503, could not judge")

    monkeypatch.setattr(Analysis, "evaluation", down)
    event = case_event(corpus, "k1m-aa-000", only=("cpu",))
    result = handler.lambda_handler(event, FakeContext())
    assert result["exit_code"] == 4 and "Datadog: 503" in result["error"]
    assert result["same_deploy"] == {"deployed_at": iso(parse_time(event["deployed_at"]))}


def test_a_source_that_fails_after_the_idempotent_path_registered_the_deploy_names_it(
        handler, corpus, aws_tables, tmp_path):
    """Review round 5: with the idempotency table the deploy is registered before the look; a
    source that could not be opened then (a case not there yet, Datadog keys missing) answered
    503 naming no deploy, so a loop started without deployed_at did not pin it."""
    event = case_event(corpus, "k1m-aa-000", only=("cpu",))
    event.pop("deployed_at")
    event["policy"]["source"]["options"]["case"] = str(tmp_path / "not-yet")
    result = handler.lambda_handler(event, FakeContext())
    registered = aws_tables.release("k1m-aa-000")
    assert result["exit_code"] == 4 and registered is not None
    assert result["same_deploy"] == {"deployed_at": iso(registered["deployed_at"])}


def test_a_bad_secret_max_age_is_named_not_a_traceback(handler, corpus, monkeypatch):
    """Review: GATE_SECRET_MAX_AGE=15m answered `internal error: ValueError: invalid literal ...`."""
    monkeypatch.setenv("GATE_SECRET_ID", "gate")
    monkeypatch.setenv("GATE_SECRET_MAX_AGE", "15m")
    result = handler.lambda_handler(case_event(corpus, "k1m-aa-000", only=("cpu",)), FakeContext())
    assert result["exit_code"] == 4 and "GATE_SECRET_MAX_AGE: '15m' is not a whole number" in result["error"]
    assert "ValueError" not in result["error"]


@pytest.mark.parametrize("max_age", ["-60", "86401", str(10**12)])
def test_a_secret_max_age_out_of_range_is_named(handler, corpus, monkeypatch, max_age):
    """Review: a negative GATE_SECRET_MAX_AGE was taken (Powertools then caches nothing, silently),
    and a huge one overflows Powertools' expiry once the secret is read (a crash at every call)."""
    monkeypatch.setenv("GATE_SECRET_ID", "gate")
    monkeypatch.setenv("GATE_SECRET_MAX_AGE", max_age)
    result = handler.lambda_handler(case_event(corpus, "k1m-aa-000", only=("cpu",)), FakeContext())
    assert result["statusCode"] == 503 and result["exit_code"] == 4
    assert result["error"] == (f"could not judge: GATE_SECRET_MAX_AGE: {max_age!r} is not a whole number of "
                               "seconds from 0 to 86400 (e.g. 900 for 15 minutes, 0 to fetch it every time)")


def test_an_ssm_policy_without_a_region_is_a_400_naming_the_policy(handler, corpus, monkeypatch, tmp_path):
    """Review: `ssm:/...` with no AWS region answered 500 `internal error: NoRegionError`: asking
    again changes nothing, the answer names `policy` and the missing region."""
    reference = "ssm:/canary-gate/web"
    for key in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))  # no profile's region either
    result = handler.lambda_handler({**case_event(corpus, "k1m-aa-000"), "policy": reference}, FakeContext())
    assert result["statusCode"] == 400 and result["exit_code"] == 4
    assert result["error"] == f"policy: cannot read {reference}: no AWS region (set AWS_DEFAULT_REGION)"


@pytest.mark.parametrize("ttl", ["6h", "0", "-60", "1e4", str(10**12)])
def test_a_bad_idempotency_ttl_is_named_not_a_traceback(handler, corpus, aws_tables, monkeypatch, ttl):
    """Review: GATE_IDEMPOTENCY_TTL=6h answered 500 `internal error: ValueError: invalid literal`
    (a huge one overflows Powertools' expiry, 0 or less keeps nothing). Refused before anything
    is registered."""
    monkeypatch.setenv("GATE_IDEMPOTENCY_TTL", ttl)
    event = case_event(corpus, "k1m-aa-000", only=("cpu",))
    result = handler.lambda_handler(event, FakeContext())
    assert result["statusCode"] == 503 and result["exit_code"] == 4
    assert result["error"] == (f"could not judge: GATE_IDEMPOTENCY_TTL: {ttl!r} is not a whole number of seconds "
                               "from 1 to 31622400 (e.g. 21600 for 6 hours)")
    assert aws_tables.release(event["release"]) is None


def test_the_idempotency_ttl_is_whole_seconds(handler, corpus, aws_tables, monkeypatch):
    monkeypatch.setenv("GATE_IDEMPOTENCY_TTL", "120")
    before = time.time()
    assert handler.lambda_handler(case_event(corpus, "k1m-aa-000", only=("cpu",)), FakeContext())["verdict"] == "pass"
    [record] = boto3.client("dynamodb").scan(TableName="gate-idempotency")["Items"]
    assert before + 120 <= int(record["expiration"]["N"]) <= time.time() + 121


def test_metrics_are_emitted_as_emf(capfd, handler, corpus):
    handler.lambda_handler(case_event(corpus, "k1m-canary-down-012"), FakeContext())
    handler.lambda_handler({"release": "r"}, FakeContext())
    blobs = [json.loads(line) for line in capfd.readouterr().out.splitlines() if '"_aws"' in line]
    assert [b["Outcome"] for b in blobs] == ["fail", "error"]
    assert all(b["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "CanaryGateTest" for b in blobs)
    assert blobs[0]["Verdicts"] == [1.0] and blobs[0]["EvaluationDuration"][0] >= 0
    assert blobs[1]["Verdicts"] == [1.0] and "EvaluationDuration" not in blobs[1]


@pytest.fixture
def slack_webhook(monkeypatch):
    """A local stand-in for Slack's incoming webhook, counting the messages it receives."""
    import http.server
    import threading

    received = []

    class Webhook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("SLACK_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/services/T0/B0/x")
    yield received
    server.shutdown()
    server.server_close()


def test_a_decisive_verdict_is_announced_once_even_when_retried(handler, corpus, aws_tables, slack_webhook):
    event = case_event(corpus, "k1m-canary-down-012", build_url="https://jenkins.invalid/job/web/7/")
    for _ in range(3):
        assert handler.lambda_handler(event, FakeContext())["verdict"] == "fail"
    assert len(slack_webhook) == 1
    assert "k1m-canary-down-012" in json.dumps(slack_webhook[0])
    (recorded,) = aws_tables.events("k1m-canary-down-012")
    assert recorded["detail"]["channel"] == "slack" and recorded["detail"]["ok"] is True
    # An undecided moment is not news.
    handler.lambda_handler({**event, "now": event["deployed_at"]}, FakeContext())
    assert len(slack_webhook) == 1


def test_a_decisive_verdict_publishes_its_report_to_s3(handler, corpus, aws_tables, slack_webhook, monkeypatch):
    boto3.client("s3").create_bucket(Bucket="gate-reports")
    monkeypatch.setenv("GATE_REPORT_BUCKET", "gate-reports")
    result = handler.lambda_handler(case_event(corpus, "k1m-canary-down-012"), FakeContext())
    assert result["verdict"] == "fail"
    page = boto3.client("s3").get_object(Bucket="gate-reports", Key="reports/k1m-canary-down-012.html")
    html = page["Body"].read().decode()
    assert "<svg" in html and "k1m-canary-down-012" in html
    assert "reports/k1m-canary-down-012.html" in result["report_url"]
    assert result["report_url"] in json.dumps(slack_webhook[0])  # the message links the report


# -- the AWS path's wrong passes (issue 17) ------------------------------------------------------


def test_a_different_request_at_the_same_moment_is_refused_not_answered_from_the_cache(handler, corpus, aws_tables):
    """The idempotency key is (release, deploy, now, rollout): a retry gets the first answer back,
    but a request that differs in what changes the answer (policy, scopes, deploy time) is refused,
    never answered with another request's cached pass: by the deploy's registration, which comes
    first (issue 22), or else by idempotency's payload validation."""
    event = case_event(corpus, "k1m-aa-000", only=("cpu",))
    assert handler.lambda_handler(event, FakeContext())["verdict"] == "pass"
    retry = {**json.loads(json.dumps(event)), "build_url": "https://jenkins.invalid/job/web/8/"}
    assert handler.lambda_handler(retry, FakeContext())["verdict"] == "pass"  # a link changes no answer
    stricter = json.loads(json.dumps(event))
    stricter["policy"]["metrics"][0]["tolerance"] = 0.01
    deployed_earlier = {**event, "deployed_at": iso(parse_time(event["deployed_at"]) - 600)}
    for changed in (stricter, {**event, "canary": "canary-b"}, {**event, "baseline": "baseline-b"}, deployed_earlier):
        result = handler.lambda_handler(changed, FakeContext())
        assert (result["statusCode"], result["verdict"], result["exit_code"]) == (400, "error", 4), result
        assert "registered" in result["error"] or "already judged at this moment" in result["error"], result
    assert [r["verdict"] for r in aws_tables.evaluations("k1m-aa-000")] == ["pass"]


def test_a_missing_idempotency_table_is_a_clear_503(handler, corpus, moto_endpoint, monkeypatch):  # noqa: F811
    monkeypatch.setenv("GATE_IDEMPOTENCY_TABLE", "no-such-table")
    result = handler.lambda_handler(case_event(corpus, "k1m-aa-000", only=("cpu",)), FakeContext())
    assert (result["statusCode"], result["verdict"], result["exit_code"]) == (503, "error", 4), result
    assert result["error"].startswith("could not judge: the idempotency table no-such-table is unusable")
    assert "ResourceNotFoundException" in result["error"] and "\n" not in result["error"]


@pytest.mark.parametrize("source", ["simulate", "replay"])
def test_the_lambda_refuses_demo_sources(monkeypatch, tmp_path, corpus, source):
    """A release is promoted or rolled back on the Lambda's verdict: made-up or recorded data
    cannot judge it (400), whatever the policy says."""
    import yaml

    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("GATE_STORE", str(tmp_path / "gate.sqlite"))
    for key in ("GATE_STORE_TABLE", "GATE_IDEMPOTENCY_TABLE", "GATE_SECRET_ID", *SECRETS):
        monkeypatch.delenv(key, raising=False)
    production = import_handler("gate_lambda_handler_production")
    try:
        if source == "simulate":
            policy = yaml.safe_load((ROOT / "examples" / "simulate.yaml").read_text())
            event = {"release": "web-1", "policy": policy, "deployed_at": "2024-05-06T12:00:00Z",
                     "now": "2024-05-06T12:30:00Z"}
        else:
            event = case_event(corpus, "k1m-aa-000", only=("cpu",))
        result = production.lambda_handler(event, FakeContext())
    finally:
        sys.modules.pop("gate_lambda_handler_production", None)
    assert (result["statusCode"], result["verdict"], result["exit_code"]) == (400, "error", 4), result
    assert result["error"].startswith(f"source.type: {source!r} judges made-up or recorded data")


@pytest.mark.parametrize("body", [{"release": "web-1", "policy": {}}, ["web-1"], 3])
def test_an_http_body_that_is_not_text_is_a_400(handler, body):
    response = handler.lambda_handler({"body": body, "isBase64Encoded": False}, FakeContext())
    assert response["statusCode"] == 400
    result = json.loads(response["body"])
    assert result["exit_code"] == 4 and result["error"].startswith("body: expected the JSON request as text")


def test_a_securestring_policy_is_read_decrypted(handler, corpus, moto_endpoint):  # noqa: F811
    event = case_event(corpus, "k1m-canary-down-012")
    boto3.client("ssm").put_parameter(Name="/canary-gate/secure", Value=json.dumps(event["policy"]),
                                      Type="SecureString")
    result = handler.lambda_handler({**event, "policy": "ssm:/canary-gate/secure"}, FakeContext())
    assert (result["verdict"], result["exit_code"]) == ("fail", 1), result


def test_a_policy_kept_by_a_warm_container_older_than_the_registered_one_is_read_again(handler, corpus,
                                                                                     moto_endpoint):  # noqa: F811
    """Issue 22: a warm container keeps an SSM policy 5 minutes. The policy was updated and another
    container registered the deploy with the new one; this container, with the old copy, answered a
    final 400 ("differs from the policy ... registered with"): the loop ended, the pipeline rolled
    back a healthy canary. It reads the policy again once, and judges with the current one."""
    event = case_event(corpus, "k1m-canary-down-012")
    name = "/canary-gate/kept-by-a-warm-container"
    updated = ssm_policy_updated_under_a_warm_container(handler, event, name)
    first = handler.lambda_handler({**event, "policy": updated, "now": event["deployed_at"]}, FakeContext())
    assert first["verdict"] == "inconclusive", first  # registered and judged with the updated policy

    result = handler.lambda_handler({**event, "policy": f"ssm:{name}"}, FakeContext())
    assert result["verdict"] == "fail" and result["exit_code"] == 1, result
    # A policy that really differs (the same SSM copy, the inline one changed) is still refused.
    other = handler.lambda_handler({**event, "policy": {**updated, "alpha": 0.03}}, FakeContext())
    assert (other["statusCode"], other["exit_code"]) == (400, 4) and "differs from the policy" in other["error"]


def test_a_rollout_look_is_never_answered_with_a_check_s_cached_verdict(handler, corpus, aws_tables):
    """The idempotency key was [release, now]: a rollout look at the moment of an earlier plain
    check got the check's cached pass (exit 0, the state machine's Decided) while the canary
    still had 0% of the traffic."""
    from tests.alb import weighted_listener

    ec2, elbv2 = boto3.client("ec2"), boto3.client("elbv2")
    listener, groups = weighted_listener(ec2, elbv2, production=100, canary=0)
    event = case_event(corpus, "k1m-aa-000")
    event["policy"]["rollout"] = {"listener_arn": listener, "canary_target_group": groups["canary"],
                                  "production_target_group": groups["production"], "steps": [5, 25, 50],
                                  "step_lifetime": "20m"}
    check = handler.lambda_handler(dict(event), FakeContext())
    assert check["verdict"] == "pass", check
    look = handler.lambda_handler({**event, "rollout": True}, FakeContext())
    assert look.get("rollout") is not None and look["exit_code"] != 0, look


def test_a_warm_container_registers_a_deploy_with_the_current_ssm_policy(handler, corpus, moto_endpoint):  # noqa: F811
    """Review b1, the other direction of issue 22: the loop's first look lands on a warm container
    keeping the OLD SSM policy and registered the deploy with it; once its copy expired, the next
    look (the current policy) was refused ("differs from the policy ... registered with"): a 400,
    exit 4, the loop ended and rolled back a healthy canary. A registration reads SSM now."""
    event = case_event(corpus, "k1m-canary-down-012")
    name = "/canary-gate/registered-by-a-warm-container"
    updated = ssm_policy_updated_under_a_warm_container(handler, event, name)
    first = handler.lambda_handler({**event, "policy": f"ssm:{name}", "now": event["deployed_at"]}, FakeContext())
    assert first["verdict"] == "inconclusive", first

    handler.parameters.clear_caches()  # five minutes later: the kept copy expired
    result = handler.lambda_handler({**event, "policy": f"ssm:{name}"}, FakeContext())
    assert (result["verdict"], result["exit_code"]) == ("fail", 1), result


def test_any_refusal_of_a_kept_ssm_policy_reads_it_again(handler, corpus, moto_endpoint):  # noqa: F811
    """Review b5: a rollout look refused for the kept copy's lack of a rollout section ("the policy
    has no rollout section") was never read again, though SSM had gained the section since: only
    a digest mismatch was. Any refusal of an SSM policy reads it again once before the 400."""
    from tests.alb import weighted_listener

    ec2, elbv2 = boto3.client("ec2"), boto3.client("elbv2")
    listener, groups = weighted_listener(ec2, elbv2, production=100, canary=0)
    event = case_event(corpus, "k1m-aa-000")
    ssm, name = boto3.client("ssm"), "/canary-gate/without-rollout"
    ssm.put_parameter(Name=name, Value=json.dumps(event["policy"]), Type="String")
    look = {**event, "policy": f"ssm:{name}", "rollout": True}
    refused = handler.lambda_handler(look, FakeContext())  # registers the deploy, judges nothing
    assert (refused["statusCode"], refused["exit_code"]) == (400, 4), refused
    assert "no rollout section" in refused["error"]

    updated = {**event["policy"], "rollout": {
        "listener_arn": listener, "canary_target_group": groups["canary"],
        "production_target_group": groups["production"], "steps": [5, 25, 50], "step_lifetime": "20m"}}
    ssm.put_parameter(Name=name, Value=json.dumps(updated), Type="String", Overwrite=True)
    result = handler.lambda_handler(look, FakeContext())  # this container still keeps the first copy
    assert result.get("verdict") != "error" and result.get("rollout") is not None, result


def test_a_warm_container_restarts_a_release_with_the_current_ssm_policy(handler, corpus, moto_endpoint):  # noqa: F811
    """Review b1, on a redeploy: the release's first deploy judged with the SSM policy, the parameter
    updated, the new deploy's first look on a warm container keeping the old copy restarted the
    release with it, and the next look (the current policy) was refused: a restart reads SSM now."""
    event = case_event(corpus, "k1m-canary-down-012")
    ssm, name = boto3.client("ssm"), "/canary-gate/restarted-by-a-warm-container"
    ssm.put_parameter(Name=name, Value=json.dumps(event["policy"]), Type="String")
    deployed_at = parse_time(event["deployed_at"])
    earlier = {**event, "policy": f"ssm:{name}", "deployed_at": iso(deployed_at - 3 * 3600),
               "now": iso(deployed_at - 2 * 3600)}
    assert handler.lambda_handler(earlier, FakeContext())["verdict"] != "error"  # the first deploy, judged

    updated = {**event["policy"], "alpha": 0.02}
    ssm.put_parameter(Name=name, Value=json.dumps(updated), Type="String", Overwrite=True)
    first = handler.lambda_handler({**event, "policy": f"ssm:{name}", "now": event["deployed_at"]}, FakeContext())
    assert (first["verdict"], first.get("deploy")) == ("inconclusive", 2), first

    handler.parameters.clear_caches()  # five minutes later: the kept copy expired
    result = handler.lambda_handler({**event, "policy": f"ssm:{name}"}, FakeContext())
    assert (result["verdict"], result["exit_code"], result.get("deploy")) == ("fail", 1, 2), result


def ssm_policy_updated_under_a_warm_container(handler, event: dict, name: str) -> dict:
    """Puts the event's policy at SSM `name`, has this container judge another release with it
    (so it keeps that copy for 5 minutes), then updates the parameter: returns the updated policy."""
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name=name, Value=json.dumps(event["policy"]), Type="String")
    warm = handler.lambda_handler({**event, "release": "another-release", "policy": f"ssm:{name}"}, FakeContext())
    assert warm["verdict"] == "fail", warm  # this container now keeps the first policy
    updated = {**event["policy"], "alpha": 0.02}
    ssm.put_parameter(Name=name, Value=json.dumps(updated), Type="String", Overwrite=True)
    return updated


def test_a_look_that_pins_its_deploy_at_the_same_moment_is_answered_not_refused(handler, corpus, aws_tables):
    """Review (issue 22 for Jenkins): the Jenkins step polls every pollSeconds, faster than the
    policy's interval, and pins its deploy after the first answer (its `same_deploy` added to
    the event). The second poll asks about the same deploy at the same moment: the question is
    the same, so it gets the first answer back, not a 400 for a \"different request\"."""
    event = case_event(corpus, "k1m-canary-down-012")
    event.pop("deployed_at")
    event["now"] = iso(load_case(corpus / event["release"]).deployed_at + 600)
    first = handler.lambda_handler(event, FakeContext())
    assert first["verdict"] in ("inconclusive", "fail"), first
    pinned = handler.lambda_handler({**event, **first["same_deploy"]}, FakeContext())
    assert pinned == first
