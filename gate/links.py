"""From a failing metric to the evidence: links to the canary's traces, logs and the metric itself
over the minutes the verdict judged, built from the policy's source and scopes.

* Datadog: the APM trace explorer and the log explorer filtered to the canary's scope, and the
  metric explorer with the canary and the baseline side by side (grouped by their tag's key when
  both scopes are one tag of the same key), on the app host of the site (`DD_SITE`).
* CloudWatch: X-Ray traces (the console's documented deep link: `#/traces?filter=...&timeRange=
  start~end`, UTC, at most 6 hours), the metric of both groups in the console (`#metricsV2:graph=`
  and its JSURL state), and, when `links.log_group` names the canary's log group, a Logs Insights
  query on it.

A policy's `links.urls` replaces these with its own templates (gate.policy.Links): `{scope}`,
`{baseline}`, `{metric}`, `{start}`/`{end}` (epoch seconds), `{start_ms}`/`{end_ms}`,
`{start_iso}`/`{end_iso}`, `{region}`, `{site}`, each value percent-encoded where it goes, so a
scope can never change a link's shape. Pure: no I/O; the settings it reads are given to it.
"""

from __future__ import annotations

import re
import string
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from gate.release import iso

PLACEHOLDERS = ("scope", "baseline", "metric", "start", "end", "start_ms", "end_ms", "start_iso", "end_iso",
                "region", "site")
XRAY_MAX_SECONDS = 6 * 3600  # the X-Ray console shows at most 6 hours
LOGS_INSIGHTS_QUERY = "fields @timestamp, @logStream, @message\n| sort @timestamp desc\n| limit 200"


def template_fields(template: str) -> list[str]:
    """The placeholders of a template; ValueError for a malformed one or a format spec."""
    fields = []
    for _, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if spec or conversion:
            raise ValueError(f"{{{name}}}: placeholders take no format or conversion")
        fields.append(name)
    return fields


def render(template: str, values: dict[str, Any]) -> str:
    return template.format_map({k: quote(str(v), safe="") for k, v in values.items()})


def datadog_app(site: str) -> str:
    """The web app of a Datadog site: `app.` before a site without its own region label
    (datadoghq.com, datadoghq.eu, ddog-gov.com), the site itself otherwise (us3.datadoghq.com)."""
    return f"https://{site}" if site.count(".") >= 2 else f"https://app.{site}"


def search_query(scope: str) -> str:
    """A scope (`key:value` tags joined by commas) as a Datadog search: the tags, all of them."""
    return " ".join(t.strip() for t in scope.split(",") if t.strip())


def jsurl(value: Any) -> str:
    """JSURL (github.com/Sage/jsurl), the notation of the AWS console's URL state: `~(key~value)`,
    strings `~'text` with every character but [A-Za-z0-9_.-] escaped as `*hh` (`**hhhh` above 255,
    `!` for `$`), arrays `~(~a~b)`."""
    if value is None:
        return "~null"
    if isinstance(value, bool):
        return "~true" if value else "~false"
    if isinstance(value, (int, float)):
        return f"~{value:g}" if isinstance(value, float) else f"~{value}"
    if isinstance(value, str):
        return "~'" + _jsurl_escape(value)
    if isinstance(value, (list, tuple)):
        return "~(" + ("".join(jsurl(v) for v in value) or "~") + ")"
    return "~(" + "~".join(_jsurl_escape(str(k)) + jsurl(v) for k, v in value.items()) + ")"


def _jsurl_escape(text: str) -> str:
    def one(match: re.Match) -> str:
        ch = match.group(0)
        if ch == "$":
            return "!"
        code = ord(ch)
        return f"*{code:02x}" if code < 0x100 else f"**{code:04x}"

    return re.sub(r"[^\w.-]", one, text, flags=re.ASCII)


def _console_iso(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _xray_time(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S")


# -- defaults, per source ----------------------------------------------------------------------------


def datadog_links(metric_name: str, query: str | None, canary: str, baseline: str | None, start: int, end: int,
                  site: str) -> dict[str, str]:
    app = datadog_app(site)
    scope = search_query(canary)
    links = {
        "traces": f"{app}/apm/traces?" + urlencode({"query": scope, "start": start * 1000, "end": end * 1000,
                                                     "paused": "true"}, quote_via=quote),
        "logs": f"{app}/logs?" + urlencode({"query": scope, "from_ts": start * 1000, "to_ts": end * 1000,
                                            "live": "false"}, quote_via=quote),
    }
    source_metric = re.search(r"(?:^|:)([A-Za-z][\w.]*)\s*\{", query or "")
    if source_metric:
        params = {"exp_metric": source_metric.group(1), "exp_agg": "avg", "exp_row_type": "metric"}
        key = _shared_key(canary, baseline)
        params.update({"exp_scope": "", "exp_group": key} if key else {"exp_scope": canary})
        params.update({"from_ts": start * 1000, "to_ts": end * 1000, "live": "false"})
        links["metric"] = f"{app}/metric/explorer?" + urlencode(params, quote_via=quote)
    return links


def _shared_key(canary: str, baseline: str | None) -> str | None:
    """The tag key of two one-tag scopes of the same key (`autoscaling_group:web-canary` and
    `autoscaling_group:web-baseline`): grouping by it shows both side by side."""
    if baseline is None or any("," in s or ":" not in s for s in (canary, baseline)):
        return None
    key = canary.split(":", 1)[0]
    return key if baseline.split(":", 1)[0] == key else None


def cloudwatch_links(region: str, canary: str, start: int, end: int, *, metric: dict | None = None,
                     log_group: str | None = None) -> dict[str, str]:
    """`metric`: {namespace, metric, stat, period, canary: [dimension pairs], baseline: [...]}."""
    console = f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={quote(region, safe='')}"
    links = {}
    if log_group:
        detail = {"end": _console_iso(end), "start": _console_iso(start), "timeType": "ABSOLUTE", "tz": "UTC",
                  "editorString": LOGS_INSIGHTS_QUERY, "source": [log_group]}
        links["logs"] = f"{console}#logsV2:logs-insights$3FqueryDetail$3D{jsurl(detail)}"
    quoted = canary.replace("\\", "\\\\").replace('"', '\\"')  # a string of X-Ray's filter language
    xray_filter = f'annotation.autoscaling_group = "{quoted}"'
    window = f"{_xray_time(max(start, end - XRAY_MAX_SECONDS))}~{_xray_time(end)}"
    links["traces"] = (f"https://console.aws.amazon.com/xray/home?region={quote(region, safe='')}#/traces?"
                       f"filter={quote(xray_filter, safe='')}&timeRange={quote(window, safe='~:')}")
    if metric is not None:
        series = [[metric["namespace"], metric["metric"], *pairs, {"label": group, "stat": metric["stat"]}]
                  for group in ("canary", "baseline") if (pairs := metric.get(group)) is not None]
        graph = {"metrics": series, "view": "timeSeries", "stacked": False, "region": region,
                 "period": metric["period"], "start": _console_iso(start), "end": _console_iso(end)}
        links["metric"] = f"{console}#metricsV2:graph={jsurl(graph)}"
    return links


def evidence_links(policy: Any, metric: Any, canary: str, baseline: str | None, start: int, end: int, *,
                   site: str = "datadoghq.com", region: str | None = None, query: Any = None) -> dict[str, str]:
    """The links of one metric over [start, end]: the policy's own templates (`links.urls`), or
    the defaults of its source. `query` is what the source knows of the metric: the Datadog query
    (its text) or the CloudWatch graph (see cloudwatch_links). Empty when the source has none."""
    settings = policy.links
    if settings is not None and settings.urls is not None:
        values = {"scope": canary, "baseline": baseline or "", "metric": metric.name, "start": start, "end": end,
                  "start_ms": start * 1000, "end_ms": end * 1000, "start_iso": iso(start), "end_iso": iso(end),
                  "region": region or "", "site": site}
        return {name: render(template, values) for name, template in settings.urls.items()}
    kind = policy.source.type
    if kind == "datadog":
        return datadog_links(metric.name, query, canary, baseline, start, end, site)
    if kind == "cloudwatch" and region:
        log_group = settings.log_group.replace("{scope}", canary) if settings and settings.log_group else None
        return cloudwatch_links(region, canary, start, end, metric=query, log_group=log_group)
    return {}

