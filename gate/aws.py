"""AWS, one way for every part of the gate: how a client is made (bounded timeouts, one retry
policy, the region), and what an AWS error means (throttled, refused, transient or final).

botocore's standard retries (RETRIES) are the retry policy of each call. A caller with a budget
of its own (the CloudWatch source's `retry_seconds`) makes its client with `attempts=1` and owns
its retries, backing off by `backoff` and never past that budget: one layer, not botocore's three
attempts inside each of its own.
"""

from __future__ import annotations

import random
from typing import Any

from gate.errors import SourceError
from gate.settings import current_settings

NO_REGION = "no AWS region: set source.options.region or AWS_DEFAULT_REGION"

RETRIES = {"mode": "standard", "total_max_attempts": 4}  # the first attempt and 3 retries
CONNECT_TIMEOUT, READ_TIMEOUT = 5, 20

# "Slow down": the service is fine, the caller asks too often.
THROTTLED = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled", "RequestThrottledException",
    "TooManyRequestsException", "SlowDown", "RequestLimitExceeded", "LimitExceeded", "LimitExceededException",
    "BandwidthLimitExceeded",
})
# Worth asking again later: throttled, or the service failed for now (besides any 5xx or 429).
TRANSIENT = THROTTLED | {
    "InternalError", "InternalServerError", "InternalFailure", "ServiceUnavailable", "RequestTimeout",
    "RequestTimeoutException", "PriorRequestNotComplete",
}
# The credentials are refused or lack the permission: final, and the message says so.
DENIED = frozenset({
    "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "InvalidClientTokenId",
    "UnrecognizedClientException", "ExpiredToken", "ExpiredTokenException", "SignatureDoesNotMatch",
    "AuthFailure",
})


def error_code(error: Exception) -> str:
    """The AWS error code of a ClientError (`Throttling`, `AccessDenied`...); '' for any other error."""
    response = getattr(error, "response", None)
    return (response.get("Error", {}).get("Code") or "") if isinstance(response, dict) else ""


def error_message(error: Exception) -> str:
    """The message AWS gave with a ClientError ('' if none)."""
    response = getattr(error, "response", None)
    return (response.get("Error", {}).get("Message") or "") if isinstance(response, dict) else ""


def throttled(error: Exception) -> bool:
    return error_code(error) in THROTTLED


def denied(error: Exception) -> bool:
    code = error_code(error)
    return code in DENIED or "AccessDenied" in code


def transient(error: Exception) -> bool:
    """Whether asking again later may succeed: throttling, a 5xx or 429, a connection or timeout
    fault; not a refusal, a missing object, or parameters botocore rejected before sending."""
    from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return status >= 500 or status == 429 or error_code(error) in TRANSIENT
    return isinstance(error, BotoCoreError) and not isinstance(error, ParamValidationError)


def backoff(attempt: int) -> float:
    """Seconds to wait before asking again: exponential with jitter; callers never wait past
    their total budget."""
    return min(20.0, 0.5 * 2 ** attempt) * random.uniform(0.5, 1.0)


def make_client(service: str, region: str | None = None, *, attempts: int = RETRIES["total_max_attempts"],
                raw_errors: bool = False, timeouts: tuple[float, float] | None = None) -> Any:
    """A boto3 client, the gate's only way to make one: with bounded timeouts (CONNECT_TIMEOUT,
    READ_TIMEOUT) and botocore's standard retries (throttling and transient errors), up to
    `attempts` in all (1: the caller retries); the endpoint follows the boto3 chain
    (AWS_ENDPOINT_URL for tests), the region `region`, else botocore's chain, else the settings'
    AWS_REGION.

    Every client has those bounds: botocore's defaults (60 s to connect, 60 s per read, up to 5
    attempts, 10 for DynamoDB) let one hung endpoint hold a look, or the Lambda, for minutes.
    `raw_errors=True`: botocore's region chain only, and its errors raised as they are, for the
    callers that turn them into their own (the store, the reference cache, the request budget,
    the report upload, the Lambda's policy, secret and idempotency clients). `timeouts`: (connect,
    read) seconds, shorter for a call the gate can do without (the reference cache's STS call);
    by default the module's bounds as they are at the call (read then, not at import)."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, NoRegionError

    retries = {**RETRIES, "total_max_attempts": attempts}
    connect_timeout, read_timeout = timeouts or (CONNECT_TIMEOUT, READ_TIMEOUT)
    config = Config(retries=retries, connect_timeout=connect_timeout, read_timeout=read_timeout)
    if raw_errors:
        return boto3.client(service, region_name=region, config=config)
    try:
        try:
            return boto3.client(service, region_name=region, config=config)
        except NoRegionError:
            # botocore reads AWS_DEFAULT_REGION (or the profile), not AWS_REGION, which the AWS
            # CLI v2, the other SDKs and Lambda use: take it when botocore found nothing else.
            fallback = current_settings().aws_region
            if not fallback:
                raise
            return boto3.client(service, region_name=fallback, config=config)
    except NoRegionError:
        raise SourceError(NO_REGION) from None
    except BotoCoreError as e:
        raise SourceError(f"cannot create the AWS {service} client: {e}") from None
