"""The Datadog client's set-up, one home for the source (gate/sources/datadog.py) and the event
notifier (gate/notify/datadog_event.py): the keys, the site or base URL, and the official
client's configuration from the settings. Keys never leave the client's headers."""

from __future__ import annotations

import re

from gate.errors import SourceError
from gate.settings import DATADOG_API_KEY, DATADOG_APP_KEY, DATADOG_SITE, DATADOG_URL, current_settings

# The variables' names, as messages quote them.
URL_ENV, SITE_ENV, API_KEY_ENV, APP_KEY_ENV = DATADOG_URL, DATADOG_SITE, DATADOG_API_KEY, DATADOG_APP_KEY

DEFAULT_SITE = "datadoghq.com"  # the official client's, when DD_SITE is not set
_KEY = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces: what a header value can carry


def key_forms() -> list[str]:
    """The keys as they may show in a message: raw, trimmed, and as Python shows them in a
    repr (a key with a newline prints as `...\\n`); longest first."""
    forms = set()
    settings = current_settings()
    for value in (settings.datadog_api_key, settings.datadog_app_key):
        if value:
            forms.update({value, value.strip(), repr(value)[1:-1]})
    return sorted((f for f in forms if len(f) >= 4), key=len, reverse=True)


def origin(options: object = None) -> str:
    """Where a Datadog policy's data comes from, as the reference cache keys it: the base URL
    (GATE_DATADOG_URL), else the site (DD_SITE, Datadog's default when unset), as `configuration`
    chooses. Never an API key: it would tell organisations apart, but it is a secret, and a cache
    entry's name must not become a way to test a guessed one."""
    settings = current_settings()
    if settings.datadog_url:
        return f"datadog url {settings.datadog_url.strip().rstrip('/')}"
    return f"datadog site {(settings.datadog_site or DEFAULT_SITE).strip().lower()}"


def configuration(timeout: float):
    """The official client's configuration from the environment: keys from DD_API_KEY /
    DD_APP_KEY, site from DD_SITE, or a full base URL from GATE_DATADOG_URL. No retries of its
    own (ours are budgeted in time) and raw answers (parsed by us: faster, and a malformed body
    is ours to report)."""
    from datadog_api_client import Configuration

    settings = current_settings()
    keys = {API_KEY_ENV: settings.datadog_api_key, APP_KEY_ENV: settings.datadog_app_key}
    missing = [name for name, value in keys.items() if not value]
    if missing:
        raise SourceError(f"{' and '.join(missing)} not set: the Datadog source needs both keys")
    for name, value in keys.items():
        # Keys go in headers: a stray newline or space (a key pasted with its line end) would be
        # refused by the HTTP client with the value in its message. Never show the value.
        if not _KEY.fullmatch(value):
            raise SourceError(
                f"{name} holds characters a Datadog key cannot have (whitespace, a line end, "
                "non-ASCII): check how it is set"
            )
    url = settings.datadog_url
    config = Configuration(host=url.rstrip("/") if url else None, request_timeout=timeout)
    if not url and settings.datadog_site:
        config.server_variables["site"] = settings.datadog_site
    try:
        config.host  # noqa: B018 - validates DD_SITE now rather than at the first request
    except ValueError:
        raise SourceError(f"{SITE_ENV}: unknown Datadog site {settings.datadog_site!r}") from None
    config.api_key["apiKeyAuth"] = keys[API_KEY_ENV]
    config.api_key["appKeyAuth"] = keys[APP_KEY_ENV]
    config.enable_retry = False
    config.retry_policy = False  # urllib3: no silent retries of its own
    config.preload_content = False
    return config
