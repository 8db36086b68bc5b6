"""A decisive verdict as a Datadog event (v1 events API), so it shows on the service's
dashboards next to the deployment. Enabled by `notify.datadog_event: true` in a Datadog policy.

Like the Slack message it is a courtesy: whatever Datadog answers, `notify` returns instead of
raising, so it never changes the verdict or the exit code; the outcome is logged and recorded
in the store. The keys stay in the client's headers.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from gate.errors import GateError
from gate.release import iso
from gate.verdict import Verdict

log = logging.getLogger(__name__)

EVENT = "datadog_event"
ALERT_TYPE = {"pass": "success", "fail": "error", "inconclusive": "warning"}
TIMEOUT = 10
MAX_TEXT = 4000  # Datadog keeps the first 4000 characters of an event's text


def tag(key: str, value: str) -> str:
    """`key:value` as Datadog would store it: other characters become underscores."""
    cleaned = re.sub(r"[^\w\-:./]", "_", value)
    return f"{key}:{cleaned}"[:200].lower()


def event_body(verdict: Verdict, service: str, extra_tags: list[str] = ()) -> dict[str, Any]:
    lines = [verdict.reason, ""]
    for m in verdict.metrics:
        links = " ".join(f"[{name}]({url})" for name, url in (m.links or {}).items())
        lines.append(f"- {m.name}: {m.verdict} ({m.reason})" + (f" {links}" if links else ""))
    text = "\n".join(lines)[:MAX_TEXT - 10]
    return {
        "title": f"canary {verdict.verdict}: {service} {verdict.release}"[:100],
        "text": f"%%% \n{text}\n %%%",
        "tags": [tag("service", service), tag("release", verdict.release),
                 tag("canary_verdict", verdict.verdict), *extra_tags],
        "alert_type": ALERT_TYPE[verdict.verdict],
        "date_happened": int(verdict.evaluated_at),
        "aggregation_key": tag("release", verdict.release)[:100],
    }


def post(verdict: Verdict, service: str, extra_tags: list[str] = ()) -> int | None:
    """Post the event; its id, or None when Datadog did not take it (logged, never raised)."""
    from datadog_api_client import ApiClient
    from datadog_api_client.exceptions import OpenApiException
    from datadog_api_client.v1.api.events_api import EventsApi
    from datadog_api_client.v1.model.event_create_request import EventCreateRequest
    from urllib3.exceptions import HTTPError

    from gate.datadog_client import configuration
    from gate.http_pools import header_deadline_pools

    try:
        config = configuration(TIMEOUT)
        config.preload_content = True  # a small typed answer: let the client parse it
        with ApiClient(config) as client:
            client.rest_client.pool_manager.pool_classes_by_scheme = header_deadline_pools()
            body = EventCreateRequest(**event_body(verdict, service, list(extra_tags)))
            answer = EventsApi(client).create_event(body)
        return int(answer.event.id)
    except OpenApiException as e:
        status = getattr(e, "status", None)
        log.warning("Datadog event not posted: %s %s", status or "", getattr(e, "reason", "") or type(e).__name__)
    except (GateError, HTTPError, OSError, AttributeError, TypeError, ValueError) as e:  # TypeError: an id of null
        log.warning("Datadog event not posted: %s", e if isinstance(e, GateError) else type(e).__name__)
    return None


def notify(verdict: Verdict, policy: Any, store: Any = None) -> int | None:
    """Post a decisive verdict if the policy asks for it (`notify.datadog_event`), once per
    verdict of a deploy (as Slack: a later `gate check`, or a Lambda call again, finds the same
    verdict and must not post it again)."""
    if policy.source.type != "datadog" or not policy.notify.datadog_event:
        return None
    if store is not None and (posted := _already_posted(store, verdict)) is not None:
        return posted
    event_id = post(verdict, policy.name)
    if store is not None:
        detail = {"posted": event_id is not None, "event_id": event_id, "verdict": verdict.verdict,
                  "deployed_at": iso(verdict.deployed_at), "deploy": verdict.deploy}
        try:
            store.record_event(verdict.release, EVENT, detail)
        except GateError as e:
            log.warning("could not record the Datadog event: %s", e)
    return event_id


def _already_posted(store: Any, verdict: Verdict) -> int | None:
    """The event id this verdict of this deploy was already posted as (None: not yet, or the store
    cannot tell: post, a duplicate beats silence)."""
    deployed = iso(verdict.deployed_at)
    try:
        events = store.events(verdict.release)
    except Exception:  # noqa: BLE001 - cannot tell: post
        return None
    for e in events:
        d = e["detail"]
        if (e["kind"] == EVENT and d.get("posted") and d.get("verdict") == verdict.verdict
                and d.get("deployed_at") == deployed and d.get("deploy") == verdict.deploy):
            return d.get("event_id")
    return None


class DatadogEventNotifier:
    """The Datadog event, as a gate.notify.Notifier: when the policy asks (`notify.datadog_event`)."""

    name = EVENT

    def notify(self, news: Any) -> int | None:
        return notify(news.verdict, news.policy, news.store)


NOTIFIER = DatadogEventNotifier()
