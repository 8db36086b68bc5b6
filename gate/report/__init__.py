"""The HTML report of a verdict: one self-contained file that says what was decided and why.

The report is drawn from the data the verdict was reached on: the window and the reference the
evaluation judged (`gate.analysis.Evaluation`), never a second read of the source. After a
decisive verdict the gate records a compact copy of that window (a `report-data` event in the
store, a few kB) so that `gate report RELEASE` rebuilds exactly the same report later without the
policy file, credentials, or the metric source still holding the data.

Its parts: `snapshot` (the data drawn and its recorded copy), `page` (the HTML and SVG),
`publish` (a local file, or S3 and a presigned link). Beside it, `backtest`: `gate backtest
--html`'s page, in the same style, drawn from the backtest's JSON.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from gate.errors import GateError, ReportError
from gate.lifecycle import named_deploy
from gate.policy import Policy
from gate.report.page import render_report
from gate.report.publish import publish
from gate.report.snapshot import Band, expected_band, from_snapshot, snapshot
from gate.series import Observations
from gate.release import iso
from gate.verdict import Verdict

log = logging.getLogger(__name__)

SNAPSHOT_EVENT = "report-data"


def report_for(analysis: Any, evaluation: Any, store: Any = None, out: str | Path | None = None) -> str | None:
    """The report of an evaluation just made by `analysis` (gate.analysis): its verdict drawn over
    the window it judged, with the judge's expected band from the reference it judged against,
    then `write_report`. The source is not read again: points that reach it late would show data
    the verdict did not judge. Returns where the report is, or None; never raises."""
    verdict = evaluation.verdict
    try:
        expected = expected_band(analysis.judge, evaluation.reference, analysis.policy, evaluation.window)
    except Exception as e:  # noqa: BLE001 - never let the explanation change the verdict
        message = str(e) if isinstance(e, GateError) else f"{type(e).__name__}: {e}"
        log.warning("report: not written: %s", message)
        _record(store, verdict.release, {"ok": False, "error": message})
        return None
    return write_report(verdict, evaluation.window, expected, analysis.policy, store=store,
                        canary=analysis.canary, baseline=analysis.baseline, out=out)


def write_report(verdict: Verdict, window: Observations, expected: dict[str, Band] | None, policy: Policy,
                 *, store: Any = None, canary: str | None = None, baseline: str | None = None,
                 out: str | Path | None = None) -> str | None:
    """After a decisive verdict: record the data behind it, render and publish the report.

    Returns where the report is, or None if it could not be written: a report is an
    explanation, and failing to write one never changes the verdict (logged and recorded).
    """
    try:
        data = snapshot(policy, window, expected, canary, baseline)
        if store is not None:
            store.record_event(verdict.release, SNAPSHOT_EVENT,
                               {"evaluated_at": iso(verdict.evaluated_at), "verdict": verdict.verdict, **data})
        document = render_report(verdict, window, expected, policy, canary=canary, baseline=baseline,
                                 traffic=_traffic(store, verdict))
        location = publish(document, verdict.release, out)
    except Exception as e:  # noqa: BLE001 - never let the explanation change the verdict
        message = str(e) if isinstance(e, GateError) else f"{type(e).__name__}: {e}"
        log.warning("report: not written: %s", message)
        _record(store, verdict.release, {"ok": False, "error": message})
        return None
    _record(store, verdict.release, {"ok": True, "location": location.split("?")[0]})
    return location


def _record(store: Any, release: str, detail: dict) -> None:
    if store is None:
        return
    try:
        store.record_event(release, "report", detail)
    except Exception as e:  # noqa: BLE001
        log.warning("report: could not record the report event: %s", e)


def rebuild(store: Any, release: str) -> str:
    """The report of a release's last verdict, from the store alone (for `gate report`)."""
    evaluations = [e for e in store.evaluations(release) if e["verdict"] != "error" and e["payload"]]
    if not evaluations:
        raise ReportError(f"no verdict recorded for release {release!r}")
    last = Verdict.from_dict(evaluations[-1]["payload"])
    snapshots = [e["detail"] for e in store.events(release) if e["kind"] == SNAPSHOT_EVENT]
    matching = [s for s in snapshots if s.get("evaluated_at") == iso(last.evaluated_at)]
    if not matching:
        # The series are recorded with decisive verdicts; fall back to the last decisive one.
        decisive = [Verdict.from_dict(e["payload"]) for e in evaluations if e["verdict"] in ("pass", "fail")]
        decisive = [v for v in decisive if any(s.get("evaluated_at") == iso(v.evaluated_at) for s in snapshots)]
        if not decisive:
            if last.decisive:  # the report of that verdict failed to be written (its `report` event says why)
                raise ReportError(f"release {release!r}: the data behind its {last.verdict} verdict at "
                                  f"{iso(last.evaluated_at)} was not recorded (its report could not be written)")
            raise ReportError(f"release {release!r}: no report yet: one is written when the gate decides "
                              f"(the last verdict is {last.verdict} at {iso(last.evaluated_at)})")
        last = decisive[-1]
        matching = [s for s in snapshots if s.get("evaluated_at") == iso(last.evaluated_at)]
    policy, window, expected, groups = from_snapshot(matching[-1])
    return render_report(last, window, expected, policy, canary=groups["canary"], baseline=groups["baseline"],
                         traffic=_traffic(store, last))


def _traffic(store: Any, verdict: Verdict) -> list[dict]:
    """The traffic steps of the verdict's deploy for the strip (a verdict that names no deploy:
    the release's); none when the store has none or cannot say (a report is an explanation: the
    strip never keeps it from being written)."""
    try:
        changes = store.traffic(verdict.release) if store is not None and hasattr(store, "traffic") else []
        return changes if verdict.deploy is None else [c for c in changes if named_deploy(c) == verdict.deploy]
    except Exception as e:  # noqa: BLE001
        log.warning("report: no traffic steps: %s", e)
        return []
