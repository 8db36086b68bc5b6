"""The report's strip of traffic steps (`gate rollout`): each weight change as a segment of the
time line, as wide as it lasted, coloured by how it ended (the verdict that moved on from it).
Pure: the store's traffic changes in, HTML out (no CSS of its own: inline styles)."""

from __future__ import annotations

from html import escape

from gate.release import iso

ENDED = {"pass": "#2b8a3e", "fail": "#c92a2a"}  # the next change's reason: the step passed, or failed
RUNNING = "#868e96"


def traffic_strip(changes: list[dict], until: int) -> str:
    """The strip, or "" without changes. `until`: where the last segment ends (the verdict)."""
    changes = [c for c in changes if isinstance(c.get("set_at"), int)]
    if not changes:
        return ""
    ends = [c["set_at"] for c in changes[1:]] + [max(until, changes[-1]["set_at"])]
    spans = [max(end - c["set_at"], 1) for c, end in zip(changes, ends)]
    segments = []
    for i, (change, span) in enumerate(zip(changes, spans)):
        ended = (changes[i + 1].get("allowed_by") or {}).get("verdict") if i + 1 < len(changes) else None
        color = ENDED.get(ended, RUNNING)
        label = f"{change.get('percent', '?')}%"
        title = (f"{label} from {iso(change['set_at'])} ({change.get('by', 'rollout')}"
                 f"{', step ' + str(change['step']) if change.get('step') else ''})"
                 + (f"; then {ended}" if ended else ""))
        segments.append(f'<div title="{escape(title)}" style="flex:{span} 1 0;background:{color};color:#fff;'
                        f'padding:4px 6px;white-space:nowrap;overflow:hidden">{escape(label)} '
                        f'<small>{escape(iso(change["set_at"])[11:16])}</small></div>')
    return ('<section class="card"><h2>traffic steps</h2>'
            '<div style="display:flex;gap:2px;border-radius:4px;overflow:hidden">' + "".join(segments) +
            "</div><p><small>the canary's share of the load balancer's traffic over time (UTC); green: the step "
            "passed, red: it failed and the canary was sent back to 0</small></p></section>\n")
