"""A new kind of metric is one module (its judge's object) and one registry entry (`gate.kinds`):
registered here at run time, a policy may name it and the judge compares it with its object, and
nothing else in the gate asks what kind a metric is."""

from dataclasses import replace

import pytest

from gate import kinds
from gate.errors import PolicyError
from gate.judge.gauge import GAUGE
from gate.judge.kinds import MetricKind
from tests.test_judge import _fleet, _policy, _run


class Recorded:
    """Which metrics a kind's functions were called for."""

    def __init__(self):
        self.learned, self.compared = [], []

    def kind(self) -> MetricKind:
        """A new kind: judged as a gauge is, telling what it learned and compared."""
        def learn(m, *args):
            self.learned.append(m.name)
            return GAUGE.learn(m, *args)

        def compare(m, *args):
            self.compared.append(m.name)
            return GAUGE.compare(m, *args)

        return replace(GAUGE, learn=learn, compare=compare)


RECORDED = Recorded()
LEVEL = RECORDED.kind()


@pytest.fixture
def level_kind():
    saved = dict(kinds.KINDS)
    kinds.register(kinds.Kind("level", summed=False, judged_by="tests.test_kinds:LEVEL", description="a level"))
    RECORDED.compared.clear()
    RECORDED.learned.clear()
    yield RECORDED
    kinds.KINDS.clear()
    kinds.KINDS.update(saved)
    kinds._judges.pop("level", None)


def _with_cpu_as(kind: str):
    policy = _policy()
    metrics = [{**m.model_dump(mode="json", exclude_none=True), **({"kind": kind} if m.name == "cpu" else {})}
               for m in policy.metrics]
    return _policy(metrics=metrics)

def test_a_kind_not_registered_is_refused_naming_the_field_and_the_kinds():
    with pytest.raises(PolicyError, match=r"metrics\.0\.kind: Input should be 'gauge' or 'count' \(got 'level'\)"):
        _with_cpu_as("level")

def test_a_registered_kind_is_judged_by_its_own_object_and_nothing_else_asks_the_kind(level_kind):
    canary, baseline = _fleet(2)
    as_gauge, _ = _run(_with_cpu_as("gauge"), canary, baseline)
    as_level, _ = _run(_with_cpu_as("level"), canary, baseline)
    # The judge learned and compared cpu through the registered object, at every look ...
    assert level_kind.learned == ["cpu"] and set(level_kind.compared) == {"cpu"}
    assert len(level_kind.compared) > 3
    # ... and, the object judging as a gauge does, every result is the gauge's: no other place
    # (the policy, the sources, the limits, the history-only path) branched on the name.
    assert as_level.verdict == as_gauge.verdict and as_level.reason == as_gauge.reason
    assert [m.to_dict() for m in as_level.metrics] == [m.to_dict() for m in as_gauge.metrics]


def test_a_kind_whose_judge_cannot_be_loaded_is_a_message_naming_it_never_a_pass():
    """Review: a registration's typo (`judged_by` naming no object) raised a bare AttributeError
    at the first judgement; the run still ended could not judge, but the message named neither
    the kind nor what to fix."""
    saved = dict(kinds.KINDS)
    kinds.register(kinds.Kind("level", summed=False, judged_by="gate.judge.gauge:GAGUE", description="a typo"))
    try:
        with pytest.raises(PolicyError, match=r"kind 'level': its judge 'gate.judge.gauge:GAGUE' cannot be loaded"):
            kinds.judged_as("level")
        canary, baseline = _fleet(2)
        verdict, _ = _run(_with_cpu_as("level"), canary, baseline)
    except PolicyError:
        verdict = None
    finally:
        kinds.KINDS.clear()
        kinds.KINDS.update(saved)
        kinds._judges.pop("level", None)
    assert verdict is None or verdict.verdict != "pass"
