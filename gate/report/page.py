"""The report as one self-contained HTML page: the summary, then per metric a chart of the canary
against the baseline over the window (with the seasonal expected band when the judge provides
one), the decision point marked, and the numbers behind the verdict. The charts are inline SVG
drawn here: no script, no external asset, and a Content-Security-Policy that forbids loading any,
so the file opens offline and can be attached to a ticket as it is."""

from __future__ import annotations

import html
import math
import time
from typing import Any

import numpy as np

from gate import present
from gate.policy import Metric, Policy
from gate.report.snapshot import Band, metric_series, window_grid
from gate.series import Observations
from gate.release import iso
from gate.verdict import MetricResult, Verdict

COLORS = {"canary": "#d9480f", "baseline": "#1864ab", "band": "#adb5bd", "expected": "#495057"}
VERDICT_COLORS = {"pass": "#2b8a3e", "fail": "#c92a2a", "inconclusive": "#e67700", "skipped": "#868e96"}


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _nice_step(span: float, count: int) -> float:
    raw = span / max(1, count)
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    step = _nice_step(hi - lo, count)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


# --- charts ------------------------------------------------------------------------------------

W, H = 720, 230
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 14, 34


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous [start, end) runs of True."""
    runs, start = [], None
    for i, ok in enumerate(mask):
        if ok and start is None:
            start = i
        elif not ok and start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(mask)))
    return runs


class _Axes:
    def __init__(self, x0: float, x1: float, y0: float, y1: float):
        self.x0, self.x1, self.y0, self.y1 = x0, x1, y0, y1

    def x(self, t: float) -> float:
        return LEFT + (t - self.x0) / max(1e-9, self.x1 - self.x0) * (W - LEFT - RIGHT)

    def y(self, v: float) -> float:
        return H - BOTTOM - (v - self.y0) / max(1e-12, self.y1 - self.y0) * (H - TOP - BOTTOM)


def _line(ax: _Axes, t: np.ndarray, v: np.ndarray, color: str, name: str, dash: str = "") -> str:
    parts = []
    for a, b in _runs(np.isfinite(v)):
        if b - a == 1:
            parts.append(f'<circle cx="{ax.x(t[a]):.1f}" cy="{ax.y(v[a]):.1f}" r="2.5" fill="{color}"/>')
            continue
        points = " ".join(f"{ax.x(t[i]):.1f},{ax.y(v[i]):.1f}" for i in range(a, b))
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="1.6"'
                     f' stroke-linejoin="round"{extra}/>')
    return f'<g class="series" data-series="{name}">{"".join(parts)}</g>' if parts else ""


def _band(ax: _Axes, t: np.ndarray, low: np.ndarray, high: np.ndarray) -> str:
    parts = []
    for a, b in _runs(np.isfinite(low) & np.isfinite(high)):
        upper = [f"{ax.x(t[i]):.1f},{ax.y(high[i]):.1f}" for i in range(a, b)]
        lower = [f"{ax.x(t[i]):.1f},{ax.y(low[i]):.1f}" for i in reversed(range(a, b))]
        parts.append(f'<polygon points="{" ".join(upper + lower)}" fill="{COLORS["band"]}" fill-opacity="0.35"/>')
    return f'<g class="series" data-series="expected-band">{"".join(parts)}</g>' if parts else ""


def _axis_end(verdict: Verdict, policy: Policy) -> int:
    """Where the time axis ends: the lifetime, or soon after an early decision (a fail at minute 4
    of 60 would leave the data a sliver at the left of an empty chart); the shaded tail after the
    decision still says the canary had time left."""
    end = verdict.deployed_at + policy.lifetime
    if not verdict.decisive or verdict.evaluated_at >= end:
        return end
    elapsed = verdict.evaluated_at - verdict.deployed_at
    return min(end, verdict.evaluated_at + max(policy.interval, elapsed // 4))


def chart_svg(metric: Metric, result: MetricResult | None, verdict: Verdict, policy: Policy,
              window: Observations, expected: Band | None) -> str:
    """Canary vs baseline over the lifetime (data up to the decision), band, decision marker."""
    canary_t = window.canary.timestamps
    canary = metric_series(window.canary, metric)
    baseline = metric_series(window.baseline, metric)
    baseline_t = window.baseline.timestamps if window.baseline is not None else None
    lines: list[tuple[np.ndarray, np.ndarray]] = []
    if canary is not None:
        lines.append((canary_t, canary))
    if baseline is not None:
        lines.append((baseline_t, baseline))
    grid = window_grid(window)
    if expected is not None and all(len(a) == len(grid) for a in expected):
        lines += [(grid, a) for a in expected]
    else:
        expected = None
    finite = np.concatenate([v[np.isfinite(v)] for _, v in lines]) if lines else np.empty(0)

    x0 = verdict.deployed_at
    # The lifetime, stretched to the data if it runs past it, but not to a late look at old data.
    last = max([int(t[-1]) for t, _ in lines if len(t)], default=x0)
    x1 = max(_axis_end(verdict, policy), min(verdict.evaluated_at, last))
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
    else:
        lo, hi = 0.0, 1.0
    pad = (hi - lo) * 0.08 or max(abs(hi) * 0.1, 1.0)
    lo, hi = lo - pad, hi + pad
    if lo < 0 <= float(finite.min() if finite.size else 0):
        lo = 0.0  # metrics that cannot be negative keep their axis at zero
    ticks = _ticks(lo, hi)
    ax = _Axes(x0, x1, lo, hi)

    out = [f'<svg class="chart" data-metric="{_e(metric.name)}" viewBox="0 0 {W} {H}" role="img"'
           f' xmlns="http://www.w3.org/2000/svg" aria-label="{_e(metric.name)}: canary vs baseline">']
    for v in ticks:
        y = ax.y(v)
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e9ecef"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{_e(present.number(v))}</text>')
    minutes = (x1 - x0) / 60
    step = _nice_step(minutes, 6)
    m = 0.0
    while m <= minutes + 1e-9:
        x = ax.x(x0 + m * 60)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{H - BOTTOM}" y2="{H - BOTTOM + 4}" stroke="#868e96"/>')
        out.append(f'<text x="{x:.1f}" y="{H - BOTTOM + 16}" text-anchor="middle" class="tick">+{m:g}m</text>')
        m += step
    out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{H - BOTTOM}" y2="{H - BOTTOM}" stroke="#868e96"/>')
    # The baseline 4 px above the edge: the descenders of "deploy" would be cut off at 2 px.
    lifetime = "" if x1 >= x0 + policy.lifetime else f"; lifetime {present.minutes(policy.lifetime)}"
    out.append(f'<text x="{W - RIGHT}" y="{H - 4}" text-anchor="end" class="tick">minutes after the deploy'
               f' ({_e(iso(x0))}){lifetime}</text>')
    # The part of the lifetime the verdict did not need: shaded, so an early decision shows.
    xd = ax.x(min(verdict.evaluated_at, x1))
    if xd < W - RIGHT - 1:
        out.append(f'<rect x="{xd:.1f}" y="{TOP}" width="{W - RIGHT - xd:.1f}" height="{H - TOP - BOTTOM}"'
                   f' fill="#f1f3f5"/>')
    if expected is not None:
        out.append(_band(ax, grid, expected[1], expected[2]))
        out.append(_line(ax, grid, expected[0], COLORS["expected"], "expected", dash="4 3"))
    # The SLO guardrails (and the error ratio an error budget burns at its burn rate), where the
    # axis of the data reaches them: a limit far off the data would flatten the lines.
    for limit in (metric.max, metric.min, metric.slo.threshold if metric.slo else None):
        if limit is not None and lo <= limit <= hi:
            y = ax.y(limit)
            out.append(f'<line class="slo-limit" x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"'
                       f' stroke="#e03131" stroke-dasharray="6 3"><title>SLO limit {_e(present.number(limit))}</title></line>')
    if baseline is not None:
        out.append(_line(ax, baseline_t, baseline, COLORS["baseline"], "baseline"))
    if canary is not None:
        out.append(_line(ax, canary_t, canary, COLORS["canary"], "canary"))
    # The release's verdict on the cards that share it; a metric that passed in a failed release
    # (or any other mismatch) shows only when the release was decided, in grey.
    own = result is None or result.verdict == verdict.verdict
    color = VERDICT_COLORS.get(verdict.verdict, "#343a40") if own else "#868e96"
    label = f"{verdict.verdict if own else 'decided'} at +{present.minutes(verdict.evaluated_at - x0)}"
    anchor = "end" if xd > W / 2 else "start"
    dx = -5 if anchor == "end" else 5
    out.append(f'<line class="decision" x1="{xd:.1f}" x2="{xd:.1f}" y1="{TOP}" y2="{H - BOTTOM}"'
               f' stroke="{color}" stroke-width="2" stroke-dasharray="5 3"/>')
    out.append(f'<text x="{xd + dx:.1f}" y="{TOP + 12}" text-anchor="{anchor}" class="marker"'
               f' fill="{color}">{_e(label)}</text>')
    if not finite.size:
        out.append(f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" class="nodata">no data in the window</text>')
    out.append("</svg>")
    return "".join(out)


def effect_svg(result: MetricResult, metric: Metric | None) -> str:
    """The effect estimate and its interval against the tolerance: why the metric was judged so."""
    if result.effect is None and result.interval is None:
        return ""
    width, height, left, right = 720, 54, 64, 16
    values = [v for v in (result.effect, *(result.interval or ())) if v is not None and math.isfinite(v)]
    tol = result.tolerance
    values += [0.0] + ([tol, -tol] if tol is not None else [])
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.1 or 0.05
    lo, hi = lo - pad, hi + pad

    def x(v: float) -> float:
        return left + (v - lo) / (hi - lo) * (width - left - right)

    direction = metric.bad_direction if metric is not None else "increase"
    out = [f'<svg class="effect" data-metric="{_e(result.name)}" viewBox="0 0 {width} {height}"'
           f' xmlns="http://www.w3.org/2000/svg" role="img" aria-label="effect and interval">']
    if tol is not None:
        ok_lo = -tol if direction in ("decrease", "either") else lo
        ok_hi = tol if direction in ("increase", "either") else hi
        if direction == "none":
            ok_lo, ok_hi = lo, hi
        out.append(f'<rect x="{left}" y="8" width="{width - left - right}" height="22" fill="#ffe3e3"/>')
        out.append(f'<rect x="{x(max(ok_lo, lo)):.1f}" y="8" width="{x(min(ok_hi, hi)) - x(max(ok_lo, lo)):.1f}"'
                   f' height="22" fill="#d3f9d8"/>')
    for v in _ticks(lo, hi, 6):
        # A label centred on a tick near an edge ("+1500%") would be cut off: it ends (starts) there.
        anchor = "end" if x(v) > width - right - 24 else "start" if x(v) < left + 24 else "middle"
        out.append(f'<line x1="{x(v):.1f}" x2="{x(v):.1f}" y1="30" y2="34" stroke="#868e96"/>')
        out.append(f'<text x="{x(v):.1f}" y="46" text-anchor="{anchor}" class="tick">{v:+.0%}</text>')
    out.append(f'<line x1="{x(0):.1f}" x2="{x(0):.1f}" y1="6" y2="32" stroke="#495057"/>')
    color = VERDICT_COLORS.get(result.verdict, "#343a40")
    if result.interval is not None and all(v is not None and math.isfinite(v) for v in result.interval):
        a, b = x(result.interval[0]), x(result.interval[1])
        out.append(f'<line x1="{a:.1f}" x2="{b:.1f}" y1="19" y2="19" stroke="{color}" stroke-width="3"/>')
        out.append(f'<line x1="{a:.1f}" x2="{a:.1f}" y1="13" y2="25" stroke="{color}" stroke-width="2"/>')
        out.append(f'<line x1="{b:.1f}" x2="{b:.1f}" y1="13" y2="25" stroke="{color}" stroke-width="2"/>')
    if result.effect is not None and math.isfinite(result.effect):
        out.append(f'<circle cx="{x(result.effect):.1f}" cy="19" r="5" fill="{color}"/>')
    out.append(f'<text x="{left - 6}" y="23" text-anchor="end" class="tick">effect</text>')
    out.append("</svg>")
    return "".join(out)


# --- the page ----------------------------------------------------------------------------------

CSS = """
*{box-sizing:border-box}
body{font:14px/1.45 -apple-system,'Segoe UI',Roboto,'DejaVu Sans',Arial,sans-serif;color:#212529;
margin:0;background:#f8f9fa}
main{max-width:800px;margin:0 auto;padding:20px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:0;display:flex;align-items:center;gap:10px}
.badge{display:inline-block;color:#fff;border-radius:4px;padding:2px 10px;font-weight:700;
text-transform:uppercase;letter-spacing:.04em;font-size:13px}
.card{background:#fff;border:1px solid #dee2e6;border-radius:8px;padding:16px;margin:0 0 16px}
.summary{border-left:6px solid var(--verdict)}
.reason{font-size:15px;margin:8px 0 12px}
.demo{background:#fff3bf;border:1px solid #f59f00;padding:6px 10px;font-weight:600}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:3px 8px 3px 0;vertical-align:top}
th{color:#495057;font-weight:600;white-space:nowrap}
.summary th{width:1%}
.numbers{margin:4px 0 6px}
.numbers th{font-size:12px;border-bottom:1px solid #dee2e6}
.numbers td{font-size:15px}
.why{margin:10px 0 4px}
.num{font-variant-numeric:tabular-nums}
.legend{display:flex;gap:16px;font-size:12px;color:#495057;margin:8px 0 2px}
.legend span::before{content:'';display:inline-block;width:14px;height:3px;margin-right:5px;
vertical-align:middle;background:var(--c)}
.legend .band::before{height:10px;opacity:.5}
svg{width:100%;height:auto;display:block}
svg text{font:11px 'DejaVu Sans',Arial,sans-serif;fill:#495057}
svg text.marker{font-weight:700;font-size:12px}
svg text.nodata{font-size:14px;fill:#c92a2a}
.muted{color:#868e96}
.notes{margin:6px 0 0;padding-left:18px;color:#495057}
footer{color:#868e96;font-size:12px;text-align:center;margin:8px 0 24px}
"""


def _badge(outcome: str) -> str:
    return f'<span class="badge" style="background:{VERDICT_COLORS.get(outcome, "#343a40")}">{_e(outcome)}</span>'


def _metric_card(result: MetricResult, metric: Metric | None, verdict: Verdict, policy: Policy,
                 window: Observations, expected: dict[str, Band] | None, deciding: bool) -> str:
    flags = present.flags(result, deciding)
    title = f"{_e(result.name)} {_badge(result.verdict)}"
    if flags:
        title += f' <span class="muted">{_e(", ".join(flags))}</span>'
    what = ""
    if metric is not None:
        what = f"{metric.kind}" + (f", ratio to {metric.denominator}" if metric.denominator else "")
        what += f", bad direction: {metric.bad_direction}"
    body = [f'<section class="card metric" id="metric-{_e(result.name)}"><h2>{title}</h2>']
    if what:
        body.append(f'<div class="muted">{_e(what)}</div>')
    if metric is not None:
        band = (expected or {}).get(result.name)
        if band is not None and any(len(a) != len(window_grid(window)) for a in band):
            band = None
        body.append('<div class="legend">'
                    f'<span style="--c:{COLORS["canary"]}">canary</span>'
                    f'<span style="--c:{COLORS["baseline"]}">baseline</span>'
                    + (f'<span class="band" style="--c:{COLORS["band"]}">seasonal expectation (±2 noise scales)</span>' if band else "")
                    + "</div>")
        body.append(chart_svg(metric, result, verdict, policy, window, band))
    body.append(f'<p class="why"><b>why:</b> {_e(result.reason)}'
                f' <span class="muted">(rule: {_e(result.rule or "–")})</span></p>')
    cells = [
        ("canary", present.number(result.canary)),
        ("baseline", present.number(result.baseline)),
        ("expected", present.number(result.expected)),
        ("effect", present.percent(result.effect)),
        ("interval", present.interval(result.interval)),
        ("tolerance", present.tolerance(result.tolerance)),
    ] + ([("SLO", _e(result.slo))] if result.slo else [])
    body.append('<table class="numbers num"><tr>' + "".join(f"<th>{k}</th>" for k, _ in cells) + "</tr><tr>"
                + "".join(f"<td>{v}</td>" for _, v in cells) + "</tr></table>")
    if result.interval_test:  # the interval is the deciding test's: say which (a pass's is not the fail test's)
        body.append(f'<p class="muted">interval of the {_e(result.interval_test)}</p>')
    body.append(effect_svg(result, metric))
    if result.links:
        anchors = " · ".join(f'<a href="{_e(url)}" rel="noopener noreferrer">{_e(name)}</a>'
                             for name, url in result.links.items() if url.startswith("https://"))
        body.append(f'<p class="links"><b>evidence:</b> {anchors}</p>')
    body.append("</section>")
    return "".join(body)


def _demo_banner(verdict: Verdict) -> str:
    if not verdict.demo_label:
        return ""
    return (f'<p class="demo">{_e(verdict.demo_label)}: judged on made-up or recorded data '
            f"(source.type {_e(verdict.demo)}), not on the release's live metrics</p>\n")


def render_report(verdict: Verdict, window: Observations, expected: dict[str, Band] | None, policy: Policy,
                  *, canary: str | None = None, baseline: str | None = None, traffic: list[dict] | None = None) -> str:
    """The whole report as one HTML document.

    `window` is what the verdict was reached on (deploy to decision); `expected` maps a metric
    to its seasonal (mean, low, high) arrays aligned with `window_grid(window)`, or None;
    `traffic` the release's traffic steps (`gate rollout`), drawn as a strip when there are any.
    """
    from gate.report.steps import traffic_strip

    canary, baseline = policy.scopes(canary=canary, baseline=baseline)
    deciding = {m.name for m in present.deciding_metrics(verdict)}
    by_name = {m.name: m for m in policy.metrics}
    color = VERDICT_COLORS.get(verdict.verdict, "#343a40")
    elapsed = verdict.evaluated_at - verdict.deployed_at
    groups = f"canary <b>{_e(canary)}</b> vs " + (
        f"baseline <b>{_e(baseline)}</b>" if baseline else "its own history (no baseline group)")
    summary_rows = [
        ("release", f"<b>{_e(verdict.release)}</b>"
                    + (f" (deploy {_e(verdict.deploy_id)})" if verdict.deploy_id else "")),
        ("groups", groups),
        ("decided at", f"{_e(iso(verdict.evaluated_at))} ({present.minutes(elapsed)} after the deploy at "
                       f"{_e(iso(verdict.deployed_at))}; lifetime {present.minutes(policy.lifetime)})"),
        ("decided by", _e(present.deciding_summary(verdict))),
        ("policy", f"{_e(policy.name)} (source {_e(policy.source.type)}, every {present.minutes(policy.interval)},"
                   f" alpha {policy.alpha:g}, undecided at the end: {_e(policy.on_undecided)})"),
    ]
    results = present.deciding_first(verdict)
    judged = {m.name for m in results}
    cards = [_metric_card(m, by_name.get(m.name), verdict, policy, window, expected, m.name in deciding)
             for m in results]
    # Context metrics (bad_direction none, e.g. traffic) are not judged but explain the others.
    for metric in policy.metrics:
        if metric.name not in judged and metric.name in window.canary.values:
            context = MetricResult(metric.name, "skipped", "context only: not judged (bad_direction none)")
            cards.append(_metric_card(context, metric, verdict, policy, window, expected, False))
    notes = "".join(f"<li>{_e(n)}</li>" for n in verdict.notes)
    title = f"{verdict.verdict.upper()}: {verdict.release}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)} · canary-gate</title>
<style>{CSS}</style></head>
<body><main>
<section class="card summary" style="--verdict:{color}">
{_demo_banner(verdict)}<h1>{_badge(verdict.verdict)} release {_e(verdict.release)}</h1>
<p class="reason">{_e(verdict.reason)}</p>
<table>{"".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in summary_rows)}</table>
{f'<ul class="notes">{notes}</ul>' if notes else ""}
</section>
{traffic_strip(traffic or [], verdict.evaluated_at)}{"".join(cards)}
<footer>canary-gate report · generated {_e(iso(time.time()))} · {"final" if verdict.final else "not final"} verdict</footer>
</main></body></html>
"""
