"""The rule vocabulary (gate.rules): every rule the judge emits is a member, and each member keeps
the name every output (JSON, stored evaluations, report, Slack, JUnit) showed before it."""

from __future__ import annotations

import json

from gate import judge
from gate.analysis import replay_case
from gate.rules import Rule
from gate.verdict import MetricResult

# One case of each kind of regression or trouble the judge meets, with and without a baseline.
FAMILIES = ("k1m-aa", "k1m-canary-down", "k1m-memory-leak", "k1m-error-rate", "k1m-fleet-anomaly",
            "k1m-low-traffic", "k1m-latency-tail", "k1m-partial-gaps", "nab5m-aa", "nab5m-error-bursts")


class RecordingJudge:
    """The judge, with every verdict it returns kept: each evaluation of a replay, not only the last."""

    def __init__(self):
        self.verdicts = []

    def learn(self, *args, **kwargs):
        return judge.learn(*args, **kwargs)

    def evaluate(self, *args, **kwargs):
        verdict = judge.evaluate(*args, **kwargs)
        self.verdicts.append(verdict)
        return verdict


def test_every_rule_the_judge_emits_over_replays_is_a_member(corpus):
    recording = RecordingJudge()
    for family in FAMILIES:
        case = sorted(corpus.glob(f"{family}-[0-9]*"))[0]
        replay_case(case, judge=recording)
    rules = [m.rule for v in recording.verdicts for m in v.metrics]
    assert rules
    strays = {r for r in rules if not isinstance(r, Rule)}
    assert not strays, f"rules built as plain strings, not members of Rule: {strays}"
    # The replays reach the rules of all three verdicts and of the canary that stopped reporting.
    seen = set(rules)
    assert Rule.CANARY_NOT_REPORTING in seen
    assert any(r.shown_within for r in seen)
    assert len(seen) >= 6, seen


def test_a_member_serialises_to_the_very_name_it_had():
    assert json.dumps({"rule": Rule.MEAN_COULD_NOT_TELL_AT_END}) == '{"rule": "mean-could-not-tell-at-end"}'
    assert f"[{Rule.BREACHES_SLO}]" == "[breaches-slo]"
    stored = MetricResult("cpu", "fail", "...", Rule.RATE_BEYOND_TOLERANCE).to_dict()
    assert json.loads(json.dumps(stored))["rule"] == "rate-beyond-tolerance"


def test_the_properties_say_what_the_string_tests_said():
    # The tests the properties replace, on the names: a suffix, a set, a literal.
    for rule in Rule:
        assert rule.could_not_tell == rule.endswith("could-not-tell-at-end") == ("could-not-tell" in rule)
        assert rule.shown_within == (rule in ("mean-within-tolerance", "rate-within-tolerance"))
        assert rule.not_reporting == (rule == "canary-not-reporting")
        assert rule.shared_breach == (rule == "fleet-breaches-slo")


def test_a_name_no_rule_has_reads_as_none():
    # A result made by hand or stored by another version: no member, no property claimed for it.
    assert Rule.of("") is None
    assert Rule.of("error") is None
    assert Rule.of("mean-within-tolerance") is Rule.MEAN_WITHIN_TOLERANCE
