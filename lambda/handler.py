"""AWS Lambda entry point: one evaluation of one release, the same answer as `gate check --json`.

Thin over `gate.analysis`: validate the event, resolve the policy, load the secrets into the
environment the sources read, evaluate once, answer. Called directly (`aws lambda invoke`, the
Step Functions loop) or over HTTP (Function URL / API Gateway: the request is in `body`).

Event (direct) or JSON body (HTTP):

    {"release": "web-1.2.3",
     "policy": {...inline policy...} | "s3://bucket/key.yaml" | "ssm:/canary-gate/web",
     "canary": "version:{release}",         optional, overrides the policy's scope
     "baseline": "version:stable",          optional
     "deployed_at": "2024-05-01T10:00:00Z", optional: default the first evaluation of the release
     "now": "2024-05-01T10:30:00Z",         optional: default the current interval of the policy
     "examine_past": true,                  optional: judge a deploy whose canary window is over
     "build_url": "https://jenkins/job/1/", optional: linked from the Slack message
     "rollout": true,                       optional: the policy's traffic steps (gate rollout): judge
                                            the current step; a fail sends the canary's traffic to 0
     "rollout_step": 2}                     optional, with rollout: set that step's weights instead of
                                            judging (allowed once the step before passed)

Answer: `Verdict.to_dict()` plus `exit_code` (0 pass, 1 fail, 3 inconclusive). A decisive verdict
is announced once, as `gate check` does: HTML report to S3 (GATE_REPORT_BUCKET; its presigned
link in `report_url`), Slack (SLACK_WEBHOOK_URL), Datadog event (when the policy asks). When the gate
cannot judge (bad event, bad policy, dead source, crash) the answer is an error, never a pass:
`{"statusCode": 4xx/5xx, "verdict": "error", "error": "...", "exit_code": 4}`.

Pre-flight actions (no store, no announcement): `{"action": "plan", "release": ..., "policy": ...,
"canary_share": 0.05, "at": ...}` answers as `gate plan --json` (exit_code 0 ok, 3 too short);
`{"action": "backtest", "policy": ..., "days": 7, "windows": 8, "recommend": false, "canary_share": 0.05}` as
`gate backtest --json` (exit_code 0 fit, 3 not: `backtest.exit_reasons`), on one core: a
backtest of more than MAX_LAMBDA_BACKTEST_RUNS judged canaries is refused (400) with a message
pointing to the CLI, not split. A request they cannot answer (a history too short for the policy,
a share or a span out of range, an `at` or `until` ahead of the clock or where the source holds no
history) is a 400 naming the event's field, not a retryable 503.

A policy whose source is a demo (`simulate`, `replay`: made-up or recorded data) is refused (400):
the Lambda gates real releases.

Settings (environment): GATE_STORE_TABLE (DynamoDB evaluation store), GATE_IDEMPOTENCY_TABLE
(a retried invocation for the same deploy of the release and moment returns the first answer instead
of judging and notifying again; a different request for them is refused; kept GATE_IDEMPOTENCY_TTL
seconds, 21600), GATE_SECRET_ID (a Secrets Manager
JSON secret holding DD_API_KEY, DD_APP_KEY, SLACK_WEBHOOK_URL, GATE_WEBHOOK_URL, GATE_WEBHOOK_SECRET;
with it, these are read from it alone), POWERTOOLS_* (logging, metrics
namespace, tracing).
"""

from __future__ import annotations

import base64
import json
import math
import os
import time
import traceback
from functools import lru_cache
from typing import Annotated, Any, Literal, TypedDict

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.parameters.base import DEFAULT_PROVIDERS
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

# The gate's modules load at init; statsmodels, scipy and the Datadog client do not: they load
# when a fit (not with a cached reference) or a fetch first needs them, so a cold start that
# only answers a retry or a bad event does not pay for them (bench/lambda_import.py).
from gate.analysis import Analysis, announce, current_moment, open_release, register_release
from gate.aws import error_code, make_client, transient
from gate.cache import lambda_cache
from gate.errors import CrashError, GateError, PolicyError, ReleaseError, SourceError, validation_problems
from gate.lifecycle import LAMBDA, is_registered_policy
from gate.policy import MAX_POLICY_BYTES, Policy, parse_policy, policy_from_text
from gate.release import iso, parse_time, release_name
from gate.rollout import RolloutError
from gate import settings
from gate.sources import DEMO_SOURCES, open_source
from gate.store import SqliteStore, open_store
from gate.verdict import EXIT_ERROR
from gate.errors import InputError  # a value out of range: the request is wrong (400)

SERVICE = "canary-gate"
# The Datadog keys, Slack's URL, the webhook's URL and signing secret (gate/notify/webhook.py): never plain
# variables of the function.
SECRET_KEYS = settings.SECRET_KEYS

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=settings.current_settings().metrics_namespace, service=SERVICE)
tracer = Tracer(service=SERVICE)


# -- the event -------------------------------------------------------------------------------


def _moment(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("a moment is ISO 8601 or epoch seconds")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a moment")
        value = str(int(value))  # epoch seconds, checked like any other moment below
    if isinstance(value, str):
        return parse_time(value)  # its ValueError says what is wrong (no time zone, not a moment)
    raise ValueError(f"{value!r} is not a moment (ISO 8601 like 2024-05-01T10:00:00Z, or epoch seconds)")


Moment = Annotated[int, BeforeValidator(_moment)]


class EvaluateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    release: Annotated[str, BeforeValidator(release_name)] = Field(min_length=1, max_length=200)
    policy: dict[str, Any] | str = Field(description="Inline policy, s3://bucket/key or ssm:/name.")
    canary: str | None = Field(default=None, min_length=1, max_length=200)
    baseline: str | None = Field(default=None, min_length=1, max_length=200)
    deployed_at: Moment | None = None
    now: Moment | None = None
    examine_past: bool = Field(default=False, strict=True, description="Judge a deploy whose window is over.")
    build_url: str | None = Field(default=None, max_length=2000, description="Jenkins build, linked from Slack.")
    rollout: bool = Field(default=False, strict=True, description="Step the policy's traffic (gate rollout).")
    rollout_step: int | None = Field(default=None, ge=1, le=20, strict=True,
                                     description="With rollout: set this step's weights (a step change).")

    @model_validator(mode="after")
    def _step_of_a_rollout(self) -> EvaluateRequest:
        if self.rollout_step is not None and not self.rollout:
            raise ValueError("rollout_step: only with \"rollout\": true (a step of the policy's traffic rollout)")
        return self


class PlanRequest(BaseModel):
    """`{"action": "plan", ...}`: the pre-flight of `gate plan`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["plan"]
    release: Annotated[str, BeforeValidator(release_name)] = Field(min_length=1, max_length=200)
    policy: dict[str, Any] | str
    canary_share: float = Field(default=0.05, gt=0, le=1, allow_inf_nan=False, strict=True)
    at: Moment | None = None


class BacktestRequest(BaseModel):
    """`{"action": "backtest", ...}`: `gate backtest`, if it fits in one invocation (see preflight)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["backtest"]
    policy: dict[str, Any] | str
    days: float = Field(default=7, gt=0, le=366, allow_inf_nan=False, strict=True)
    windows: int = Field(default=8, ge=1, le=1000, strict=True)
    recommend: bool = Field(default=False, strict=True)
    until: Moment | None = None
    canary_share: float = Field(default=0.05, gt=0, le=1, allow_inf_nan=False, strict=True)


# A backtest judges its canaries one after another in Lambda (no second core, no /dev/shm for a
# process pool); past this many it would outlive the function's timeout: refused, not split.
MAX_LAMBDA_BACKTEST_RUNS = 400


class BadRequest(Exception):
    """The event itself is wrong: answered 400, naming the field."""


def parse_request(event: Any) -> EvaluateRequest | PlanRequest | BacktestRequest:
    if not isinstance(event, dict):
        raise BadRequest(f"event: expected a JSON object, got {type(event).__name__}")
    action = event.get("action", "evaluate")
    # Only a name picks a model: a list or an object is no action (and no key of the mapping).
    models = {"evaluate": EvaluateRequest, "plan": PlanRequest, "backtest": BacktestRequest}
    model = models.get(action) if isinstance(action, str) else None
    if model is None:
        raise BadRequest(f"action: {str(action)[:60]!r} is not evaluate, plan or backtest")
    try:
        return model.model_validate(event if action != "evaluate" else {k: v for k, v in event.items() if k != "action"})
    except ValidationError as e:
        raise BadRequest(validation_problems(e, root="event")) from None


def preflight(request: PlanRequest | BacktestRequest) -> dict:
    """`plan` and `backtest`, as the CLI answers them (`--json`), plus `exit_code`."""
    policy = live_policy(request.policy)
    source = open_source(policy)
    if isinstance(request, PlanRequest):
        from gate.plan import Options, plan

        at = request.at if request.at is not None else int(time.time())
        fields = Options(canary_share="canary_share", at="at" if request.at is not None else None)
        result = plan(policy, source, request.release, share=request.canary_share, deployed_at=at,
                      options=fields).to_dict()
        return {**result, "exit_code": 0 if result["verdict"] == "ok" else 3}
    from gate.backtest import main_specs, tolerance_specs

    runs = request.windows * (len(main_specs(policy)) + (len(tolerance_specs(policy)) if request.recommend else 0))
    if runs > MAX_LAMBDA_BACKTEST_RUNS:
        raise PolicyError(f"backtest: {runs} judged canaries would outlive the Lambda's time (at most "
                          f"{MAX_LAMBDA_BACKTEST_RUNS}): ask fewer windows or no recommendation, or run "
                          "`gate backtest` from the command line (it uses every core)")
    from gate.backtest import Options, backtest, exit_code

    fields = Options(days="days", windows="windows", until="until", canary_share="canary_share")  # refusals name the event's fields
    result = backtest(policy, source, days=request.days, windows=request.windows, until=request.until, jobs=1,
                      recommend=request.recommend, canary_share=request.canary_share, options=fields).to_dict()
    return {**result, "exit_code": exit_code(result)}  # 3 when it would roll back clean releases (exit_reasons)


def is_http(event: Any) -> bool:
    """A Function URL or API Gateway request (direct events never have a `body`)."""
    return isinstance(event, dict) and "body" in event


def http_body(event: dict) -> Any:
    body = event.get("body") or ""
    if not isinstance(body, str):  # API Gateway always sends the body as text
        raise BadRequest(f"body: expected the JSON request as text, got a JSON {type(body).__name__}")
    try:
        if event.get("isBase64Encoded"):
            body = base64.b64decode(body).decode("utf-8")
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"body: not valid JSON ({e})") from None


# -- what the event refers to ----------------------------------------------------------------


def live_policy(reference: dict | str, fresh: bool = False) -> Policy:
    """The policy, refused when its source is a demo (simulated or recorded data): a verdict of
    the Lambda promotes or rolls back a real release, so it must come from its real metrics.
    `fresh`: an SSM policy read now, not the copy this container keeps."""
    policy = load_policy(reference, fresh)
    if policy.source.type in DEMO_SOURCES:
        raise PolicyError(f"source.type: {policy.source.type!r} judges made-up or recorded data, not the release: "
                          "the Lambda judges live metrics only (datadog, cloudwatch)")
    return policy


def load_policy(reference: dict | str, fresh: bool = False) -> Policy:
    """An inline mapping, or YAML/JSON text from S3 (`s3://bucket/key`) or SSM (`ssm:/name`)."""
    if isinstance(reference, dict):
        return parse_policy(reference, origin="policy")
    if reference.startswith("s3://"):
        bucket, _, key = reference.removeprefix("s3://").partition("/")
        if not bucket or not key:
            raise PolicyError(f"policy: {reference!r} is not s3://bucket/key")
        text = _read_s3(bucket, key, reference)
    elif reference.startswith("ssm:"):
        if not reference.removeprefix("ssm:").strip():
            raise PolicyError(f"policy: {reference!r} names no parameter (ssm:/name)")
        text = _read_ssm(reference, fresh)
    else:
        raise PolicyError(f"policy: expected a mapping, s3://bucket/key or ssm:/name, got {reference[:100]!r}")
    return policy_from_text(text, origin=reference)


def _read_ssm(reference: str, fresh: bool = False) -> str:
    """The text of an `ssm:/name` policy, kept by the container for 5 minutes (`fresh`: read again
    now, and kept from now)."""
    from botocore.exceptions import BotoCoreError

    try:
        # The provider get_parameter uses, with the gate's bounded client (powertools makes one
        # with botocore's 60 s timeouts); again after parameters.clear_caches() empties them.
        if "ssm" not in DEFAULT_PROVIDERS:
            DEFAULT_PROVIDERS["ssm"] = parameters.SSMProvider(boto3_client=make_client("ssm", raw_errors=True))
        # Decrypted: a SecureString policy is read as its text, not its ciphertext.
        return parameters.get_parameter(reference.removeprefix("ssm:"), max_age=300, decrypt=True,
                                        force_fetch=fresh)
    except parameters.exceptions.GetParameterError as e:
        # Powertools wraps the SDK's error: the original is the context.
        raise _unreadable(reference, e.__cause__ or e.__context__, str(e)) from None
    except BotoCoreError as e:  # the client could not be made (no region): before powertools wraps anything
        raise _unreadable(reference, e, str(e)) from None


def is_ssm(reference: dict | str) -> bool:
    return isinstance(reference, str) and reference.startswith("ssm:")


def _read_s3(bucket: str, key: str, reference: str) -> bytes:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        body = make_client("s3", raw_errors=True).get_object(Bucket=bucket, Key=key)["Body"]
        return body.read(MAX_POLICY_BYTES + 1)  # more is refused as too large
    except (ClientError, BotoCoreError) as e:
        raise _unreadable(reference, e, (error_code(e) or "error") if isinstance(e, ClientError) else str(e)) from None


class PolicyUnavailable(GateError):
    """The policy's store failed for now (throttled, unreachable, 5xx): could not judge, 503, and
    the loop asks again; a missing or forbidden policy stays a PolicyError (400, final)."""


def _unreadable(reference: str, cause: BaseException | None, detail: str) -> GateError:
    from botocore.exceptions import NoRegionError

    if isinstance(cause, NoRegionError):  # no client can be made: asking again changes nothing
        return PolicyError(f"policy: cannot read {reference}: no AWS region (set AWS_DEFAULT_REGION)")
    # A connection fault, a timeout, throttling or a 5xx is not the policy's fault: asked again.
    if cause is not None and transient(cause):
        return PolicyUnavailable(f"policy: cannot read {reference} for now: {detail}")
    return PolicyError(f"policy: cannot read {reference}: {detail}")


@lru_cache(maxsize=1)
def _secrets_provider() -> parameters.SecretsProvider:
    return parameters.SecretsProvider(boto3_client=make_client("secretsmanager", raw_errors=True))


def load_secrets() -> list[str]:
    """Put the keys of the `GATE_SECRET_ID` secret into the environment the sources and notifiers
    read; a key the secret does not hold is unset (a plain variable of the function is never used).

    Cached by Parameters for `GATE_SECRET_MAX_AGE` seconds (900): fetched once per warm
    container, not per invocation, so a value rotated away is still used for at most that long.
    Returns the secret values, only to redact them from errors.
    """
    configured = settings.current_settings()
    secret_id = configured.secret_id
    if not secret_id:
        return configured.secrets
    max_age = settings.whole_seconds("GATE_SECRET_MAX_AGE", configured.secret_max_age,
                                     settings.SECRET_MAX_AGE_RANGE, "e.g. 900 for 15 minutes, 0 to fetch it every time")
    try:
        values = _secrets_provider().get(secret_id, transform="json", max_age=max_age)
    except (parameters.exceptions.GetParameterError, parameters.exceptions.TransformParameterError) as e:
        raise GateError(f"cannot read the secret {secret_id}: {str(e)[:300]}") from None
    if not isinstance(values, dict):
        raise GateError(f"the secret {secret_id} must be a JSON object with {', '.join(SECRET_KEYS)}")
    settings.put_secrets(values)
    return [str(v) for k, v in values.items() if k in SECRET_KEYS and v]


def redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


@lru_cache(maxsize=4)
def _store(table: str | None, path: str | None, endpoint: str | None) -> Any:
    # Cached per container (a boto3 client is slow to build); the key follows the environment.
    if table:
        return open_store()
    # No table: SQLite in /tmp, the only writable place in Lambda.
    return SqliteStore(path or os.path.join(settings.current_settings().tmpdir, "gate.sqlite"))


def store() -> Any:
    configured = settings.current_settings()
    return _store(configured.store_table, configured.store_path, configured.aws_endpoint_url)


@lru_cache(maxsize=4)
def _reference_cache(folder: str, bucket: str | None, endpoint: str | None) -> Any:
    # Cached per container, as the store; /tmp is the only writable place.
    return lambda_cache(folder)


def reference_cache() -> Any:
    configured = settings.current_settings()
    folder = configured.cache_dir or os.path.join(configured.tmpdir, "gate-cache")
    return _reference_cache(folder, configured.reference_bucket, configured.aws_endpoint_url)


# -- one evaluation ----------------------------------------------------------------------------


class Judgement(TypedDict):
    """The question one evaluation answers: the request with its policy resolved and parsed (once),
    and the moment to judge. Its JSON form (the policy as its fields) is what idempotency hashes."""

    release: str
    policy: Policy
    canary: str | None
    baseline: str | None
    deployed_at: int | None
    now: int
    examine_past: bool
    build_url: str | None
    rollout: bool  # a look at the policy's traffic steps (gate rollout), not a check
    rollout_step: int | None  # with rollout: set this step's weights (a step change)
    deploy: str | None  # the registered deploy asked about (gate.lifecycle.Deploy.id), under idempotency


@tracer.capture_method
def judge(request: Judgement) -> dict:
    """Judge `request["release"]` at `request["now"]` and record it. Under idempotency, runs once
    per (release, deploy, now, rollout): a retry gets the recorded answer back."""
    policy, now = request["policy"], request["now"]
    # What was learned of this deploy's history (the seasonal model and its history fetch are the
    # costly part of an evaluation) is shared by the stack's containers (GATE_REFERENCE_BUCKET).
    cache = reference_cache()
    # The same rules as `gate check`: a re-deploy restarts the release, an old window is refused.
    analysis = open_release(policy, request["release"], now, open_source=open_source, store=store(),
                            requested=request["deployed_at"], canary=request["canary"],
                            baseline=request["baseline"], examine_past=request["examine_past"],
                            recorded_deploy=False, names=LAMBDA, clock=time.time, cache=cache)
    if request.get("deploy") not in (None, analysis.deploy.id):
        raise ReleaseError(f"release {request['release']!r} was redeployed while this request was judged "
                           f"({request['deploy']} is now {analysis.deploy.id}): ask again for the new deploy")
    try:
        return rollout(analysis, request) if request["rollout"] else check(analysis, request)
    except GateError as e:
        # The deploy is registered by now: a loop that pins its deploy learns it from a failed
        # first look too (else its next look would ask about whatever deploy is registered then).
        e.same_deploy = same_deploy(analysis)["same_deploy"]  # type: ignore[attr-defined]
        raise


def check(analysis: Analysis, request: Judgement) -> dict:
    """One evaluation of the deploy at `request["now"]`, recorded and announced (as `gate check`)."""
    policy, now = analysis.policy, request["now"]
    started = time.perf_counter()
    evaluation = analysis.evaluation(now)
    verdict = evaluation.verdict
    metrics.add_metric(name="EvaluationDuration", unit=MetricUnit.Milliseconds,
                       value=round((time.perf_counter() - started) * 1000, 1))
    metrics.add_dimension(name="Outcome", value=verdict.verdict)
    metrics.add_metric(name="Verdicts", unit=MetricUnit.Count, value=1)
    # interval_seconds: when to ask again (the Step Functions loop waits that long).
    answer = {**verdict.to_dict(), "exit_code": verdict.exit_code, "interval_seconds": policy.interval,
              **same_deploy(analysis)}
    # As `gate check` does; the report only with a bucket to keep it (GATE_REPORT_BUCKET).
    report = announce(analysis, evaluation, report=bool(settings.current_settings().report_bucket),
                      build_url=request["build_url"])
    if report:
        answer["report_url"] = report
    return answer


def same_deploy(analysis: Analysis) -> dict:
    """`same_deploy`: the request fields that ask about this deploy again (the Step Functions loop
    started without deployed_at adds them to its later looks, so a redeploy meanwhile is not
    judged by it)."""
    return {"same_deploy": {"deployed_at": iso(analysis.deploy.deployed_at)}}


def rollout(analysis: Analysis, request: Judgement) -> dict:
    """A traffic rollout (gate.rollout): one look at the current step (a fail sends the canary's
    traffic back to 0 at once), or with `rollout_step` one step change, which judges nothing. The
    answer's verdict is the rollout's (pass only after the last step), `rollout` says where it is."""
    from gate.rollout import Rollout
    from gate.traffic import forward_of

    analysis.policy.rollout_or_refuse()
    machine = Rollout(analysis, forward_of(analysis.policy), clock=time.time)
    step = request["rollout_step"]
    seen = machine.advance(step) if step is not None else machine.look(request["now"])
    metrics.add_dimension(name="Outcome", value=f"rollout-{seen.status}")
    metrics.add_metric(name="RolloutLooks", unit=MetricUnit.Count, value=1)
    answer = {**seen.to_dict(), "interval_seconds": analysis.policy.interval, **same_deploy(analysis)}
    if seen.to_announce:
        report = announce(machine.judged, machine.evaluation, report=bool(settings.current_settings().report_bucket),
                          build_url=request["build_url"])
        if report:
            answer["report_url"] = report
    return answer


# A retry comes within minutes of its call; a year is far past any use, and far below what would
# overflow Powertools' expiry (the clock plus the TTL past the year 9999: a crash, not a TTL).
MAX_IDEMPOTENCY_TTL = 366 * 86400


def idempotency_ttl() -> int:
    """GATE_IDEMPOTENCY_TTL: how long a retry is answered with the first answer, in whole seconds
    (as GATE_SECRET_MAX_AGE), 1 s to 366 days. A bad value is could-not-judge naming the variable,
    checked before the deploy is registered."""
    return settings.whole_seconds("GATE_IDEMPOTENCY_TTL", settings.current_settings().idempotency_ttl,
                                  (1, MAX_IDEMPOTENCY_TTL), "e.g. 21600 for 6 hours")


@lru_cache(maxsize=4)
def _idempotent_judge(table: str, endpoint: str | None, ttl: int):
    config = IdempotencyConfig(
        # The key is the release and the moment judged. A retry must also ask the same question:
        # everything else that changes the answer (the policy as parsed, hashed as its JSON
        # fields, the scopes, the registered deploy's time: see `evaluate`) is validated, and a
        # request that differs is refused (IdempotencyValidationError), never answered with the
        # verdict of another one.
        # build_url only changes a link.
        # `rollout` too: a rollout look and a plain check of the same moment are two questions (a
        # check's cached pass once answered a look whose rollout had not started: exit 0).
        # The deploy (its registered identity, not its time): a redeploy asked at a moment an
        # earlier deploy of the release was judged at is a new question, never that deploy's answer.
        event_key_jmespath="[release, deploy, now, rollout]",
        payload_validation_jmespath="[policy, canary, baseline, deployed_at]",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=ttl,
        response_hook=_replayed,
    )
    layer = DynamoDBPersistenceLayer(table_name=table, boto3_client=make_client("dynamodb", raw_errors=True))
    wrapped = idempotent_function(data_keyword_argument="request", persistence_store=layer, config=config)(
        _judge_once
    )
    return wrapped, config


def _replayed(response: dict, record: Any) -> dict:
    """A retry answered from the idempotency table: counted, not judged (nor notified) again."""
    metrics.add_metric(name="RetriesAnswered", unit=MetricUnit.Count, value=1)
    logger.info("retry answered with the recorded verdict")
    return response


def _judge_once(request: Judgement) -> dict:
    # What idempotency wraps: `judge` as it is at the call (the module's, looked up each time).
    return judge(request)


# What the request itself is refused for (400, final): the loop ends on it.
REFUSALS = (PolicyError, ReleaseError, RolloutError, InputError)


def evaluate_current(request: EvaluateRequest, context: Any) -> dict:
    """`evaluate`, and once more if it was refused (any 400: another policy than the one the deploy
    was registered with, no rollout section, ...) while the SSM policy it judged with was an
    outdated copy kept by this container: a final 400 for a stale cache would end the loop and
    roll back a healthy canary. A policy that cannot be read is refused as such, not read again."""
    policy = current_policy(request)
    try:
        return evaluate(request, policy, context)
    except REFUSALS:
        current = live_policy(request.policy, fresh=True) if is_ssm(request.policy) else policy
        if current == policy:
            raise
        logger.info("the policy changed since this container read it: judged again with the current one")
        return evaluate(request, current, context)


def current_policy(request: EvaluateRequest) -> Policy:
    """The policy to judge with. The SSM copy this container keeps (5 minutes) judges only the
    deploy registered with it; a call that would register a deploy, restart it or replace its
    policy reads SSM now: a deploy registered with an outdated copy would be refused to every
    container that reads the current one, and its loop would end."""
    policy = live_policy(request.policy)
    if is_ssm(request.policy) and not registered_with(policy, request):
        return live_policy(request.policy, fresh=True)
    return policy


def registered_with(policy: Policy, request: EvaluateRequest) -> bool:
    """Whether `request` asks about the release's registered deploy, registered with `policy`."""
    registered = store().release(request.release)
    return (registered is not None and is_registered_policy(registered["info"], policy) is True
            and request.deployed_at in (None, registered["deployed_at"]))


def evaluate(request: EvaluateRequest, policy: Policy, context: Any) -> dict:
    now = request.now if request.now is not None else current_moment(policy, time.time)
    question = Judgement(**{**request.model_dump(), "policy": policy, "now": now, "deploy": None})
    configured = settings.current_settings()
    table = configured.idempotency_table
    # A step change judges nothing and is idempotent by itself (a retry finds the step taken);
    # under the key [release, deploy, now] it would be answered with the look of the same moment.
    if not table or request.rollout_step is not None:
        return judge(question)
    ttl = idempotency_ttl()
    deploy = register_release(policy, request.release, now, store=store(), requested=request.deployed_at,
                              canary=request.canary, baseline=request.baseline, examine_past=request.examine_past,
                              names=LAMBDA, clock=time.time)
    wrapped, config = _idempotent_judge(table, configured.aws_endpoint_url, ttl)
    config.register_lambda_context(context)
    try:
        # The deploy asked about is the registered one, however the request named it: a look
        # without deployed_at and one that pins it (its `same_deploy`, as a loop adds it after
        # its first answer) at the same moment are one question, answered once.
        return wrapped(request={**question, "deploy": deploy.id, "deployed_at": deploy.deployed_at})
    except GateError as e:
        # Registered above: whatever failed after (the source opened, the history read) names the
        # deploy, for a loop that pins it (see `judge`).
        if not getattr(e, "same_deploy", None):
            e.same_deploy = {"deployed_at": iso(deploy.deployed_at)}  # type: ignore[attr-defined]
        raise


# -- the handler -------------------------------------------------------------------------------


def _cause(e: BaseException) -> str:
    """The AWS error behind a Powertools wrapper, on one line: `ResourceNotFoundException: ...`."""
    cause = e.__cause__ or e
    code = error_code(cause)  # '' for a fault without an AWS answer (a timeout: its `response` is None)
    text = f"{code}: {cause}" if code else f"{type(cause).__name__}: {cause}"
    return " ".join(text.split())[:300]


def error(status: int, message: str, release: str | None = None) -> dict:
    answer = {"statusCode": status, "verdict": "error", "error": message, "exit_code": EXIT_ERROR}
    if release:
        answer["release"] = release
    return answer


def answer(event: Any, context: Any) -> dict:
    """The result of one event: a verdict (with exit_code) or an error (exit_code 4)."""
    release, secrets = None, []
    try:
        if is_http(event):
            event = http_body(event)
        release = event.get("release") if isinstance(event, dict) else None
        release = release if isinstance(release, str) else None
        request = parse_request(event)
        logger.append_keys(release=getattr(request, "release", None))
        secrets = load_secrets()
        result = evaluate_current(request, context) if isinstance(request, EvaluateRequest) else preflight(request)
    except BadRequest as e:
        result = error(400, str(e), release)
    except REFUSALS as e:  # the request contradicts itself, the store or the ALB: final
        result = error(400, redact(str(e), secrets), release)
    except IdempotencyAlreadyInProgressError:
        result = error(409, "an evaluation of this release at this moment is already in progress", release)
    except IdempotencyValidationError:
        result = error(400, "this release was already judged at this moment for a different request (policy, "
                            "canary, baseline or deployed_at differ): a retry must repeat the request, a new "
                            "question needs another moment or release name", release)
    except IdempotencyPersistenceLayerError as e:
        table = settings.current_settings().idempotency_table
        result = error(503, f"could not judge: the idempotency table {table} is unusable: {_cause(e)}", release)
    except GateError as e:
        if isinstance(e, SourceError):
            metrics.add_metric(name="SourceErrors", unit=MetricUnit.Count, value=1)
        if isinstance(e, CrashError):  # a bug, answered as could-not-judge: its traceback, as a 500's
            logger.error("crash while judging", extra={"traceback": redact(traceback.format_exc(), secrets)})
        said = redact(str(e), secrets)  # a CrashError's already starts with "could not judge"
        result = error(503, said if said.startswith("could not judge") else f"could not judge: {said}", release)
        if getattr(e, "same_deploy", None):
            result["same_deploy"] = e.same_deploy
    except Exception as e:  # noqa: BLE001 - a crash must never read as a pass
        logger.error("internal error", extra={"traceback": redact(traceback.format_exc(), secrets)})
        result = error(500, f"internal error: {type(e).__name__}: {redact(str(e), secrets)}", release)
    if result.get("verdict") == "error":
        metrics.add_dimension(name="Outcome", value="error")
        metrics.add_metric(name="Verdicts", unit=MetricUnit.Count, value=1)
        logger.warning("could not judge", extra={"error": result["error"], "status": result["statusCode"]})
    else:
        logger.info("verdict", extra={"verdict": result.get("verdict"), "exit_code": result["exit_code"],
                                      "evaluated_at": result.get("evaluated_at"),
                                      "reason": str(result.get("reason", ""))[:500]})
    return result


@logger.inject_lambda_context(log_event=False, clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: Any, context: Any) -> dict:
    result = answer(event, context)
    if is_http(event):
        status = result.pop("statusCode", 200)
        return {"statusCode": status, "headers": {"content-type": "application/json"}, "body": json.dumps(result)}
    return result
