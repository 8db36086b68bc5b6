"""A generic webhook: each decisive verdict as a signed JSON POST, for an incident tool (PagerDuty,
Opsgenie, ServiceNow, an in-house bot). Enabled by `notify.webhook: true` in the policy; the URL
(GATE_WEBHOOK_URL) and the signing secret (GATE_WEBHOOK_SECRET) are the deployment's: the CLI's
environment; in the Lambda, keys of the stack's Secrets Manager secret (`GateSecret` in
infra/template.yaml, which generates the signing secret; `GATE_SECRET_ID`), put in the environment
by the handler for the invocation, never plain variables of the function.

The body (`body`, version 1) names the release, the verdict and why, the failing metrics with
their numbers, the groups, the window and the report. It is signed with HMAC-SHA256 over
`"{timestamp}.{body}"` (headers `X-Gate-Timestamp` and `X-Gate-Signature: sha256=<hex>`), so a
receiver can check who sent it and refuse a replay of an old one.

Like Slack's message it is a courtesy: 5xx, 429, timeouts and connection failures are retried
within a budget of BUDGET seconds in all (a deadline, however slowly the receiver answers), then
given up; a redirect is not followed (a failed delivery); whatever happens `notify` returns
instead of raising, so it never changes the verdict or the exit code, nor holds a pipeline for
longer than the budget. The outcome is logged and recorded in the store, and one verdict of a
deploy is sent once, however many checks find it again. The URL may hold a token: it never
appears in a log line or a recorded event.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from gate import present
from gate.release import iso
from gate.settings import current_settings
from gate.verdict import Verdict

log = logging.getLogger(__name__)

ENV_URL = "GATE_WEBHOOK_URL"
ENV_SECRET = "GATE_WEBHOOK_SECRET"
EVENT = "notification"
CHANNEL = "webhook"
VERSION = 1
BUDGET = 20.0  # seconds all attempts and waits may take
TIMEOUT = 5.0  # seconds of one attempt
MAX_ATTEMPTS = 4
USER_AGENT = "canary-gate-webhook/1"


class WebhookError(Exception):
    """The receiver did not take the verdict (said without the URL)."""


def body(verdict: Verdict, *, policy: str, canary: str, baseline: str | None,
         report_url: str | None = None, build_url: str | None = None) -> dict[str, Any]:
    """The JSON a receiver gets (documented in docs/reporting.md; `version` changes when a field
    changes meaning)."""
    deciding = {m.name for m in present.deciding_metrics(verdict)}
    failing = [{"name": m.name, "verdict": m.verdict, "reason": m.reason, "canary": m.canary,
                "baseline": m.baseline, "effect": m.effect, "tolerance": m.tolerance, "critical": m.critical,
                "deciding": m.name in deciding, "links": dict(m.links or {})}
               for m in verdict.metrics if m.verdict == "fail" and not m.muted]
    links = {k: v for k, v in (("report", report_url), ("build", build_url)) if v}
    return {
        "version": VERSION,
        "event": "canary.verdict",
        "release": verdict.release,
        "verdict": verdict.verdict,
        "summary": f"canary {verdict.verdict}: {policy} {verdict.release}: {verdict.reason}"[:1024],
        "reason": verdict.reason,
        "severity": {"fail": "error", "inconclusive": "warning", "pass": "info"}[verdict.verdict],
        "policy": policy,
        "canary": canary,
        "baseline": baseline,
        "deployed_at": iso(verdict.deployed_at),
        "decided_at": iso(verdict.evaluated_at),
        "final": verdict.final,
        "demo": verdict.demo_label,
        "failing_metrics": failing,
        "deciding_metrics": sorted(deciding),
        "links": links,
    }


def signature(secret: str, timestamp: str, payload: bytes) -> str:
    """`sha256=<hex>`: HMAC-SHA256 with the secret over `timestamp.payload`."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + payload, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def send(payload: bytes, url: str, secret: str, *, budget: float | None = None,
         sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> int:
    """POST the body until the receiver takes it (2xx) or the budget (BUDGET) is spent; the
    attempts made. A 4xx other than 408/429 is an answer, not a fault: no retry. A 3xx is not
    followed (it would replay the verdict as a bodiless GET elsewhere): a failed delivery.

    The budget is a deadline: each attempt has what is left of it (at most TIMEOUT) for connecting
    and for the status line and headers in all (`header_deadline_pools`: a receiver trickling its
    headers is cut off), and the body of the answer is never read (the status says it all)."""
    import urllib3

    from gate.http_pools import header_deadline_pools

    budget = BUDGET if budget is None else budget
    deadline = clock() + budget
    pool = urllib3.PoolManager(retries=False)
    pool.pool_classes_by_scheme = header_deadline_pools()
    try:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            timestamp = str(int(time.time()))
            headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "X-Gate-Timestamp": timestamp,
                       "X-Gate-Signature": signature(secret, timestamp, payload)}
            seconds = max(0.1, min(TIMEOUT, deadline - clock()))
            wait = None
            try:
                answer = pool.request("POST", url, body=payload, headers=headers, redirect=False,
                                      preload_content=False, timeout=urllib3.Timeout(total=seconds))
                answer.close()  # its body is not waited for
            except (urllib3.exceptions.HTTPError, OSError) as e:  # refused, unreachable, timed out
                problem = f"the receiver is unreachable ({type(getattr(e, 'reason', None) or e).__name__})"
            else:
                if 200 <= answer.status < 300:
                    return attempt
                problem = f"the receiver answered HTTP {answer.status}"
                if answer.status not in (408, 429) and answer.status < 500:
                    raise WebhookError(problem + (" (a redirect: not followed)" if answer.status < 400 else ""))
                wait = _retry_after(answer.headers.get("Retry-After"))
            wait = max(wait or 0.0, 0.5 * 2 ** (attempt - 1))
            if attempt == MAX_ATTEMPTS or clock() + wait >= deadline:
                raise WebhookError(f"{problem}; {attempt} attempt(s) within the {budget:g}s budget")
            log.warning("webhook: %s; retrying in %.1fs", problem, wait)
            sleep(wait)
    finally:
        pool.clear()
    raise AssertionError("unreachable")


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _already_sent(store: Any, verdict: Verdict) -> bool:
    """This verdict of this deploy was taken already (one message per decisive verdict)."""
    try:
        events = store.events(verdict.release)
    except Exception:  # noqa: BLE001 - cannot tell: send (a duplicate beats silence)
        return False
    return any(e["kind"] == EVENT and e["detail"].get("channel") == CHANNEL and e["detail"].get("ok")
               and e["detail"].get("verdict") == verdict.verdict
               and e["detail"].get("deployed_at") == iso(verdict.deployed_at) for e in events)


def notify(verdict: Verdict, policy: Any, *, store: Any = None, canary: str, baseline: str | None,
           report_url: str | None = None, build_url: str | None = None) -> bool:
    """Send a decisive verdict if the policy asks for it (`notify.webhook`). Never raises; True
    when the receiver took it."""
    if not policy.notify.webhook or not verdict.decisive:
        return False
    if store is not None and _already_sent(store, verdict):
        return True
    settings = current_settings()
    url, secret = settings.webhook_url, settings.webhook_secret
    detail: dict[str, Any] = {"channel": CHANNEL, "verdict": verdict.verdict, "evaluated_at": iso(verdict.evaluated_at),
                              "deployed_at": iso(verdict.deployed_at)}
    try:
        if not url or not secret:
            missing = " and ".join(n for n, v in ((ENV_URL, url), (ENV_SECRET, secret)) if not v)
            raise WebhookError(f"notify.webhook is on but {missing} is not set")
        payload = json.dumps(body(verdict, policy=policy.name, canary=canary, baseline=baseline,
                                  report_url=report_url,
                                  build_url=build_url if build_url is not None else settings.build_url),
                             separators=(",", ":")).encode()
        detail["attempts"] = send(payload, url, secret)
        ok = True
    except Exception as e:  # noqa: BLE001 - a notification never changes the verdict
        error = str(e) if isinstance(e, WebhookError) else f"{type(e).__name__}"
        error = error.replace(url, "<webhook>") if url else error
        log.warning("webhook: notification not sent: %s", error)
        detail["error"], ok = error, False
    detail["ok"] = ok
    if store is not None:
        try:
            store.record_event(verdict.release, EVENT, detail)
        except Exception as e:  # noqa: BLE001
            log.warning("webhook: could not record the notification: %s", type(e).__name__)
    return ok


class WebhookNotifier:
    """The signed webhook, as a gate.notify.Notifier: when the policy asks (`notify.webhook`)."""

    name = CHANNEL

    def notify(self, news: Any) -> bool:
        return notify(news.verdict, news.policy, store=news.store, canary=news.canary, baseline=news.baseline,
                      report_url=news.report_url, build_url=news.build_url)


NOTIFIER = WebhookNotifier()
