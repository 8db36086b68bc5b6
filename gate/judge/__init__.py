"""The judge: seasonal reference + sequential, anytime-valid decisions per metric.

Shaped like Kayenta's judge, in small units that run in order, one module each:

* preprocessing. `reference.learn`, once per deploy, from the history before it: the seasonal
  model of each KPI (expected value and noise by time of day) and the noise priors the tests
  start from, each kind learning its own (a count's glitch points screened out). `preprocess`, at
  each look: pair canary and baseline points by timestamp (load, time of day and fleet-wide
  swings cancel), drop missing points, hold out moments when the baseline itself is off its
  seasonal expectation (a fleet-wide anomaly is not the canary's fault).
* classifiers. `classify`: per metric, test "worse than tolerated" against "within tolerance" with
  confidence sequences that stay valid at every look, the comparison being its kind's (`gauge`:
  levels, latency also by its tail; `count`: events out of requests), found through the one
  registry of kinds (`gate.kinds.judge_of`; what a kind supplies: `kinds.MetricKind`); its limits
  (`limits`) and coverage (`coverage`) after. `history`: the same question without a baseline,
  against the seasonal history. `down`: a canary that stopped reporting or serving, caught apart
  from zero events.
* `score`: fail on any judged metric shown beyond its tolerance (critical or not: the
  false-alarm budget is already shared), pass only when every judged metric is shown within
  it and the canary has run its minimum duration, otherwise wait.

`learn(policy, history, deployed_at) -> Reference`,
`evaluate(policy, reference, window, deployed_at, now) -> Verdict` and, for the report,
`expected_band(policy, reference, timestamps, scales)` are the whole interface. The names below
it are the ones the bench and tests read (its constants: `bench.cv` sets them where they are read).
"""

from __future__ import annotations

from gate import guardrails
from gate.judge.budget import (PASS_CHECKPOINTS, STARTUP_MAX, TUNED_AT, Budget, Look, Setting, look_at,
                               minimum_duration)
from gate.judge.classify import (END_BOUND_Z, END_LIKELIHOOD_RATIO, END_PASS_RULE, END_REGRESSION_MULTIPLE,
                                 LATEST_AT_END, _against_baseline)
from gate.judge.comparison import CLIP_SCALES, MIN_POINTS_TO_FAIL, _result
from gate.judge.down import _canary_down, _canary_not_serving, _canary_targets_down
from gate.judge.history import EXCURSION_SCALES, HISTORY_ESTIMATE_AT_END, _against_history
from gate.judge.limits import _history_limit_checks
from gate.judge.preprocess import _after, preprocess
from gate.judge.reference import MetricReference, Reference, expected_band, learn, learns_from
from gate.judge.score import _score, _what_was_seen
from gate.policy import Policy
from gate.rules import Rule
from gate.series import Observations
from gate.verdict import Verdict

__all__ = [
    "CLIP_SCALES", "END_BOUND_Z", "END_LIKELIHOOD_RATIO", "END_PASS_RULE", "END_REGRESSION_MULTIPLE",
    "EXCURSION_SCALES", "HISTORY_ESTIMATE_AT_END", "LATEST_AT_END", "MIN_POINTS_TO_FAIL", "TUNED_AT", "Budget",
    "Look", "MetricReference", "Reference", "Setting", "evaluate", "expected_band", "learn", "learns_from",
    "look_at", "minimum_duration", "preprocess",
]


def evaluate(policy: Policy, reference: Reference, window: Observations, deployed_at: int, now: int) -> Verdict:
    judged = [m for m in policy.metrics if m.bad_direction != "none"]
    voting = [m for m in judged if not m.muted]
    # Bonferroni over metrics and over the two tests a gauge runs (level and tail), each
    # guardrail, plus the canary-down check: each keeps its share at every look, so the total holds.
    tests = 1 + sum((2 if m.judges_tail else 1) + len(guardrails.limits(m)) for m in voting)
    # Passing needs every metric to pass, so a canary with one metric at its tolerance passes
    # only if that metric does: the pass risk is split over the checkpoints, not the metrics.
    budget = Budget(policy.alpha / tests, policy.pass_risk / PASS_CHECKPOINTS)
    lifetime_points = max(1, policy.lifetime // policy.interval)
    look = look_at(policy, deployed_at, now)
    notes: list[str] = []

    remaining = max(0, (deployed_at + policy.lifetime - now) // policy.interval)
    # A canary that stops reporting is caught from its first minute, warm-up or not.
    down = (_canary_down(policy, window, deployed_at, now, lifetime_points, policy.alpha / tests)
            or _canary_not_serving(policy, window, now, lifetime_points, policy.alpha / tests)
            or _canary_targets_down(policy, window, now))
    compared = window
    if policy.warmup:
        # The warm-up is shown (the report draws the whole window) but not compared: new
        # instances warm their caches and JIT. What is left of the lifetime is what is judged.
        compared = _after(window, deployed_at + policy.warmup, now)
        lifetime_points = max(1, (policy.lifetime - policy.warmup) // policy.interval)
        notes.append(f"the first {policy.warmup // 60} min ({policy.warmup} s) are a warm-up: shown, not compared")
    # A start-up allowance for a denominator that reads 0 from the deploy (a target still
    # registering with its load balancer): STARTUP_MAX from the deploy, less the warm-up.
    startup = max(0, STARTUP_MAX - policy.warmup) // policy.interval
    setting = Setting(budget, look, lifetime_points, remaining, startup)
    results = []
    for m in judged:
        if down is not None:
            results.append(_result(m, "fail", Rule.CANARY_NOT_REPORTING, down, **_what_was_seen(m, reference, window)))
        elif policy.history_only:
            result = _against_history(m, policy, reference, compared.canary, budget, lifetime_points, look)
            checks = _history_limit_checks(m, reference, compared.canary, setting)
            results.append(guardrails.guard(m, result, checks, history_only=True))
        else:
            results.append(_against_baseline(m, reference, compared, setting, notes))
    return _score(policy, results, deployed_at, now, notes)
