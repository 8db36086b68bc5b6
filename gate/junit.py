"""A verdict as JUnit XML, so that CI servers (Jenkins' `junit` step) show the gate per metric.

One test suite named after the release, one test case per metric:

* `pass`: a passed test case;
* `fail`: a `<failure>` whose message is the metric's reason and whose text has the numbers
  (canary, baseline, expected, effect with its interval, tolerance, rule);
* muted or context-only metrics (`skipped`, or `muted`): `<skipped>`, they never count;
* `inconclusive`: what the gate made of the undecided metric. If the verdict is `fail` and no
  metric failed, the canary failed *because* these metrics stayed undecided (the policy's
  `on_undecided`, fail-closed): they are failures, so the report shows why it failed. Otherwise
  (the verdict passed, failed on another metric, or is still undecided) they are `<skipped>`:
  not a regression, and not evidence of one.

A gate that could not judge has no per-metric results: `error_report` writes one test case with
an `<error>` instead, so the CI server never shows an empty, green report for a gate that did
not decide.

Usable as a command for verdicts produced elsewhere (the Lambda, the state machine):
`python -m gate.junit VERDICT.json [--output FILE]`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from gate import present
from gate.release import file_name, iso
from gate.verdict import MetricResult, Verdict

SUITE_PREFIX = "canary-gate"
# XML 1.0 cannot carry most control characters, even escaped: drop them from reasons.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _text(value: object) -> str:
    return _NOT_XML.sub("", str(value))


def _percent(x: float | None) -> str:
    return present.percent(x, "-", decimals=2)  # a CI log is read closer than a chart


def _details(m: MetricResult) -> str:
    """The numbers behind a metric's verdict, one per line, for the failure's text."""
    lines = [f"{m.verdict}: {m.reason}"]
    if m.rule:
        lines.append(f"rule: {m.rule}")
    canary, baseline, expected = (present.number(x, "-") for x in (m.canary, m.baseline, m.expected))
    lines.append(f"canary: {canary}  baseline: {baseline}  expected: {expected}")
    effect = f"effect: {_percent(m.effect)}"
    if m.interval is not None:
        effect += f" {present.interval(m.interval, show=_percent, test=m.interval_test)}"
    lines.append(f"{effect}  tolerance: {present.tolerance(m.tolerance, '-')}" + (f"  SLO: {m.slo}" if m.slo else ""))
    if m.critical:
        lines.append("critical: a failure of this metric fails the canary on its own")
    lines += [f"{name}: {url}" for name, url in (m.links or {}).items()]  # the evidence (gate.links)
    return "\n".join(lines)


def _class_name(release: str) -> str:
    # The release's file name (one rule), without dots: Jenkins splits class names on dots into
    # package and class, so a release such as v1.2.3 is kept in one piece.
    return f"{SUITE_PREFIX}.{file_name(release).replace('.', '_')}"


def _suite(release: str, timestamp: str, properties: dict[str, str]) -> tuple[ET.Element, ET.Element]:
    root = ET.Element("testsuites", name=_text(f"{SUITE_PREFIX} {release}"))
    suite = ET.SubElement(root, "testsuite", name=_text(release), timestamp=timestamp)
    props = ET.SubElement(suite, "properties")
    for key, value in properties.items():
        ET.SubElement(props, "property", name=key, value=_text(value))
    return root, suite


def _counts(root: ET.Element, suite: ET.Element) -> None:
    cases = suite.findall("testcase")
    counts = {
        "tests": len(cases),
        "failures": sum(1 for c in cases if c.find("failure") is not None),
        "errors": sum(1 for c in cases if c.find("error") is not None),
        "skipped": sum(1 for c in cases if c.find("skipped") is not None),
    }
    for element in (root, suite):
        for key, value in counts.items():
            if element is root and key == "skipped":
                continue  # not an attribute of <testsuites>
            element.set(key, str(value))


def _serialize(root: ET.Element) -> str:
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def report(verdict: Verdict) -> str:
    """The JUnit XML of a verdict: one test case per metric."""
    root, suite = _suite(
        verdict.release + (f" {verdict.demo_label}" if verdict.demo_label else ""),
        iso(verdict.evaluated_at).removesuffix("Z"),
        {
            "verdict": verdict.verdict,
            **({"demo": verdict.demo} if verdict.demo else {}),
            "final": str(verdict.final).lower(),
            "reason": verdict.reason,
            "deployed_at": iso(verdict.deployed_at),
            **({"deploy": verdict.deploy_id} if verdict.deploy_id else {}),
            "evaluated_at": iso(verdict.evaluated_at),
        },
    )
    undecided_failed = verdict.verdict == "fail" and not any(
        m.verdict == "fail" and not m.muted for m in verdict.metrics
    )
    for m in verdict.metrics:
        case = ET.SubElement(suite, "testcase", classname=_class_name(verdict.release), name=_text(m.name), time="0")
        if m.muted or m.verdict == "skipped":
            ET.SubElement(case, "skipped", message=_text(("muted: " if m.muted else "") + m.reason))
        elif m.verdict == "fail" or (m.verdict == "inconclusive" and undecided_failed):
            failure = ET.SubElement(case, "failure", message=_text(m.reason), type=_text(m.rule or m.verdict))
            failure.text = _text(_details(m))
            continue
        elif m.verdict == "inconclusive":
            ET.SubElement(case, "skipped", message=_text(f"inconclusive: {m.reason}"))
        # the numbers of a passed (or skipped) metric too: a pass is worth checking as well
        ET.SubElement(case, "system-out").text = _text(_details(m))
    if verdict.notes:
        ET.SubElement(suite, "system-out").text = _text("\n".join(verdict.notes))
    _counts(root, suite)
    return _serialize(root)


def error_report(release: str, message: str) -> str:
    """The JUnit XML of a gate that could not judge: one test case, in error."""
    root, suite = _suite(release, "", {"verdict": "error", "reason": message})
    del suite.attrib["timestamp"]
    case = ET.SubElement(suite, "testcase", classname=_class_name(release), name="canary gate", time="0")
    error = ET.SubElement(case, "error", message=_text(message), type="could-not-judge")
    error.text = _text(f"could not judge: {message}")
    _counts(root, suite)
    return _serialize(root)


def write(path: str | Path, xml: str) -> None:
    """Write atomically, so a reader never sees half a report."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(xml)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def from_json(document: object, release: str = "unknown") -> tuple[str, bool]:
    """The report of a JSON document that should be a verdict (`gate check --json`, the Lambda's
    output), and whether it was one. Anything else (an error payload, garbage) is reported as
    could-not-judge."""
    if isinstance(document, dict) and document.get("verdict") in ("pass", "fail", "inconclusive"):
        try:
            return report(Verdict.from_dict(document)), True
        except (KeyError, TypeError, ValueError) as e:
            return error_report(str(document.get("release") or release), f"malformed verdict: {e!r}"), False
    message = "not a verdict"
    if isinstance(document, dict):
        release = str(document.get("release") or release)
        message = str(document.get("error") or document.get("errorMessage") or message)
    return error_report(release, message), False


def _read_json(path: Path) -> object:
    text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except ValueError:
        # `gate check --watch --json` may print one line per evaluation: the last one decides.
        lines = [line for line in text.splitlines() if line.strip()]
        return json.loads(lines[-1]) if lines else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gate.junit", description=__doc__.split("\n\n")[0])
    parser.add_argument("verdict", type=Path, help="JSON verdict (the output of `gate check --json`).")
    parser.add_argument("--output", "-o", type=Path, help="JUnit XML file to write (default: stdout).")
    parser.add_argument("--release", default="unknown", help="Release name if the file is not a verdict.")
    args = parser.parse_args(argv)
    try:
        document = _read_json(args.verdict)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        document = {"error": f"cannot read the verdict {args.verdict}: {e}"}
    xml, is_verdict = from_json(document, args.release)
    if args.output:
        write(args.output, xml)
    else:
        sys.stdout.write(xml)
    return 0 if is_verdict else 4  # 4: could not judge, as the gate's exit codes


if __name__ == "__main__":
    sys.exit(main())
