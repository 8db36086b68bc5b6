"""The kinds of metric, in one registry: what the policy accepts in a metric's `kind`, what the
sources and the plans must know of it (are its points events summed over each interval?), and
where the judge's comparison of it lives.

A new kind is one module of the judge (an object with the `gate.judge.kinds.MetricKind` methods)
and one entry here, `KINDS[name]` or `register(Kind(...))` at run time. The judge imports a kind's
module only when it first judges a metric of it (as `gate.notify` does its notifiers)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from gate.errors import PolicyError


@dataclass(frozen=True)
class Kind:
    name: str
    # Its points are events summed over each interval (errors, requests): a source asks sums, a
    # denominator is one, a limit on it is a rate; otherwise a level, averaged (CPU, latency).
    summed: bool
    judged_by: str  # "module:attribute": its gate.judge.kinds.MetricKind, imported when first judged
    description: str = ""


KINDS: dict[str, Kind] = {
    "gauge": Kind("gauge", summed=False, judged_by="gate.judge.gauge:GAUGE",
                  description="a level (CPU %, memory %, latency ms)"),
    "count": Kind("count", summed=True, judged_by="gate.judge.count:COUNT", description="events per step"),
}

_judges: dict[str, Any] = {}


def register(kind: Kind) -> None:
    """Add (or replace) a kind: policies may name it from then on."""
    KINDS[kind.name] = kind
    _judges.pop(kind.name, None)


def kind_named(name: str) -> Kind:
    """The registered kind; a ValueError naming the kinds there are, for the policy's message."""
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown kind {name!r}: one of {', '.join(KINDS)}") from None


def judged_as(name: str) -> Any:
    """The judge's comparison of a kind (its `judged_by`), imported once."""
    judge = _judges.get(name)
    if judge is None:
        judged_by = kind_named(name).judged_by
        module, _, attribute = judged_by.partition(":")
        try:
            judge = getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError, ValueError) as e:  # a registration's typo: a message, not a traceback
            raise PolicyError(f"kind {name!r}: its judge {judged_by!r} cannot be loaded ({e})") from None
        _judges[name] = judge
    return judge


def judge_of(metric: Any) -> Any:
    """The judge's object (a gate.judge.kinds.MetricKind) for a metric's kind."""
    return judged_as(metric.kind)
