"""What a judgement says: the verdict, and per metric the numbers and the rule behind it.

Everything downstream (store, report, Slack, Jenkins JUnit, exit codes) reads these, never the
judge's internals, so the judge can be replaced whole.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal

from gate.release import iso, parse_time

ReleaseVerdict = Literal["pass", "fail", "inconclusive"]  # of the whole release (its metrics: MetricOutcome)
MetricOutcome = Literal["pass", "fail", "inconclusive", "skipped"]

EXIT_CODES = {"pass": 0, "fail": 1, "inconclusive": 3, "error": 4}
EXIT_ERROR = 4

def _finite(x: float | None) -> float | None:
    """Full precision (JSON keeps every digit of a float): what is stored must show, rounded once
    for display, exactly what the verdict showed."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass
class MetricResult:
    name: str
    verdict: MetricOutcome
    reason: str
    rule: str = ""  # a gate.rules.Rule (a str) from the judge; read back from the store, its plain name
    canary: float | None = None  # the canary's value over the window (mean, rate or quantile)
    baseline: float | None = None  # the concurrent baseline's value over the same points
    expected: float | None = None  # what the seasonal model expected for the window
    effect: float | None = None  # relative effect estimate: canary / reference - 1
    interval: tuple[float, float] | None = None  # confidence interval of `effect`, of the test that decided
    interval_test: str | None = None  # which test that interval is ("pass test at a checkpoint", ...)
    tolerance: float | None = None
    critical: bool = False
    muted: bool = False
    slo: str | None = None  # the metric's guardrails in words ("max 800 ms"), None: it has none
    links: dict[str, str] | None = None  # a failing metric's evidence: name -> URL (gate.links)

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("canary", "baseline", "expected", "effect"):
            d[key] = _finite(d[key])
        if self.interval is not None:
            lo, hi = self.interval
            d["interval"] = [_finite(lo), _finite(hi)]
        if self.slo is None:  # only then: the JSON of a metric without guardrails is unchanged
            del d["slo"]
        if self.links is None:  # idem, a metric without evidence links
            del d["links"]
        if self.interval_test is None:
            del d["interval_test"]
        return d


def joined_reasons(results: list[MetricResult]) -> str:
    """`name: reason` per metric, the metrics with one reason named together: a canary that died
    fails every metric for one cause, said once ("cpu, memory: the canary has not reported...")."""
    names_by_reason: dict[str, list[str]] = {}
    for r in results:
        names_by_reason.setdefault(r.reason, []).append(r.name)
    return "; ".join(f"{', '.join(names)}: {reason}" for reason, names in names_by_reason.items())


@dataclass
class Verdict:
    release: str
    verdict: ReleaseVerdict
    reason: str
    deployed_at: int
    evaluated_at: int
    final: bool  # decisive, or the end of the lifetime was reached
    metrics: list[MetricResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # The demo source (`simulate`, `replay`) the verdict was judged from; None for a live source.
    demo: str | None = None
    # The traffic step (`gate rollout`) this verdict judged, on its own window; None otherwise.
    # Only such a verdict lets its step advance: a whole-release check is not a step's judgement.
    rollout_step: int | None = None
    # The deploy of the release this verdict judged (gate.lifecycle.Deploy.number); None when it
    # was judged without a registration (a replay, the bench).
    deploy: int | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    @property
    def demo_label(self) -> str | None:
        """How every output (report, Slack, JUnit) marks a verdict not judged on a live release."""
        return None if self.demo is None else f"DEMO ({self.demo})"

    @property
    def deploy_id(self) -> str | None:
        """How the report, Slack and JUnit name the deploy judged (gate.lifecycle.Deploy.id)."""
        return None if self.deploy is None else f"{self.release}#{self.deploy}"

    @property
    def decisive(self) -> bool:
        return self.verdict in ("pass", "fail")

    def to_dict(self) -> dict:
        d = {
            "release": self.release,
            "verdict": self.verdict,
            "reason": self.reason,
            "deployed_at": iso(self.deployed_at),
            "evaluated_at": iso(self.evaluated_at),
            "final": self.final,
            "metrics": [m.to_dict() for m in self.metrics],
            "notes": list(self.notes),
        }
        if self.demo is not None:  # only then: a live verdict's JSON is unchanged
            d["demo"] = self.demo
        if self.rollout_step is not None:
            d["rollout_step"] = self.rollout_step
        if self.deploy is not None:
            d["deploy"] = self.deploy
        return d

    @staticmethod
    def from_dict(d: dict) -> Verdict:
        metrics = []
        for m in d.get("metrics", []):
            m = dict(m)
            if m.get("interval") is not None:
                m["interval"] = tuple(m["interval"])
            metrics.append(MetricResult(**m))
        return Verdict(
            release=d["release"],
            verdict=d["verdict"],
            reason=d["reason"],
            deployed_at=parse_time(d["deployed_at"]),
            evaluated_at=parse_time(d["evaluated_at"]),
            final=d["final"],
            metrics=metrics,
            notes=list(d.get("notes", [])),
            demo=d.get("demo"),
            rollout_step=d.get("rollout_step"),
            deploy=d.get("deploy"),
        )
