"""Notifiers: one module per channel behind one small protocol (as Flagger's notifiers).

A notifier tells a decisive verdict somewhere: Slack (`slack`), a Datadog event
(`datadog_event`), a signed webhook (`webhook`). It is a courtesy: `notify` never raises and
never changes the verdict; it logs its own failure and records it in the store (`News.store`).
`gate.analysis.announce` gives every notifier of `NOTIFIERS` the same `News`, in order; each
decides for itself whether the verdict is news for it (a webhook configured, the policy asking).

A new channel is one module with an object that has `name` and `notify(news)`, and one entry in
`NOTIFIERS` (or `register(name, notifier)` at run time).
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from gate.verdict import Verdict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class News:
    """A decisive verdict to tell, with what every channel may show beside it."""

    verdict: Verdict
    policy: Any  # gate.policy.Policy: its name, its `notify` section, its source
    canary: str  # the scopes judged
    baseline: str | None
    store: Any = None  # where a notifier records what it sent (and finds what it already sent)
    report_url: str | None = None  # the HTML report, when there is one
    build_url: str | None = None  # the CI build that asked (else the settings' BUILD_URL)


@runtime_checkable
class Notifier(Protocol):
    name: str

    def notify(self, news: News) -> Any:
        """Tell the news if this channel is configured for it; never raises."""
        ...


# name -> "module:attribute" (imported only when a verdict is told: the Lambda's cold start does
# not pay for Slack's client), or a Notifier registered at run time. Told in this order.
NOTIFIERS: dict[str, str | Notifier] = {
    "slack": "gate.notify.slack:NOTIFIER",
    "datadog_event": "gate.notify.datadog_event:NOTIFIER",
    "webhook": "gate.notify.webhook:NOTIFIER",
}


def register(name: str, notifier: str | Notifier) -> None:
    """Add a notifier (an object, or "module:attribute"), told after those before it."""
    NOTIFIERS[name] = notifier


def notifier(name: str) -> Notifier:
    target = NOTIFIERS[name]
    if isinstance(target, str):
        module_name, attribute = target.split(":")
        return getattr(importlib.import_module(module_name), attribute)
    return target


def tell(news: News) -> None:
    """Every notifier, in order. Each promises not to raise; one that breaks it (a bug, an answer
    nobody foresaw) is logged and the next still told: a notification never costs the verdict,
    its record or the other notifications."""
    for name in NOTIFIERS:
        try:
            notifier(name).notify(news)
        except Exception:  # noqa: BLE001 - whatever a notifier raises, the others and the verdict go on
            log.exception("notifier %s failed; the verdict stands", name)
