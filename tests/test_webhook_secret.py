"""The webhook's URL and signing secret in the Lambda come from the stack's Secrets Manager secret
(infra/template.yaml `GateSecret`, `GATE_SECRET_ID`), on a moto server, never from plain variables
of the function: a verdict judged by the handler reaches a local receiver signed with the secret's
value, and a function holding them as plain variables sends nothing."""

from __future__ import annotations

import hashlib
import hmac
import json

import boto3
import pytest
import yaml

from gate.notify import webhook
from tests.fake_slack import FakeSlack
from tests.lambda_module import FakeContext
from tests.moto_server import moto_server  # noqa: F401 - fixture
from tests.test_lambda_handler import ROOT, SECRETS, case_event, handler  # noqa: F401 - fixture
from tests.test_store_dynamodb import moto_endpoint  # noqa: F401 - fixture

SIGNING = "whsec-from-secrets-manager-5c1e9a"
PLAIN = "whsec-plain-env-var-0b7d22"


@pytest.fixture
def receiver(monkeypatch):
    with FakeSlack() as fake:
        for key in (webhook.ENV_URL, webhook.ENV_SECRET):
            monkeypatch.delenv(key, raising=False)
        yield fake


def stack_secret(monkeypatch, **values) -> str:
    arn = boto3.client("secretsmanager").create_secret(
        Name="canary-gate/keys", SecretString=json.dumps({**SECRETS, **values}))["ARN"]
    monkeypatch.setenv("GATE_SECRET_ID", arn)
    for key in SECRETS:
        monkeypatch.setenv(key, "placeholder")  # restored by monkeypatch after the test
    return arn


def judge_a_failing_canary(handler, corpus) -> dict:  # noqa: F811
    event = case_event(corpus, "k1m-canary-down-012")
    event["policy"]["notify"] = {"webhook": True}
    return handler.lambda_handler(event, FakeContext())


def test_the_lambda_signs_the_webhook_with_the_secret_from_secrets_manager(
        handler, corpus, moto_endpoint, receiver, monkeypatch):  # noqa: F811
    stack_secret(monkeypatch, GATE_WEBHOOK_URL=receiver.url, GATE_WEBHOOK_SECRET=SIGNING)
    result = judge_a_failing_canary(handler, corpus)
    assert result["verdict"] == "fail"
    (request,) = receiver.requests
    headers = {k.lower(): v for k, v in request["headers"].items()}
    expected = hmac.new(SIGNING.encode(), headers["x-gate-timestamp"].encode() + b"." + request["raw"],
                        hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-gate-signature"], f"sha256={expected}")
    assert SIGNING not in json.dumps(result)


def test_plain_variables_of_the_function_are_not_the_webhook_s_secret(
        handler, corpus, moto_endpoint, receiver, monkeypatch):  # noqa: F811
    """The secret holds no webhook keys; the function's environment does (a plain variable anyone
    reading the function's configuration sees): nothing is sent, the verdict unchanged."""
    stack_secret(monkeypatch)
    monkeypatch.setenv(webhook.ENV_URL, receiver.url)
    monkeypatch.setenv(webhook.ENV_SECRET, PLAIN)
    result = judge_a_failing_canary(handler, corpus)
    assert result["verdict"] == "fail" and result["exit_code"] == 1
    assert receiver.requests == []


def test_the_stack_s_secret_holds_the_webhook_keys_and_the_function_names_only():
    template = yaml.load((ROOT / "infra" / "template.yaml").read_text(), Loader=_Loader)
    resources = template["Resources"]
    generated = resources["GateSecret"]["Properties"]["GenerateSecretString"]
    keys = set(json.loads(generated["SecretStringTemplate"])) | {generated["GenerateStringKey"]}
    assert {webhook.ENV_URL, webhook.ENV_SECRET} <= keys
    env = resources["AnalyzerFunction"]["Properties"]["Environment"]["Variables"]
    assert webhook.ENV_URL not in env and webhook.ENV_SECRET not in env and "GATE_SECRET_ID" in env


class _Loader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !GetAtt, ...) read as plain values."""


_Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
