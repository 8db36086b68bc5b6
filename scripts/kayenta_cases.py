"""Kayenta's classifier tests as data: reads a saved copy of Kayenta's ClassifierSuite.scala and
prints, per test, its name, arrays, expected label, direction and thresholds as JSON.

    python scripts/kayenta_cases.py ClassifierSuite.scala > tests/data/kayenta_classifier.json

The Scala file is Kayenta's (spinnaker/kayenta, Apache-2.0): it is read, never committed here.
Only the figures carry over; tests/test_kayenta_conformance.py replays them through our judge.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

SOURCE = ("spinnaker/kayenta: kayenta-judge/src/test/scala/com/netflix/kayenta/judge/"
          "ClassifierSuite.scala (Copyright 2017 Netflix, Inc.)")
LICENCE = ("Apache-2.0 (http://www.apache.org/licenses/LICENSE-2.0). The figures (arrays, labels, "
           "thresholds) are Kayenta's test data; the conversion is canary-gate's "
           "(scripts/kayenta_cases.py).")

TEST = re.compile(r'^\s*test\("(?P<name>[^"]+)"\)\s*\{', re.MULTILINE)
NUMBER = r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"
PAIR = rf"\(\s*({NUMBER})\s*,\s*({NUMBER})\s*\)"


def _array(body: str, name: str) -> list[float]:
    """`val NAME = Array(...)` or `Array[Double]()` -> the numbers."""
    match = re.search(rf"val {name}\s*=\s*Array(?:\[Double\])?\((?P<items>[^)]*)\)", body)
    if match is None:
        raise ValueError(f"no {name} array")
    return [float(x) for x in re.findall(NUMBER, match.group("items"))]


def _pair(body: str, name: str) -> list[float] | None:
    match = re.search(rf"{name}\s*=\s*{PAIR}", body)
    return [float(match.group(1)), float(match.group(2))] if match else None


def _number(body: str, name: str) -> float | None:
    match = re.search(rf"\b{name}\s*=\s*({NUMBER})", body)
    return float(match.group(1)) if match else None


def _word(body: str, pattern: str) -> str | None:
    match = re.search(pattern, body)
    return match.group(1) if match else None


def parse_test(name: str, body: str) -> dict:
    """One `test("...") { ... }` block -> its figures. `expected` is the asserted classification
    (Pass, High, Low, Nodata), None when the test asserts something else (listed in `checks`)."""
    measure = _word(body, r'effectSizeMeasure\s*=\s*"(\w+)"')
    checks = [line.strip() for line in body.splitlines()
              if line.strip().startswith(("assert(", "result.")) and "classification ==" not in line]
    return {
        "name": name,
        "classifier": _word(body, r"new (\w+Classifier)\("),
        "experiment": _array(body, "experimentData"),
        "control": _array(body, "controlData"),
        "expected": _word(body, r"result\.classification == (\w+)"),
        "direction": (_word(body, r"MetricDirection\.(\w+)") or "").lower(),
        "tolerance": _number(body, "tolerance"),  # Kayenta's allowed shift in its Mann-Whitney interval
        "confidence": _number(body, "confLevel"),
        "effect_size_measure": measure or "meanRatio",
        "effect_size_thresholds": _pair(body, "effectSizeThresholds"),
        "critical_thresholds": _pair(body, "criticalThresholds"),
        "critical": "isCriticalMetric = true" in body,
        "nan_strategy": (_word(body, r"NaNStrategy\.(\w+)") or "").lower() or None,
        "checks": checks,
    }


def parse_suite(text: str) -> list[dict]:
    starts = list(TEST.finditer(text))
    ends = [m.start() for m in starts[1:]] + [len(text)]
    return [parse_test(m.group("name"), text[m.end():end]) for m, end in zip(starts, ends)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scala", type=Path, help="a saved copy of Kayenta's ClassifierSuite.scala")
    args = parser.parse_args(argv)
    cases = parse_suite(args.scala.read_text(encoding="utf-8"))
    if not cases:
        parser.error(f"{args.scala}: no test(...) blocks found")
    header = json.dumps({"source": SOURCE, "licence": LICENCE, "tests": len(cases)}, indent=1)
    # One case a line: the arrays stay readable and a diff shows which test changed.
    body = ",\n".join(f"  {json.dumps(case)}" for case in cases)
    sys.stdout.write(f'{header[:-2]},\n "cases": [\n{body}\n ]\n}}\n')
    return 0


if __name__ == "__main__":
    sys.exit(main())
