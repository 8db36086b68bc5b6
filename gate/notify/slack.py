"""Slack: one Block Kit message per decisive verdict, through an incoming webhook (slack_sdk).

The message says what was decided and why: the verdict and release in the header, the deciding
reason, per judged metric canary vs baseline with the effect, the groups, window and policy, and
buttons to the report and the Jenkins build. A notification is a courtesy: whatever Slack does
(429, 5xx, refused, unreachable), `notify` returns instead of raising, so it never changes the
verdict or the exit code; the failure is logged and recorded in the store. The webhook URL is a
secret: it never appears in a log line, an error or a recorded event.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler, ServerErrorRetryHandler
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.webhook import WebhookClient

from gate import present
from gate.release import iso
from gate.settings import current_settings
from gate.verdict import MetricResult, Verdict

log = logging.getLogger(__name__)

ENV_URL = "SLACK_WEBHOOK_URL"
EVENT = "notification"

# Block Kit limits (api.slack.com/reference/block-kit): the ones a long policy could reach.
MAX_BLOCKS = 50
MAX_FIELDS = 10
MAX_HEADER = 150
MAX_TEXT = 3000
MAX_FIELD_TEXT = 2000
MAX_CONTEXT_ELEMENTS = 10

# Retries: a bounded budget, so a struggling Slack cannot hold a deploy pipeline for long.
RATE_LIMIT_RETRIES = 2
MAX_RETRY_AFTER = 30  # seconds; a longer Retry-After is not waited for
SERVER_ERROR_RETRIES = 2
TIMEOUT = 10

ICON = {"pass": ":white_check_mark:", "fail": ":x:", "inconclusive": ":hourglass_flowing_sand:",
        "skipped": ":heavy_minus_sign:"}


class BoundedRateLimitRetry(RateLimitErrorRetryHandler):
    """slack_sdk's 429 handler (sleeps Retry-After), but never for longer than MAX_RETRY_AFTER."""

    def _can_retry(self, *, state, request, response=None, error=None) -> bool:
        if not super()._can_retry(state=state, request=request, response=response, error=error):
            return False
        headers = {k.lower(): v for k, v in (response.headers or {}).items()}
        value = headers.get("retry-after", ["1"])
        try:
            wait = int(value[0] if isinstance(value, list) else value)
        except (TypeError, ValueError):
            return False  # the handler would crash on it; give up cleanly instead
        return wait <= MAX_RETRY_AFTER


class AnyServerErrorRetry(ServerErrorRetryHandler):
    """Every 5xx, not only 500 and 503 (a proxy in front of Slack answers 502/504)."""

    def _can_retry(self, *, state, request, response=None, error=None) -> bool:
        return response is not None and 500 <= response.status_code < 600


def retry_handlers() -> list[RetryHandler]:
    return [BoundedRateLimitRetry(max_retry_count=RATE_LIMIT_RETRIES),
            AnyServerErrorRetry(max_retry_count=SERVER_ERROR_RETRIES)]


# --- the message -------------------------------------------------------------------------------


def _escape(text: str) -> str:
    """mrkdwn control characters (api.slack.com/reference/surfaces/formatting#escaping)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _metric_field(m: MetricResult, deciding: bool) -> dict:
    tags = present.flags(m, deciding)
    head = f"{ICON.get(m.verdict, '')} *{_escape(m.name)}*: {m.verdict}" + (f" ({', '.join(tags)})" if tags else "")
    lines = [head]
    if m.canary is not None or m.baseline is not None:
        reference = (f"baseline {present.number(m.baseline)}" if m.baseline is not None
                     else f"expected {present.number(m.expected)}")
        lines.append(f"canary {present.number(m.canary)} vs {reference}")
    if m.effect is not None:
        tolerance = "" if m.tolerance is None else f", tol {present.tolerance(m.tolerance)}"
        slo = f", SLO {_escape(m.slo)}" if m.slo else ""
        lines.append(f"effect {present.percent(m.effect)} {present.interval(m.interval, test=m.interval_test)}{tolerance}{slo}")
    elif m.verdict != "pass":
        lines.append(_escape(_cut(m.reason, 200)))
    links = [f"<{url}|{_escape(name)}>" for name, url in (m.links or {}).items()
             if url.startswith("https://") and not any(c in url for c in "<>| ")]
    if links:
        lines.append(" · ".join(links))
    return {"type": "mrkdwn", "text": _cut("\n".join(lines), MAX_FIELD_TEXT)}


def build_message(verdict: Verdict, *, policy: str, canary: str, baseline: str | None,
                  report_url: str | None = None, build_url: str | None = None) -> dict:
    """The webhook payload: Block Kit blocks and the plain `text` fallback for notifications."""
    deciding = {m.name for m in present.deciding_metrics(verdict)}
    elapsed = present.minutes(verdict.evaluated_at - verdict.deployed_at)
    header = f"{verdict.verdict.upper()}: release {verdict.release}"
    if verdict.demo_label:
        header = f"{verdict.demo_label} {header}"
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(header, MAX_HEADER), "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _cut(
            f"{ICON.get(verdict.verdict, '')} *Why:* {_escape(verdict.reason)}", MAX_TEXT)}},
    ]
    fields = [_metric_field(m, m.name in deciding) for m in present.deciding_first(verdict)]
    sections = [{"type": "section", "fields": fields[i:i + MAX_FIELDS]} for i in range(0, len(fields), MAX_FIELDS)]
    groups = f"canary `{_escape(canary)}` vs " + (f"baseline `{_escape(baseline)}`" if baseline else "its own history")
    context = [
        groups,
        f"window {iso(verdict.deployed_at)} → {iso(verdict.evaluated_at)} ({elapsed})",
        f"policy `{_escape(policy)}`",
    ] + ([f"deploy `{_escape(verdict.deploy_id)}`"] if verdict.deploy_id else []) + [_escape(n) for n in verdict.notes]
    tail: list[dict] = [{"type": "context", "elements": [
        {"type": "mrkdwn", "text": _cut(t, MAX_TEXT)} for t in context[:MAX_CONTEXT_ELEMENTS]]}]
    buttons = []
    if report_url and report_url.startswith(("https://", "http://")):
        buttons.append({"type": "button", "text": {"type": "plain_text", "text": "Open the report"},
                        "url": report_url, "action_id": "report"})
    if build_url and build_url.startswith(("https://", "http://")):
        buttons.append({"type": "button", "text": {"type": "plain_text", "text": "Jenkins build"},
                        "url": build_url, "action_id": "build"})
    if buttons:
        tail.append({"type": "actions", "elements": buttons})
    room = MAX_BLOCKS - len(blocks) - len(tail)
    if len(sections) > room:
        # Hundreds of metrics: keep what fits and say where the rest is.
        shown = sections[: room - 1]
        hidden = len(fields) - sum(len(s["fields"]) for s in shown)
        sections = shown + [{"type": "section", "text": {"type": "mrkdwn",
                                                         "text": f"…and {hidden} more metrics (see the report)"}}]
    blocks += sections + tail
    failed = [m.name for m in verdict.metrics if m.verdict == "fail" and not m.muted]
    # The fallback is what notifications show: escaped too, so a release or a reason cannot
    # mention a channel (<!channel>) or forge a link.
    text = _escape(f"{header}: {verdict.reason}" + (f" (failed: {', '.join(failed)})" if failed else ""))
    return {"text": _cut(text, MAX_TEXT), "blocks": blocks}


# --- sending -----------------------------------------------------------------------------------


class _Redact(logging.Filter):
    """Keeps the webhook URL out of slack_sdk's own log lines (it logs URLs on retries)."""

    def __init__(self, secret: str):
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.secret and self.secret in message:
            record.msg, record.args = message.replace(self.secret, "<webhook>"), None
        return True


def send(message: dict, url: str) -> None:
    """Post the message; raises NotificationError (without the URL) when Slack did not take it."""
    client_log = logging.getLogger(f"{__name__}.client")
    # slack_sdk logs the URL at DEBUG and on retries; our own warning says what happened.
    client_log.setLevel(logging.CRITICAL)
    redact = _Redact(url)
    client_log.addFilter(redact)
    try:
        client = WebhookClient(url, timeout=TIMEOUT, logger=client_log, retry_handlers=retry_handlers())
        try:
            response = client.send_dict(message)
        except Exception as e:  # noqa: BLE001 - unreachable, refused, TLS...: said without the URL
            raise NotificationError(f"Slack unreachable ({type(e).__name__}: {_scrub(str(e), url)})") from None
        if response.status_code != 200:
            raise NotificationError(f"Slack answered HTTP {response.status_code}: {_scrub(response.body, url)[:200]}")
    finally:
        client_log.removeFilter(redact)


class NotificationError(Exception):
    pass


def _scrub(text: str, url: str) -> str:
    return (text or "").replace(url, "<webhook>") if url else (text or "")


def _already_sent(store: Any, verdict: Verdict) -> bool:
    """Slack already took this verdict for this deploy of the release: one message per decisive
    verdict, however many later checks (or Lambda calls) find it again. A new deploy of the same
    release (another deploy time) is news again."""
    deployed = iso(verdict.deployed_at)
    try:
        events = store.events(verdict.release)
    except Exception:  # noqa: BLE001 - cannot tell: send (a duplicate beats silence)
        return False
    return any(e["kind"] == EVENT and e["detail"].get("channel") == "slack" and e["detail"].get("ok")
               and e["detail"].get("verdict") == verdict.verdict
               and e["detail"].get("deployed_at") == deployed
               and e["detail"].get("deploy") == verdict.deploy for e in events)  # older records: send again


def notify(verdict: Verdict, *, store: Any = None, policy: str, canary: str, baseline: str | None,
           report_url: str | None = None, build_url: str | None = None, url: str | None = None) -> bool:
    """Send the verdict to Slack once, if a webhook is configured. Never raises.

    Only decisive verdicts are announced (a wait is not news). Returns True when Slack took it.
    """
    settings = current_settings()
    url = url or settings.slack_webhook_url
    if not url or not verdict.decisive:
        return False
    if store is not None and _already_sent(store, verdict):
        return True
    build_url = build_url if build_url is not None else settings.build_url
    detail = {"channel": "slack", "verdict": verdict.verdict, "evaluated_at": iso(verdict.evaluated_at),
              "deployed_at": iso(verdict.deployed_at), "deploy": verdict.deploy}
    try:
        message = build_message(verdict, policy=policy, canary=canary, baseline=baseline,
                                report_url=report_url, build_url=build_url)
        send(message, url)
        ok = True
    except Exception as e:  # noqa: BLE001 - a notification never changes the verdict
        error = _scrub(str(e) if isinstance(e, NotificationError) else f"{type(e).__name__}: {e}", url)
        log.warning("slack: notification not sent: %s", error)
        detail["error"] = error
        ok = False
    detail["ok"] = ok
    if store is not None:
        try:
            store.record_event(verdict.release, EVENT, detail)
        except Exception as e:  # noqa: BLE001
            log.warning("slack: could not record the notification: %s", e)
    return ok


class SlackNotifier:
    """Slack, as a gate.notify.Notifier: when SLACK_WEBHOOK_URL is set."""

    name = "slack"

    def notify(self, news: Any) -> bool:
        return notify(news.verdict, store=news.store, policy=news.policy.name, canary=news.canary,
                      baseline=news.baseline, report_url=news.report_url, build_url=news.build_url)


NOTIFIER = SlackNotifier()
