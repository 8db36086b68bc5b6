"""Hostile input, property-based (hypothesis): policies, Lambda events and command lines either
work or end in a clear validation error (a GateError subclass, exit 4, or click's exit 2 for a
usage error), never another exception; names that would change a Datadog query or a CloudWatch
dimension are refused before anything is sent."""

from __future__ import annotations

import copy
import json
import os
import re
import sys
import time
import uuid
from pathlib import Path

import boto3
import pytest
import yaml
from botocore.stub import ANY, Stubber
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from gate.analysis import Analysis
from gate.policy import render_scope
from gate.errors import GateError, PolicyError
from gate.policy import parse_policy
from gate.sources import Query
from gate.sources.datadog import check_scope, compile_query
from tests.lambda_module import FakeContext, import_handler

ROOT = Path(__file__).resolve().parents[1]
# The same examples on every run (a CI run must not fail on a draw the last one never made; a
# new draw is a deliberate change of the seed), and no "too slow" failure on a busy machine.
settings.register_profile("repeatable", derandomize=True)
settings.load_profile("repeatable")
QUIET = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=QUIET)
EXAMPLE = yaml.safe_load((ROOT / "examples" / "datadog.yaml").read_text())

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
FIELDS = ["name", "source", "canary", "baseline", "interval", "lifetime", "history", "min_duration",
          "on_undecided", "alpha", "pass_risk", "metrics"]
METRIC_FIELDS = ["name", "kind", "bad_direction", "tolerance", "denominator", "critical", "muted", "unit",
                 "tail", "min_events", "queries"]


@st.composite
def mutated_policies(draw):
    """The example policy with a few fields replaced by anything, deleted, or added."""
    policy = copy.deepcopy(EXAMPLE)
    for _ in range(draw(st.integers(1, 4))):
        metrics = policy.get("metrics")
        mappings = [m for m in metrics if isinstance(m, dict)] if isinstance(metrics, list) else []
        if draw(st.booleans()) or not mappings:
            key = draw(st.sampled_from(FIELDS + ["unknown"]))
            target = policy
        else:
            target = mappings[draw(st.integers(0, len(mappings) - 1))]
            key = draw(st.sampled_from(METRIC_FIELDS + ["unknown"]))
        if draw(st.integers(0, 4)) == 0:
            target.pop(key, None)
        else:
            target[key] = draw(json_values)
    return policy


def parse_or_refuse(data, origin="policy"):
    try:
        return parse_policy(data, origin=origin)
    except PolicyError as e:
        message = str(e)
        # one clear line: not empty, no line break, no traceback, bounded length
        assert message.strip(), repr(message)
        assert "\n" not in message.strip(), message
        assert "Traceback" not in message, message
        assert len(message) < 5000, len(message)
        return None


@SETTINGS
@example({"\n": None})  # found by hypothesis: a key holding a newline once made a two-line error
@given(json_values)
def test_any_json_is_a_policy_or_a_policy_error(data):
    parse_or_refuse(data)


@SETTINGS
@example({**EXAMPLE, "source": {**EXAMPLE["source"], "bad\nkey": 1}})  # a key holding a newline, kept
@given(mutated_policies())
def test_mutated_policies_are_valid_or_refused_and_their_source_too(policy):
    parsed = parse_or_refuse(policy)
    if parsed is None or parsed.source.type != "datadog":
        return
    # The Datadog source compiles each query from the policy: valid, or a PolicyError.
    from gate.sources import datadog

    for metric in parsed.metrics:
        try:
            compiled = compile_query(metric, parsed.interval)
        except PolicyError:
            continue
        assert compiled.template.count("$scope") >= 1 and compiled.template.count("{") == 1
    try:
        datadog.from_policy(parsed)
    except GateError:
        pass  # no keys in this environment, or a refused query or option


yaml_text = st.one_of(
    st.text(max_size=200),
    mutated_policies().map(lambda p: yaml.safe_dump(p)),
    st.builds(lambda s, cut: s[:cut], mutated_policies().map(lambda p: yaml.safe_dump(p)), st.integers(0, 400)),
)


@settings(max_examples=100, deadline=None, suppress_health_check=QUIET)
@given(yaml_text)
def test_gate_policy_validate_answers_ok_or_one_clear_error(tmp_path, text):
    from gate.cli import app

    path = tmp_path / "policy.yaml"
    path.write_text(text)
    result = CliRunner().invoke(app, ["policy", "validate", str(path)])
    if result.exit_code == 0:
        assert ": ok" in result.stdout
    else:
        assert isinstance(result.exception, PolicyError), repr(result.exception)


def test_gate_policy_validate_real_script_exit_4_one_line(tmp_path):
    from tests.conftest import run_gate

    bad = dict(EXAMPLE, interval="every minute")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    (tmp_path / "broken.yaml").write_text("name: web\nmetrics: [\n")
    for name in ("bad.yaml", "broken.yaml"):
        result = run_gate("policy", "validate", tmp_path / name)
        assert result.returncode == 4 and "Traceback" not in result.stderr
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "interval" in run_gate("policy", "validate", tmp_path / "bad.yaml").stderr


# -- the command line ----------------------------------------------------------------------------

arguments = st.lists(
    st.one_of(
        st.sampled_from(["--policy", "--json", "--canary", "--baseline", "--deployed-at", "--watch", "--store",
                         "--interval", "--lifetime", "--junit", "-p", "--", "--help-me"]),
        st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=15),
    ),
    max_size=8,
)

# A policy that loads and judges in a fraction of a second (simulated data, no account, no network):
# with it, `check` gets past the policy to the release and --deployed-at.
VALID_POLICY = ROOT / "examples" / "simulate.yaml"
# Hostile values that must be refused: exit 2 (usage) or 4 (could not judge), one clear line.
HOSTILE_DEPLOYED_AT = {
    "nan": "nan", "word": "yesterday", "impossible date": "2017-13-45", "huge epoch": "99999999999999999999",
    "future ISO": "2099-01-01T00:00:00Z", "future epoch": str(int(time.time()) + 86400 * 365),
}
HOSTILE_RELEASES = {
    "empty": "", "newline": "web-1\nweb-2", "ESC sequence": "web-\x1b[2J\x1b[31mred\x1b[0m",
    "very long": "w" * 20_000,
}
good_times = st.one_of(
    st.integers(int(time.time()) - 86400, int(time.time()) - 60).map(str),
    st.sampled_from(["2024-05-01T10:00:00Z", "2024-05-01T10:00:00+02:00"]),
)
text_tokens = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=15)
safe_paths = st.sampled_from(["gate.sqlite", "other.sqlite", "junit.xml", "out/j.xml"])


def units(hostile: bool):
    """Command-line pieces after `check RELEASE --policy VALID`: options always with a value (so
    the effective --deployed-at is known), a flag, `--`, or free text; no --watch (a real wait)."""
    times = st.one_of(good_times, st.sampled_from(sorted(HOSTILE_DEPLOYED_AT.values())), text_tokens) \
        if hostile else good_times
    return st.lists(
        st.one_of(
            st.tuples(st.just("--deployed-at"), times),
            st.tuples(st.sampled_from(["--canary", "--baseline"]), st.sampled_from(["canary", "baseline", "c-1"])),
            st.tuples(st.sampled_from(["--interval", "--lifetime"]), st.sampled_from(["1m", "5m", "1h", "2h"])),
            st.tuples(st.sampled_from(["--store", "--junit"]), safe_paths),
            st.sampled_from([("--json",), ("--",), ("--help-me",)]),
            text_tokens.map(lambda t: (t,)) if hostile else st.just(("--json",)),
        ),
        max_size=6,
    )


def effective_deployed_at(args: list[str]) -> str | None:
    """What click gives --deployed-at: the last value before any `--`."""
    value = None
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--deployed-at" and i + 1 < len(args):
            value = args[i + 1]
    return value


def assert_one_clear_error(result, refused: bool) -> None:
    """Click's usage error (2) or a GateError (4) with one clear line; never another exception."""
    assert result.exit_code in (0, 1, 2, 3, 4), (result.exit_code, result.output)
    exit_code = result.exit_code
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        assert isinstance(result.exception, GateError), repr(result.exception)
        message = str(result.exception)
        assert message.strip() and "\n" not in message.strip() and len(message) < 5000, message[:300]
        exit_code = 4  # what `main` (the console script) makes of a GateError
    if refused:
        assert exit_code in (2, 4), (result.exit_code, repr(result.exception), result.output[-500:])


@settings(max_examples=150, deadline=None, suppress_health_check=QUIET)
@given(st.sampled_from(["check", "replay", "history", "report", "promote", "rollback", "policy", "demo"]), arguments,
       st.integers(0, 2), st.one_of(st.sampled_from(["web-1.4.2", "r"]), text_tokens),
       units(hostile=False))
def test_random_command_lines_end_in_usage_or_gate_errors(tmp_path, monkeypatch, command, args, share, release,
                                                           tail):
    from gate.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GATE_STORE", str(tmp_path / "gate.sqlite"))
    for key in ("GATE_STORE_TABLE", "AWS_ENDPOINT_URL", "DD_API_KEY", "DD_APP_KEY", "SLACK_WEBHOOK_URL"):
        monkeypatch.delenv(key, raising=False)
    if command == "check" and share == 0:
        # A third of the checks get a valid policy, so parsing goes on to what comes after it.
        args = [release, "--policy", str(VALID_POLICY), *[a for unit in tail for a in unit]]
    if command == "demo":
        args = ["--pace", "0", *args][:3]  # a demo with good arguments is a whole release: keep it short
        if not any(a.startswith("-") for a in args[2:]):
            args = args[:2] + ["no-such-scenario"]
    if command in ("promote", "rollback"):
        args = [*args, "--dry-run"]  # never AWS calls in a property test
    result = CliRunner().invoke(app, [command, *args])
    assert_one_clear_error(result, refused=False)




@settings(max_examples=150, deadline=None, suppress_health_check=QUIET)
@given(st.one_of(st.sampled_from(["web-1.4.2", "r"]), st.sampled_from(sorted(HOSTILE_RELEASES.values())),
                 text_tokens),
       units(hostile=True))
def test_random_checks_with_a_valid_policy_refuse_hostile_releases_and_deploy_times(tmp_path, monkeypatch,
                                                                                     release, tail):
    """Past a valid policy: hostile --deployed-at values and release names are refused (2 or 4),
    everything else ends in a verdict or a clear error."""
    from gate.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GATE_STORE", str(tmp_path / "gate.sqlite"))
    for key in ("GATE_STORE_TABLE", "AWS_ENDPOINT_URL", "DD_API_KEY", "DD_APP_KEY", "SLACK_WEBHOOK_URL"):
        monkeypatch.delenv(key, raising=False)
    args = [release, "--policy", str(VALID_POLICY), *[a for unit in tail for a in unit]]
    result = CliRunner().invoke(app, ["check", *args])
    refused = release in HOSTILE_RELEASES.values() or effective_deployed_at(args) in HOSTILE_DEPLOYED_AT.values()
    assert_one_clear_error(result, refused=refused)


def refused_cleanly(result) -> None:
    """Through the real script: exit 2 or 4, no verdict, one short clear line, no traceback."""
    assert result.returncode in (2, 4), (result.returncode, result.stdout[-300:], result.stderr[-300:])
    assert result.stdout.strip() == "", result.stdout[-300:]
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr[-500:]
    assert "\x1b" not in result.stderr, "an escape sequence was echoed to the terminal"
    assert 0 < len(result.stderr) < 5000, len(result.stderr)
    if result.returncode == 4:
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr[-500:]


@pytest.mark.parametrize("value", [pytest.param(v, id=k) for k, v in HOSTILE_DEPLOYED_AT.items()])
def test_a_hostile_deployed_at_is_refused_with_one_clear_line(tmp_path, value):
    from tests.conftest import run_gate

    result = run_gate("check", "web-1.4.2", "--policy", VALID_POLICY, "--deployed-at", value,
                      "--store", tmp_path / "gate.sqlite", env={"GATE_STORE_TABLE": "", "SLACK_WEBHOOK_URL": ""},
                      cwd=tmp_path, timeout=60)
    refused_cleanly(result)


@pytest.mark.parametrize("release", [pytest.param(v, id=k) for k, v in HOSTILE_RELEASES.items()])
def test_a_hostile_release_name_is_refused_with_one_clear_line(tmp_path, release):
    from tests.conftest import run_gate

    result = run_gate("check", release, "--policy", VALID_POLICY, "--store", tmp_path / "gate.sqlite",
                      env={"GATE_STORE_TABLE": "", "SLACK_WEBHOOK_URL": ""}, cwd=tmp_path, timeout=60)
    refused_cleanly(result)


# -- names that would change a query -----------------------------------------------------------

INJECTIONS = ["}", "{", ",", " by ", '"', "'", "\n", "*", "!", " OR ", "(", ")", "$", "\\", "\t", "\x00", "#"]
hostile_names = st.builds(lambda a, bad, b: a + bad + b, st.text(max_size=8), st.sampled_from(INJECTIONS),
                          st.text(max_size=8))


@SETTINGS
@given(hostile_names)
def test_a_release_or_scope_that_would_change_a_datadog_query_is_refused(name):
    with pytest.raises(PolicyError, match="is not a Datadog tag"):
        check_scope(render_scope("version:{release}", name), "canary")
    with pytest.raises(PolicyError, match="is not a Datadog tag"):
        check_scope(name, "baseline")


def test_a_hostile_release_never_reaches_datadog(corpus, tmp_path):
    """Through the real CLI: a release naming itself into the scope is refused, nothing is sent."""
    from tests.conftest import run_gate
    from tests.test_reliability_faults import AA, datadog_env, datadog_policy, live

    with live(corpus, AA, ahead=0) as fake:
        for release in ("1.0} by {host", 'x"}.rollup(sum)', "a\nb"):
            result = run_gate("check", release, "--policy", datadog_policy(tmp_path), "--canary", "version:{release}",
                              "--deployed-at", str(fake.deployed_at), "--store", tmp_path / "gate.sqlite",
                              env=datadog_env(fake), cwd=tmp_path, timeout=60)
            # refused as a Datadog tag, or (a newline) as a release name at all
            assert result.returncode == 4, result.stderr
            assert "is not a Datadog tag" in result.stderr or "must be printable" in result.stderr, result.stderr
            assert "Traceback" not in result.stderr
        assert fake.timeseries_requests() == []


@SETTINGS
@given(st.text(max_size=30))
def test_cloudwatch_dimensions_carry_a_release_verbatim_or_refuse_control_characters(name):
    """CloudWatch dimensions are structured (no query language): any printable name goes through
    as exactly one dimension value; control characters are refused."""
    from gate.sources.cloudwatch import from_policy

    policy = parse_policy({
        "name": "web", "source": {"type": "cloudwatch", "options": {"region": "us-east-1"}},
        "canary": {"scope": "web-{release}"}, "baseline": {"scope": "web-stable"},
        "metrics": [{"name": "cpu", "kind": "gauge",
                     "queries": {"cloudwatch": {"namespace": "AWS/EC2", "metric": "CPUUtilization",
                                                "stat": "Average"}}}],
    })
    client = boto3.client("cloudwatch", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    sent = []
    client.meta.events.register("provide-client-params.monitoring.GetMetricData",
                                lambda params, **_: sent.append(copy.deepcopy(params)))
    source = from_policy(policy)
    source._client = client
    now = 1_800_000_000 // 60 * 60
    query = Query(tuple(policy.metrics), render_scope(policy.canary.scope, name), "web-stable",
                  now - 600, now, 60)
    controls = re.search(r"[\x00-\x1f\x7f]", name)
    with Stubber(client) as stubber:
        if not controls:
            stubber.add_response("get_metric_data", {"MetricDataResults": []}, {"MetricDataQueries": ANY,
                                                                                 "StartTime": ANY, "EndTime": ANY,
                                                                                 "ScanBy": ANY})
        try:
            source.fetch(query)
        except PolicyError:
            assert controls, name
            assert sent == []
            return
    assert not controls
    dims = [q["MetricStat"]["Metric"]["Dimensions"] for q in sent[0]["MetricDataQueries"]]
    assert [{"Name": "AutoScalingGroupName", "Value": f"web-{name}"}] in dims


# -- Lambda events -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def handler(tmp_path_factory):
    saved = dict(os.environ)
    os.environ.update(POWERTOOLS_TRACE_DISABLED="true", POWERTOOLS_METRICS_NAMESPACE="CanaryGateTest",
                      POWERTOOLS_LOG_LEVEL="CRITICAL",
                      GATE_STORE=str(tmp_path_factory.mktemp("lambda") / "gate.sqlite"))
    for key in ("GATE_STORE_TABLE", "GATE_IDEMPOTENCY_TABLE", "GATE_SECRET_ID", "DD_API_KEY", "DD_APP_KEY",
                "SLACK_WEBHOOK_URL", "GATE_REPORT_BUCKET"):
        os.environ.pop(key, None)
    try:
        module = import_handler("gate_lambda_handler_hostile")
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"lambda/handler.py is not importable here: {type(e).__name__}: {e}")
    yield module
    sys.modules.pop("gate_lambda_handler_hostile", None)
    os.environ.clear()
    os.environ.update(saved)


@st.composite
def events(draw):
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(json_values)
    event = {"release": draw(st.one_of(st.text(max_size=30), json_values)),
             "policy": draw(st.one_of(mutated_policies(), st.text(max_size=40), json_values))}
    for key in ("canary", "baseline", "deployed_at", "now", "build_url", "extra"):
        if draw(st.booleans()):
            event[key] = draw(json_values)
    if kind == 2:  # over HTTP (Function URL): the same, as a JSON body, sometimes broken
        body = json.dumps(event)
        return {"body": draw(st.sampled_from([body, body[: len(body) // 2], "", "bm90IGpzb24="])),
                "isBase64Encoded": draw(st.booleans())}
    return event


@settings(max_examples=150, deadline=None, suppress_health_check=QUIET)
@given(events())
def test_random_lambda_events_get_a_clear_error_never_a_crash_or_a_pass(handler, event):
    answer = handler.lambda_handler(copy.deepcopy(event), FakeContext(aws_request_id=str(uuid.uuid4())))
    assert isinstance(answer, dict)
    assert answer.get("verdict") != "pass", answer
    if answer.get("verdict") == "error":
        assert answer["exit_code"] == 4
        assert answer["statusCode"] in (400, 503), answer  # refused or could not judge, never a crash (500)
        assert answer["error"] and len(answer["error"]) < 5000
