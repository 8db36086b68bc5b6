"""Metric sources: one module per provider behind one small protocol.

A source answers one question: the values of the policy's metrics for the canary and the
baseline group between two moments, on the policy's step. It never judges. Faults it cannot
recover from (after its own retries) are raised as `SourceError`, which the gate turns into
"could not judge" (exit 4), never a pass.
"""

from __future__ import annotations

import importlib
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from gate.errors import GateError, PolicyError, SourceError
from gate.policy import Metric, Policy
from gate.series import Observations


@dataclass(frozen=True)
class Query:
    metrics: tuple[Metric, ...]
    canary: str  # scope of the canary group, as the provider names it
    baseline: str | None  # scope of the baseline group; None: history-only
    start: int  # epoch seconds, inclusive
    end: int  # epoch seconds, inclusive; never later than the moment being judged
    step: int  # seconds between points
    # True: only the baseline is asked (the history of a policy with a baseline: the judge learns from
    # the baseline's, and the canary group is usually new); its `canary` frame comes back empty.
    baseline_only: bool = False


def count_denominators(metrics: tuple[Metric, ...]) -> dict[str, str]:
    """count -> its denominator, for the counts judged as ratios (see Frame.fill_zero_counts)."""
    return {m.name: m.denominator for m in metrics if m.summed and m.denominator}


class CannotSplit(Exception):
    """A source that cannot read a group host by host (no per-host metric, a query it cannot
    group): the message says which metric and why, for the backtest's report."""


@runtime_checkable
class MetricSource(Protocol):
    def fetch(self, query: Query) -> Observations:
        """Both groups' metrics on the grid start..end; NaN where a point is missing."""
        ...


# Optional, for `gate backtest` and `gate plan` (sources that have it: datadog, cloudwatch):
#     def fetch_hosts(self, query: Query) -> dict[str, Frame]
# the baseline group's metrics host by host (host -> its frame on the query's grid), or
# CannotSplit. Only the baseline scope is read (the canary group usually has no history).


# type -> "module:factory"; modules are imported only when used, so a policy that reads
# CloudWatch never imports the Datadog client and the other way round.
# Sources that do not read the release's own metrics: `simulate` makes data up (demos), `replay`
# reads a recorded case. Their verdicts say so; the Lambda, which gates real releases, refuses them.
DEMO_SOURCES = frozenset({"simulate", "replay"})

PROVIDERS = {
    "replay": "gate.sources.replay:from_policy",
    "simulate": "gate.sources.simulate:from_policy",
    "datadog": "gate.sources.datadog:from_policy",
    "cloudwatch": "gate.sources.cloudwatch:from_policy",
}


# type -> "module:function(options) -> str | None": where a source's data comes from beyond its
# policy (the site, the account, the region from the environment), for the reference cache's key.
ORIGINS = {
    "datadog": "gate.datadog_client:origin",
    "cloudwatch": "gate.sources.cloudwatch:origin",
    "replay": "gate.sources.replay:origin",  # what the case folder holds now, not only its path
}


def data_origin(source_type: object, options: object) -> str | None:
    """Where the data of a policy's source comes from: "" for `simulate`, whose policy names all it
    reads (the scenario, the seed); None when it cannot be told, or for a source type not in
    ORIGINS (one added later reads something its policy may not name): nothing is then cached."""
    if source_type == "simulate":
        return ""
    target = ORIGINS.get(source_type) if isinstance(source_type, str) else None
    if target is None:
        return None
    module_name, function = target.split(":")
    return getattr(importlib.import_module(module_name), function)(options if isinstance(options, dict) else {})


def look(source: MetricSource) -> AbstractContextManager:
    """One look's fetches, sharing what the source gives a look (Datadog: one deadline for the
    organisation's request budget); nothing for a source without `look`."""
    begin = getattr(source, "look", None)
    return begin() if callable(begin) else nullcontext()


def fixed_filters(policy: Policy) -> dict[str, tuple[str, ...]]:
    """Per metric, the filters its query fixes beside the group's scope: a Datadog query's other
    tags (`{service:web,$scope}`), which every host of either group's query matches as well as its
    scope. The other sources put the scope where no other filter meets it: none."""
    if policy.source.type != "datadog":
        return {}
    from gate.sources.datadog import fixed_tags

    return {m.name: tags for m in policy.metrics if (tags := fixed_tags(m))}


def open_source(policy: Policy) -> MetricSource:
    target = PROVIDERS.get(policy.source.type)
    if target is None:
        raise PolicyError(f"source.type: unknown source {policy.source.type!r}")
    module_name, factory = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise PolicyError(
            f"source.type: {policy.source.type!r} is not available in this installation ({e})"
        ) from None
    return getattr(module, factory)(policy)


# The policy field a source's own error comes from, where it is not named in the message.
SOURCE_FIELDS = {"simulate": "source.options.scenario", "replay": "source.options.case"}


def open_source_from(policy: Policy, origin: str) -> MetricSource:
    """The policy's source, its errors naming the policy file (`origin`) and the field they come from."""
    field = SOURCE_FIELDS.get(policy.source.type)
    try:
        return open_source(policy)
    except SourceError:
        raise
    except GateError as e:
        message = str(e)
        if field and not message.startswith(("source", "metrics", "interval")):
            message = f"{field}: {message}"
        raise PolicyError(f"{origin}: {message}") from None
    except (ArithmeticError, AttributeError, TypeError, ValueError) as e:  # a malformed case folder
        raise PolicyError(f"{origin}: {field or 'source.options'}: {type(e).__name__}: {e}") from None
