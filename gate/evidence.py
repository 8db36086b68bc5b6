"""Each failing metric of a verdict with its evidence links (gate.links), from what the policy's
source knows of the metric: the Datadog query, or the CloudWatch metric and its dimensions per
group. Kept apart from gate.links, which the policy reads to validate its templates: the sources
read the policy."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from gate.links import evidence_links


def _source_query(policy: Any, source: Any, metric: Any, canary: str, baseline: str | None) -> Any:
    """What the source knows of the metric that a link shows: the Datadog query, or the CloudWatch
    metric and the dimensions of each group."""
    if policy.source.type == "datadog":
        from gate.sources.datadog import compile_query

        return compile_query(metric, policy.interval).render(canary)
    if policy.source.type == "cloudwatch" and hasattr(source, "dimensions"):
        from gate.sources.cloudwatch import metric_query

        spec = metric_query(metric)
        groups = {"canary": canary, "baseline": baseline}
        return {"namespace": spec.namespace, "metric": spec.metric, "stat": spec.stat, "period": policy.interval,
                **{group: [v for d in source.dimensions(metric.name, group, scope) for v in (d["Name"], d["Value"])]
                   for group, scope in groups.items() if scope is not None}}
    return None


def with_links(verdict: Any, policy: Any, source: Any, canary: str, baseline: str | None, *, site: str,
               region: str | None) -> Any:
    """The verdict with each failing metric's evidence links over the window it judged (a verdict
    that fails nothing is returned as it is)."""
    failing = {m.name for m in verdict.metrics if m.verdict == "fail" and not m.muted}
    if not failing:
        return verdict
    metrics = []
    for m in verdict.metrics:
        if m.name in failing:
            metric = policy.metric(m.name)
            try:
                query = _source_query(policy, source, metric, canary, baseline)
            except Exception:  # noqa: BLE001 - a link is a courtesy: no query, no metric link
                query = None
            links = evidence_links(policy, metric, canary, baseline, verdict.deployed_at, verdict.evaluated_at,
                                   site=site, region=region, query=query)
            m = replace(m, links=links or None)
        metrics.append(m)
    return replace(verdict, metrics=metrics)
