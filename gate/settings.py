"""The gate's settings: every environment variable it reads, in one place.

No other module reads `os.environ`: each asks `current_settings()` for the `Settings` at the
moment it needs them. The values are kept as the environment gives them (a string, or the default shown
here when unset), and each is parsed where it is used, as before, so that a bad value is
refused where its message can name what it is for.

`current_settings()` reads the environment at each call rather than once per process: the Lambda
puts the keys of its secret into the environment at each invocation (`put_secrets`, rotated
values included), and the tests set variables per test.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from gate.errors import GateError

# Names the user sets (and messages quote).
DATADOG_URL, DATADOG_SITE, DATADOG_API_KEY, DATADOG_APP_KEY = "GATE_DATADOG_URL", "DD_SITE", "DD_API_KEY", "DD_APP_KEY"
SLACK_WEBHOOK_URL = "SLACK_WEBHOOK_URL"
WEBHOOK_URL, WEBHOOK_SECRET = "GATE_WEBHOOK_URL", "GATE_WEBHOOK_SECRET"
REFERENCE_BUCKET = "GATE_REFERENCE_BUCKET"
# Ranges of the settings counted in seconds (whole seconds, as `whole_seconds` reads them).
# The secret's cache: 0 fetches it at every invocation; longer than a day keeps a rotated-away
# key in use for longer than any rotation schedule would expect (and a huge one overflows
# Powertools' expiry: a crash at every invocation).
SECRET_MAX_AGE_RANGE = (0, 86400)
# A presigned S3 link: S3 refuses a SigV4 link valid longer than 7 days (it would be handed out and
# never open), and 0 or less is expired when it is handed out.
REPORT_LINK_RANGE = (1, 7 * 86400)
# The keys the Lambda's secret (GATE_SECRET_ID) holds, put into the environment by `put_secrets`.
SECRET_KEYS = (DATADOG_API_KEY, DATADOG_APP_KEY, SLACK_WEBHOOK_URL, WEBHOOK_URL, WEBHOOK_SECRET)


@dataclass(frozen=True)
class Settings:
    """The environment as the gate reads it; None where a variable is unset."""

    # Logging and errors (gate/cli.py)
    log_level: str | None = None  # GATE_LOG_LEVEL
    debug: str | None = None  # GATE_DEBUG: any value shows a crash's traceback
    # Datadog (gate/datadog_client.py)
    datadog_api_key: str | None = None
    datadog_app_key: str | None = None
    datadog_url: str | None = None  # a full base URL (tests, proxies)
    datadog_site: str | None = None  # datadoghq.eu, us5.datadoghq.com...
    # Notifications
    slack_webhook_url: str | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = None
    build_url: str | None = None  # BUILD_URL, set by Jenkins: the build's page, linked from messages
    # AWS: endpoint (tests, LocalStack) and regions. botocore reads AWS_DEFAULT_REGION itself;
    # AWS_REGION (the one Lambda and the other SDKs set) only through gate.aws.make_client.
    aws_endpoint_url: str | None = None
    aws_default_region: str | None = None
    aws_region: str | None = None
    # The store, the caches, the request budget, the reports
    store_table: str | None = None  # GATE_STORE_TABLE: DynamoDB, else SQLite
    store_path: str | None = None  # GATE_STORE
    store_ttl_days: str | None = None  # GATE_STORE_TTL_DAYS
    cache_dir: str | None = None  # GATE_CACHE_DIR
    reference_bucket: str | None = None  # GATE_REFERENCE_BUCKET
    budget_dir: str | None = None  # GATE_BUDGET_DIR
    report_bucket: str | None = None  # GATE_REPORT_BUCKET
    report_dir: str | None = None  # GATE_REPORT_DIR
    report_link_seconds: str | None = None  # GATE_REPORT_LINK_SECONDS
    # The Lambda
    tmpdir: str = "/tmp"  # TMPDIR
    metrics_namespace: str = "CanaryGate"  # POWERTOOLS_METRICS_NAMESPACE
    secret_id: str | None = None  # GATE_SECRET_ID
    secret_max_age: str = "900"  # GATE_SECRET_MAX_AGE, seconds
    idempotency_table: str | None = None  # GATE_IDEMPOTENCY_TABLE
    idempotency_ttl: str = str(6 * 3600)  # GATE_IDEMPOTENCY_TTL, seconds

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        read = environ.get
        defaults = cls()
        return cls(
            log_level=read("GATE_LOG_LEVEL"), debug=read("GATE_DEBUG"),
            datadog_api_key=read(DATADOG_API_KEY), datadog_app_key=read(DATADOG_APP_KEY),
            datadog_url=read(DATADOG_URL), datadog_site=read(DATADOG_SITE),
            slack_webhook_url=read(SLACK_WEBHOOK_URL), webhook_url=read(WEBHOOK_URL),
            webhook_secret=read(WEBHOOK_SECRET), build_url=read("BUILD_URL"),
            aws_endpoint_url=read("AWS_ENDPOINT_URL"), aws_default_region=read("AWS_DEFAULT_REGION"),
            aws_region=read("AWS_REGION"),
            store_table=read("GATE_STORE_TABLE"), store_path=read("GATE_STORE"),
            store_ttl_days=read("GATE_STORE_TTL_DAYS"), cache_dir=read("GATE_CACHE_DIR"),
            reference_bucket=read(REFERENCE_BUCKET), budget_dir=read("GATE_BUDGET_DIR"),
            report_bucket=read("GATE_REPORT_BUCKET"), report_dir=read("GATE_REPORT_DIR"),
            report_link_seconds=read("GATE_REPORT_LINK_SECONDS"),
            tmpdir=read("TMPDIR", defaults.tmpdir),
            metrics_namespace=read("POWERTOOLS_METRICS_NAMESPACE", defaults.metrics_namespace),
            secret_id=read("GATE_SECRET_ID"), secret_max_age=read("GATE_SECRET_MAX_AGE", defaults.secret_max_age),
            idempotency_table=read("GATE_IDEMPOTENCY_TABLE"),
            idempotency_ttl=read("GATE_IDEMPOTENCY_TTL", defaults.idempotency_ttl),
        )

    @property
    def region(self) -> str | None:
        """The environment's AWS region: AWS_DEFAULT_REGION (botocore's), else AWS_REGION."""
        return self.aws_default_region or self.aws_region

    @property
    def secrets(self) -> list[str]:
        """The values of the secret keys that are set (to redact them from messages)."""
        values = (self.datadog_api_key, self.datadog_app_key, self.slack_webhook_url, self.webhook_url,
                  self.webhook_secret)
        return [v for v in values if v]


def whole_seconds(name: str, text: str, bounds: tuple[int, int], example: str,
                  error: type[GateError] = GateError) -> int:
    """A setting counted in whole seconds, from `text` as the environment gave it: anything else
    (a unit, a fraction, a value outside `bounds`) is `error` naming the variable, never a
    ValueError's traceback. `example` shows a good value ("e.g. 900 for 15 minutes")."""
    low, high = bounds
    try:
        seconds = int(text)
    except ValueError:
        seconds = None
    if seconds is None or not low <= seconds <= high:
        raise error(f"{name}: {text[:40]!r} is not a whole number of seconds from {low} to {high} ({example})")
    return seconds


def current_settings() -> Settings:
    """The settings as the environment holds them now."""
    return Settings.from_environment()


def put_secrets(values: Mapping[str, object]) -> None:
    """The Lambda's secret into the environment the sources and notifiers read: each of
    SECRET_KEYS it holds is set, any other unset (the secret is the only place of a key: not a
    plain variable of the function, nor an older version's value)."""
    for key in SECRET_KEYS:
        if values.get(key):
            os.environ[key] = str(values[key])
        else:
            os.environ.pop(key, None)
