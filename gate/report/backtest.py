"""`gate backtest --html FILE`: the backtest as one self-contained page, in the verdict report's
style (inline SVG, no script, no external asset): per metric, detection against effect size and
the A/A windows along the history's timeline, false alarms in red; the YAML to paste on top."""

from __future__ import annotations

import html
import time
from pathlib import Path

from gate.errors import GateError
from gate.present import minutes_or_dash
from gate.release import iso, parse_time

W, H, PAD = 360, 150, 34
KIND_COLORS = {"shift": "#1864ab", "rate": "#1864ab", "tail": "#d9480f", "ramp": "#5f3dc4"}
OK, ALARM = "#2b8a3e", "#c92a2a"

CSS = """
*{box-sizing:border-box}
body{font:14px/1.45 -apple-system,'Segoe UI',Roboto,'DejaVu Sans',Arial,sans-serif;color:#212529;margin:0;background:#f8f9fa}
main{max-width:800px;margin:0 auto;padding:20px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:0 0 6px}
.card{background:#fff;border:1px solid #dee2e6;border-radius:8px;padding:16px;margin:0 0 16px}
.row{display:flex;gap:12px} .row svg{flex:1}
svg{width:100%;height:auto;display:block} svg text{font:11px 'DejaVu Sans',Arial,sans-serif;fill:#495057}
pre{background:#f1f3f5;padding:10px;border-radius:6px} .muted{color:#868e96} ul{padding-left:18px}
footer{color:#868e96;font-size:12px;text-align:center;margin:8px 0 24px}
"""


def _e(x) -> str:
    return html.escape(str(x))


def _frame(title: str) -> list[str]:
    return [f'<svg viewBox="0 0 {W} {H}" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{_e(title)}">',
            f'<text x="{PAD}" y="12">{_e(title)}</text>',
            f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 8}" y2="{H - PAD}" stroke="#adb5bd"/>']


def detection_svg(metric: dict) -> str:
    """Detection rate (0..1) against effect size (times the tolerance), one line per regression."""
    sizes = sorted({i["size"] for i in metric["injections"]})
    x = {s: PAD + (W - PAD - 20) * (k / max(1, len(sizes) - 1)) for k, s in enumerate(sizes)}

    def y(rate: float) -> float:
        return H - PAD - (H - PAD - 22) * rate

    out = _frame(f"{metric['name']}: caught, by effect size (x tolerance)")
    for r in (0, 0.5, 1):
        out.append(f'<text x="2" y="{y(r) + 4:.1f}">{r:.0%}</text>')
    out.append(f'<line x1="{PAD}" y1="{y(0.9):.1f}" x2="{W - 8}" y2="{y(0.9):.1f}" stroke="#dee2e6" stroke-dasharray="3 3"/>')
    for s in sizes:
        out.append(f'<text x="{x[s] - 8:.1f}" y="{H - PAD + 14}">{s:g}x</text>')
    kinds = list(dict.fromkeys(i["kind"] for i in metric["injections"]))
    for n, kind in enumerate(kinds):
        points = [(x[i["size"]], y(i["detected"]["rate"] or 0)) for i in metric["injections"] if i["kind"] == kind]
        color = KIND_COLORS.get(kind, "#495057")
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="'
                   + " ".join(f"{a:.1f},{b:.1f}" for a, b in points) + '"/>')
        out.append(f'<text x="{PAD + 70 * n}" y="{H - 6}" style="fill:{color}">{_e(kind)}</text>')
    out.append("</svg>")
    return "".join(out)


def timeline_svg(report: dict, metric: str | None) -> str:
    """The A/A windows along the history: green judged clean, red a false alarm (of `metric`)."""
    start, end = parse_time(report["history"]["start"]), parse_time(report["history"]["end"])
    alarms = {(a["deployed_at"]) for a in report["false_alarm_windows"] if metric is None or a["metric"] == metric}
    out = _frame(f"{metric or 'all metrics'}: A/A windows, false alarms in red")
    for moment in (start, end):
        anchor = "start" if moment == start else "end"
        xpos = PAD if moment == start else W - 8
        out.append(f'<text x="{xpos}" y="{H - PAD + 14}" text-anchor="{anchor}">{_e(iso(moment)[:16])}</text>')
    for w in report["window_starts"]:
        t = parse_time(w)
        xpos = PAD + (W - PAD - 8) * (t - start) / max(1, end - start)
        bad = w in alarms
        out.append(f'<line x1="{xpos:.1f}" y1="{H - PAD}" x2="{xpos:.1f}" y2="{30 if bad else H - PAD - 30}" '
                   f'stroke="{ALARM if bad else OK}" stroke-width="{3 if bad else 1.5}"/>')
    out.append("</svg>")
    return "".join(out)


def _told(rate: dict) -> str:
    """The A/A windows the judge could not tell at the end (a fail only through on_undecided)."""
    return f"{rate['count']}/{rate['of']}" if rate["of"] else "-"


def render(report: dict) -> str:
    o = report["overall"]
    fa = o["false_alarms"]
    cards = []
    for m in report["metrics"]:
        f = m["false_alarms"]
        cards.append(f'<section class="card"><h2>{_e(m["name"])} <span class="muted">tolerance {_e(m["tolerance"])}, '
                     f'recommended {_e(m["recommended_tolerance"] if m["recommended_tolerance"] is not None else "-")}</span></h2>'
                     f'<p>false alarms {f["count"]}/{f["of"]} (95% interval {f["ci95"][0]:.0%}-{f["ci95"][1]:.0%}); '
                     f'could not tell {_told(m["undecided"])}</p>'
                     f'<div class="row">{detection_svg(m)}{timeline_svg(report, m["name"])}</div></section>')
    alarms = "".join(f"<li>{_e(a['deployed_at'])} +{a['minutes']:g} min, {_e(a['metric'])} ({_e(a['rule'])}): "
                     f"{_e(a['reason'])}</li>" for a in report["false_alarm_windows"])
    rec = report["recommendation"]
    notes = "".join(f"<li>{_e(n)}</li>" for n in rec["notes"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>backtest: {_e(report['policy'])} · canary-gate</title><style>{CSS}</style></head>
<body><main>
<section class="card"><h1>backtest of {_e(report['policy'])}</h1>
<p>{report['windows']} windows of {report['lifetime'] // 60} min over {_e(report['history']['start'])} ..
{_e(report['history']['end'])} ({report['history']['source_requests']} source request(s)), {report['runs']} judged canaries;
{_e(report['mode'])}: {_e(report['mode_reason'])}.</p>
<p><b>false alarms {fa['count']}/{fa['of']}</b> (95% interval {fa['ci95'][0]:.0%}-{fa['ci95'][1]:.0%}; alpha
{report['alpha']:g}); could not tell {_told(o['undecided'])} ({_e(report['on_undecided'])} by on_undecided); rolled back
{_told(o['rolled_back'])}; median time to pass {minutes_or_dash(o['median_minutes_to_pass'])}.</p>
{"".join(f"<p><b>not fit for this service</b> (exit 3): {_e(r)}</p>" for r in report["exit_reasons"])}
<div style="max-width:480px">{timeline_svg(report, None)}</div>
{f"<ul>{alarms}</ul>" if alarms else ""}
{f"<pre>{_e(rec['yaml'])}</pre>" if rec['yaml'] else ""}
{f"<ul>{notes}</ul>" if notes else ""}
</section>
{"".join(cards)}
<footer>canary-gate backtest · generated {_e(iso(time.time()))}</footer>
</main></body></html>
"""


def write(path: Path, report: dict) -> Path:
    """`--html FILE`: a page that cannot be written is a one-line error (exit 4)."""
    try:
        path.write_text(render(report), encoding="utf-8")
    except OSError as e:
        raise GateError(f"--html {path}: cannot write the page ({e.strerror or type(e).__name__})") from None
    return path
