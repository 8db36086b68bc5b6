"""Every fault of a data source, a store or Slack ends in its documented result, through the real
`gate` console script: retried within the budget, then "could not judge" (exit 4, one line on
stderr, recorded where the store works), never a pass and never a traceback.

The table of docs/reliability.md lists the same faults and outcomes.
"""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from gate.sources.replay import load_case
from tests.conftest import run_gate
from tests.fake_datadog import API_KEY, APP_KEY, FakeDatadog
from tests.fake_slack import FakeSlack
from tests.moto_server import moto_server  # noqa: F401 - the fixture (a moto server on 127.0.0.1)

ROOT = Path(__file__).resolve().parents[1]
RELEASE = "web-2.0.1"
AA, DOWN = "k1m-aa-039", "k1m-canary-down-012"


# -- helpers shared by the reliability tests --------------------------------------------------


@contextmanager
def live(corpus: Path | None, name: str | None, ahead: int = 120, fake_class=FakeDatadog, **kwargs):
    """The fake Datadog serving a case as if its moment `end_at - ahead` were now (no case: a
    Datadog that knows no series at all)."""
    case = load_case(corpus / name) if name else None
    end = case.end_at if case else int(time.time()) // 60 * 60
    offset = int(time.time()) // 60 * 60 - (end - ahead)
    with fake_class(case, offset=offset, **kwargs) as fake:
        fake.deployed_at = (case.deployed_at if case else end - 3600) + offset
        yield fake


def datadog_policy(tmp_path: Path, history: str = "1d", **options) -> Path:
    policy = yaml.safe_load((ROOT / "examples" / "datadog.yaml").read_text())
    policy["history"] = history  # a day of history: one request, fast to learn
    policy["source"]["options"] = {"timeout": 1, "retry_budget": 2, **options}
    path = tmp_path / "datadog.yaml"
    path.write_text(yaml.safe_dump(policy))
    return path


def datadog_env(fake, **extra) -> dict:
    return {"GATE_DATADOG_URL": fake.url, "DD_API_KEY": API_KEY, "DD_APP_KEY": APP_KEY,
            "SLACK_WEBHOOK_URL": "", "GATE_STORE_TABLE": "", **extra}


def check(fake, tmp_path: Path, *extra, env=None, store=None, release=RELEASE, **options):
    return run_gate(
        "check", release, "--policy", datadog_policy(tmp_path, **options),
        "--deployed-at", str(fake.deployed_at), "--store", store or tmp_path / "gate.sqlite", "--json", *extra,
        env=datadog_env(fake, **(env or {})), cwd=tmp_path, timeout=120,
    )


def recorded(path: Path, release: str = RELEASE) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT verdict, reason FROM evaluations WHERE release = ? ORDER BY id",
                          (release,)).fetchall()


def assert_could_not_judge(result, *phrases: str) -> str:
    """Exit 4, no verdict on stdout, one `error:` line last on stderr naming the fault."""
    assert result.returncode == 4, (result.returncode, result.stdout, result.stderr)
    assert result.stdout.strip() == "", result.stdout  # no verdict at all, let alone a pass
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), result.stderr
    for phrase in phrases:
        assert phrase in last, last
    return last


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- Datadog ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault, reset, phrase, retried",
    [
        ("429", 1, "rate limited (429)", True),  # waits the reset, again and again, then gives up
        ("429", 30, "rate limited (429), the limit resets in 30s", False),  # reset beyond the budget
        ("500", 1, "server error 500", True),
        ("503", 1, "server error 503", True),
        ("slow", 1, "no answer within 1s (timeout)", True),
        ("malformed", 1, "malformed answer (not JSON)", True),  # a truncated body
        ("bad_shape", 1, "malformed answer (ValueError", True),  # valid JSON, series and times do not match
    ],
)
def test_a_persistent_datadog_fault_is_could_not_judge_and_recorded(corpus, tmp_path, fault, reset, phrase,
                                                                     retried):
    with live(corpus, AA, ahead=0) as fake:  # a canary that would pass
        fake.fault, fake.reset_after, fake.slow_seconds = fault, reset, 3
        # 3 s: a retry fits after a 1 s timeout and its 0.5 s wait, however late a busy machine wakes
        result = check(fake, tmp_path, retry_budget=3)
    last = assert_could_not_judge(result, "Datadog", phrase)
    # The budget holds (measured by what the gate did, not by how long this machine took): every
    # retry follows a wait it announced, and the waits fit in the budget.
    waits = [float(s) for s in re.findall(r"retrying in (\d+(?:\.\d+)?)s", result.stderr)]
    assert bool(waits) == retried
    assert len(fake.timeseries_requests()) == 1 + len(waits), result.stderr
    assert sum(waits) <= 3, waits
    [(verdict, reason)] = recorded(tmp_path / "gate.sqlite")
    assert verdict == "error" and phrase in reason and reason in last


def test_unreachable_datadog_is_retried_then_could_not_judge(tmp_path):
    with live(None, None) as fake:
        pass  # stopped: its port now refuses connections
    result = check(fake, tmp_path)
    assert_could_not_judge(result, "Datadog: ", "could not judge")
    assert "retrying in" in result.stderr
    assert recorded(tmp_path / "gate.sqlite")[0][0] == "error"


def test_a_refused_connection_is_not_called_a_timeout(tmp_path):
    with live(None, None) as fake:
        pass
    result = check(fake, tmp_path)
    assert_could_not_judge(result, "Datadog: cannot reach the API")


def test_refused_or_missing_keys_are_could_not_judge_without_retry(corpus, tmp_path):
    with live(corpus, AA, ahead=0) as fake:
        wrong = check(fake, tmp_path, env={"DD_APP_KEY": "not-the-app-key-31337"})
        assert len(fake.requests) == 1  # a refusal is not retried
        missing = check(fake, tmp_path, env={"DD_API_KEY": ""})
    assert_could_not_judge(wrong, "Datadog refused the credentials (403")
    assert_could_not_judge(missing, "DD_API_KEY not set")


def test_no_series_at_all_is_never_a_pass(tmp_path):
    """Datadog answers 200 with no series (the queries match nothing): not a pass."""
    with live(None, None) as fake:
        result = check(fake, tmp_path)
    assert result.returncode in (1, 3, 4), result.stderr
    assert "Traceback" not in result.stderr
    if result.stdout.strip():
        assert json.loads(result.stdout)["verdict"] != "pass"
    assert recorded(tmp_path / "gate.sqlite")[-1][0] != "pass"


class SkewedDatadog(FakeDatadog):
    """A Datadog whose clock runs 30 s off the policy's grid: every point stamped at :30."""

    def timeseries(self, request: dict) -> dict:
        answer = super().timeseries(request)
        attributes = answer["data"]["attributes"]
        attributes["times"] = [t + 30_000 for t in attributes["times"]]
        return answer


def test_a_datadog_answer_off_the_grid_is_could_not_judge(corpus, tmp_path):
    """Clock skew on Datadog's side (points at :30 on a 60 s policy): refused, not re-bucketed,
    not retried (the same question gets the same answer)."""
    with live(corpus, AA, ahead=0, fake_class=SkewedDatadog) as fake:  # a canary that would pass
        result = check(fake, tmp_path)
    assert_could_not_judge(result, "Datadog answered off the 60s grid")
    assert "retrying in" not in result.stderr
    assert [r["status"] for r in fake.timeseries_requests()] == [200]
    [(verdict, reason)] = recorded(tmp_path / "gate.sqlite")
    assert verdict == "error" and "off the 60s grid" in reason


# -- the SQLite store -----------------------------------------------------------------------------


def trigger_failure(path: Path, table: str, message: str) -> None:
    """A store that opens but refuses every new row of `table` (a full disk at write time)."""
    from gate.store import SqliteStore

    SqliteStore(path)
    with sqlite3.connect(path) as db:
        db.execute(f"CREATE TRIGGER refuse BEFORE INSERT ON {table} BEGIN SELECT RAISE(ABORT, '{message}'); END")


@pytest.mark.parametrize("fault", ["directory", "read-only place", "not a database", "full at start",
                                   "full at record"])
def test_an_unusable_sqlite_store_is_could_not_judge(corpus, tmp_path, fault):
    store = tmp_path / "store" / "gate.sqlite"
    store.parent.mkdir()
    if fault == "directory":
        store.mkdir()
    elif fault == "read-only place":
        store = Path("/proc/gate-store/gate.sqlite")  # a read-only pseudo file system (even for root)
    elif fault == "not a database":
        store.write_bytes(b"\x00garbage, not SQLite\xff" * 100)
    elif fault == "full at start":
        trigger_failure(store, "releases", "database or disk is full")
    else:
        trigger_failure(store, "evaluations", "database or disk is full")
    with live(corpus, AA, ahead=0) as fake:  # a canary that would pass
        result = check(fake, tmp_path, store=store)
    last = assert_could_not_judge(result, str(store))
    assert "the store" in last
    if fault.startswith("full"):
        assert "database or disk is full" in last


# -- DynamoDB -----------------------------------------------------------------------------------


def test_dynamodb_unreachable_or_missing_table_is_could_not_judge(corpus, tmp_path):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_MAX_ATTEMPTS": "2",
           "GATE_STORE_TABLE": "gate-evaluations"}
    try:
        with live(corpus, AA, ahead=0) as fake:
            def run(endpoint: str):
                return run_gate("check", RELEASE, "--policy", datadog_policy(tmp_path), "--json",
                                "--deployed-at", str(fake.deployed_at),
                                env={**datadog_env(fake), **aws, "AWS_ENDPOINT_URL": endpoint},
                                cwd=tmp_path, timeout=120)

            no_table = run(f"http://{host}:{port}")
            server.stop()  # the same endpoint, now dead
            stopped = run(f"http://{host}:{port}")
            wrong = run(f"http://127.0.0.1:{free_port()}")
    finally:
        server.stop()
    assert_could_not_judge(no_table, "DynamoDB store gate-evaluations", "ResourceNotFoundException")
    assert_could_not_judge(stopped, "DynamoDB store gate-evaluations")
    assert_could_not_judge(wrong, "DynamoDB store gate-evaluations")


THROTTLED = ("ProvisionedThroughputExceededException",
             "The level of configured provisioned throughput for the table was exceeded")
MISSING = ("ResourceNotFoundException", "Requested resource not found")


def stubbed_dynamodb():
    import boto3

    return boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing", endpoint_url="http://127.0.0.1:9")


def judged_in_process(corpus, monkeypatch, tmp_path, store):
    """The A/A canary (it passes) judged by an Analysis on the real Datadog source, with `store`."""
    from gate.analysis import Analysis
    from gate.policy import load_policy
    from gate.sources.datadog import from_policy

    with live(corpus, AA, ahead=0) as fake:
        for key, value in datadog_env(fake).items():
            monkeypatch.setenv(key, value)
        policy = load_policy(datadog_policy(tmp_path))
        now = int(time.time())
        clean = Analysis(policy, from_policy(policy), RELEASE, fake.deployed_at).evaluate(now)
        assert clean.verdict == "pass", clean.reason  # without the store fault, this would pass
        return Analysis(policy, from_policy(policy), RELEASE, fake.deployed_at, store=store).evaluate(now)


@pytest.mark.parametrize("error", [THROTTLED, MISSING], ids=["throttled", "no such table"])
def test_a_dynamodb_write_refused_when_the_verdict_is_recorded_is_never_a_pass(corpus, tmp_path, monkeypatch,
                                                                                error):
    """botocore Stubber: the put_item of the evaluation is throttled (after botocore's own retries,
    as AWS would answer) or its table is gone: a StoreError naming the table and the code, no
    verdict returned, although the canary would pass."""
    from botocore.stub import ANY, Stubber

    from gate.errors import StoreError
    from gate.store.dynamodb import DynamoStore

    client = stubbed_dynamodb()
    with Stubber(client) as stubber:
        # The deploy's recorded verdicts are read first (none final: a final verdict is final).
        stubber.add_response("query", {"Items": [], "Count": 0, "ScannedCount": 0}, None)
        stubber.add_client_error("put_item", service_error_code=error[0], service_message=error[1],
                                 http_status_code=400, expected_params={"TableName": "gate-evaluations", "Item": ANY})
        with pytest.raises(StoreError) as caught:
            judged_in_process(corpus, monkeypatch, tmp_path, DynamoStore("gate-evaluations", client=client))
        stubber.assert_no_pending_responses()
    message = str(caught.value)
    assert message.startswith("DynamoDB store gate-evaluations: put_item failed: ") and error[0] in message, message
    assert "\n" not in message


def throttle_puts(client, which: str, refused: list[str]) -> None:
    """Answer DynamoDB PutItem calls with ProvisionedThroughputExceeded (short-circuited on a
    before-call hook, as the botocore Stubber does), the other calls go to the moto server: `which`
    is "all" or "eval#" (only the evaluation items). The refused sort keys go to `refused`."""
    from botocore.awsrequest import AWSResponse

    def hook(params, **_):
        sk = params["body"] and json.loads(params["body"]).get("Item", {}).get("sk", {}).get("S", "")
        if which == "all" or sk.startswith(which):
            refused.append(sk)
            return AWSResponse(None, 400, {}, None), {
                "Error": {"Code": THROTTLED[0], "Message": THROTTLED[1]},
                "ResponseMetadata": {"HTTPStatusCode": 400}}
        return None

    client.meta.events.register("before-call.dynamodb.PutItem", hook)


@pytest.mark.parametrize("when", ["at registration", "at record"])
def test_dynamodb_throttled_writes_through_the_cli_are_could_not_judge(corpus, tmp_path, monkeypatch, capsys,
                                                                       moto_server, when):  # noqa: F811
    """The real entry point (`gate.cli.main`, in-process so that the stub can reach its client),
    the DynamoDB store on a moto server whose PutItem calls are throttled: exit 4, one error line,
    no verdict printed (the canary would pass), nothing recorded past the refused write."""
    import boto3

    from gate import cli

    moto_server.reset()
    ddb = moto_server.client("dynamodb")
    ddb.create_table(TableName="gate-evaluations",
                     KeySchema=[{"AttributeName": "release", "KeyType": "HASH"},
                                {"AttributeName": "sk", "KeyType": "RANGE"}],
                     AttributeDefinitions=[{"AttributeName": "release", "AttributeType": "S"},
                                           {"AttributeName": "sk", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    refused: list[str] = []
    real_client = boto3.client

    def client(service, *args, **kwargs):
        made = real_client(service, *args, **kwargs)
        if service == "dynamodb":
            throttle_puts(made, "all" if when == "at registration" else "eval#", refused)
        return made

    monkeypatch.setattr(boto3, "client", client)
    try:
        with live(corpus, AA, ahead=0) as fake:
            for key, value in {**datadog_env(fake), "GATE_STORE_TABLE": "gate-evaluations"}.items():
                monkeypatch.setenv(key, value)
            monkeypatch.setattr("sys.argv", ["gate", "check", RELEASE, "--policy", str(datadog_policy(tmp_path)),
                                             "--deployed-at", str(fake.deployed_at), "--json"])
            monkeypatch.chdir(tmp_path)
            with pytest.raises(SystemExit) as exited:
                cli.main()
        out, err = capsys.readouterr()
        items = ddb.scan(TableName="gate-evaluations")["Items"]
    finally:
        moto_server.reset()
    assert refused, "no PutItem was refused: the fault was not injected"
    assert all(sk.startswith("eval#") for sk in refused) if when == "at record" else refused == ["release"], refused
    assert exited.value.code == 4, (out, err)
    assert out.strip() == "", out  # no verdict, let alone the pass
    assert "Traceback" not in err and "internal error" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: DynamoDB store gate-evaluations: put_item failed: " + THROTTLED[0]), err
    keys = sorted(i["sk"]["S"] for i in items)
    if when == "at registration":
        assert keys == [], keys
    else:
        assert keys == ["release"], keys  # registered; the refused evaluation is not half written


# -- CloudWatch -----------------------------------------------------------------------------------


class FakeCloudWatch:
    """A CloudWatch endpoint that only refuses, with the JSON error botocore parses. `requests`
    counts the GetMetricData calls (the reference cache's STS GetCallerIdentity, sent to the same
    AWS_ENDPOINT_URL, is refused too, and not counted)."""

    def __init__(self, code: str, status: int):
        body = json.dumps({"__type": code, "message": "refused by the fake"}).encode()
        self.requests = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fake.requests += self.headers.get("X-Amz-Target", "").endswith(".GetMetricData")
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("code, status, phrase, retried", [
    ("Throttling", 400, "CloudWatch kept throttling GetMetricData (Throttling) for 8s", True),
    ("AccessDenied", 403, "CloudWatch refused GetMetricData (AccessDenied)", False),
])
def test_cloudwatch_throttling_and_refusal_are_could_not_judge(tmp_path, code, status, phrase, retried):
    policy = yaml.safe_load((ROOT / "examples" / "cloudwatch.yaml").read_text())
    policy["source"]["options"]["retry_seconds"] = 8  # room for a retry after the first backoff (0.5-1 s) on a busy machine
    policy["history"] = "1d"
    (tmp_path / "cw.yaml").write_text(yaml.safe_dump(policy))
    with FakeCloudWatch(code, status) as fake:
        result = run_gate(
            "check", RELEASE, "--policy", tmp_path / "cw.yaml", "--store", tmp_path / "gate.sqlite", "--json",
            env={"AWS_ENDPOINT_URL": fake.url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": "/dev/null",
                 "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "GATE_STORE_TABLE": "", "SLACK_WEBHOOK_URL": ""},
            cwd=tmp_path, timeout=120)
    assert_could_not_judge(result, phrase)
    assert (fake.requests > 1) == retried
    [(verdict, reason)] = recorded(tmp_path / "gate.sqlite")
    assert verdict == "error" and phrase in reason


# -- Slack --------------------------------------------------------------------------------------


@pytest.mark.parametrize("slack", ["500", "unreachable"])
def test_slack_down_never_changes_a_verdict(corpus, tmp_path, slack):
    """A notification is not part of the decision: the fail stands (exit 1), the lost message is
    said on stderr, and the store keeps the verdict."""
    with live(corpus, DOWN) as fake, FakeSlack([(500, {})]) as hook:
        url = hook.url if slack == "500" else f"http://127.0.0.1:{free_port()}/services/T/B/x"
        result = check(fake, tmp_path, env={"SLACK_WEBHOOK_URL": url})
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)["verdict"] == "fail"
    assert "slack: notification not sent" in result.stderr and "Traceback" not in result.stderr
    assert recorded(tmp_path / "gate.sqlite")[-1][0] == "fail"
    if slack == "500":
        assert len(hook.requests) >= 1
