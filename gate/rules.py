"""The rules a metric's result is decided by: one closed vocabulary (as Kayenta's classification
labels), so no module spells a rule or tests one by its text.

Each member's value is the rule's name as every output shows it (the JSON of a verdict, the stored
evaluations, the report, Slack, JUnit): a `StrEnum`, so a member *is* that string, and what was
written before this module reads back the same. What a rule means to the rest of the gate (a pass
shown within tolerance, a metric the judge could not tell, a canary that stopped reporting) is a
property here, not a suffix test where it is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Rule(StrEnum):
    # The canary as a whole
    CANARY_NOT_REPORTING = "canary-not-reporting"
    # Not enough to judge
    NO_DATA = "no-data"
    TOO_FEW_POINTS = "too-few-points"
    MINIMUM_VOLUME = "minimum-volume"
    TOO_LITTLE_DATA = "too-little-data"
    NOT_COMPUTABLE = "not-computable"
    IMPLAUSIBLY_CLEAN = "implausibly-clean"
    READS_ZERO = "reads-zero"
    INTERVAL_STRADDLES_TOLERANCE = "interval-straddles-tolerance"
    # Canary against its baseline, at any look
    MEAN_BEYOND_TOLERANCE = "mean-beyond-tolerance"
    RATE_BEYOND_TOLERANCE = "rate-beyond-tolerance"
    RATE_GROSSLY_BEYOND_TOLERANCE = "rate-grossly-beyond-tolerance"
    UPPER_QUANTILE_BEYOND_TOLERANCE = "upper-quantile-beyond-tolerance"
    EXCURSIONS_BEYOND_CHANCE = "excursions-beyond-chance"
    MEAN_WITHIN_TOLERANCE = "mean-within-tolerance"
    RATE_WITHIN_TOLERANCE = "rate-within-tolerance"
    # Canary against its baseline, at the end of the lifetime
    MEAN_BEYOND_TOLERANCE_AT_END = "mean-beyond-tolerance-at-end"
    RATE_BEYOND_TOLERANCE_AT_END = "rate-beyond-tolerance-at-end"
    MEAN_RISING_BEYOND_TOLERANCE_AT_END = "mean-rising-beyond-tolerance-at-end"
    RATE_RISING_BEYOND_TOLERANCE_AT_END = "rate-rising-beyond-tolerance-at-end"
    MEAN_NOT_SHOWN_WORSE_AT_END = "mean-not-shown-worse-at-end"
    RATE_NOT_SHOWN_WORSE_AT_END = "rate-not-shown-worse-at-end"
    MEAN_COULD_NOT_TELL_AT_END = "mean-could-not-tell-at-end"
    RATE_COULD_NOT_TELL_AT_END = "rate-could-not-tell-at-end"
    # Canary against its own history (no baseline)
    NO_HISTORY = "no-history"
    DEPARTS_FROM_HISTORY = "departs-from-history"
    CONSISTENT_WITH_HISTORY = "consistent-with-history"
    WATCHING_HISTORY = "watching-history"
    # Guardrails (absolute SLO limits)
    BREACHES_SLO = "breaches-slo"
    BURNS_ERROR_BUDGET = "burns-error-budget"
    FLEET_BREACHES_SLO = "fleet-breaches-slo"
    AT_SLO_LIMIT = "at-slo-limit"

    @classmethod
    def of(cls, name: str | None) -> Rule | None:
        """The member a result's rule names; None for none ("") or a name this gate does not
        emit (a result made by hand, an evaluation stored by another version)."""
        try:
            return cls(name)
        except ValueError:
            return None

    @property
    def shown_within(self) -> bool:
        """A pass *shown* within tolerance at a checkpoint (not merely not shown worse at the
        deadline): its coverage is of the points so far."""
        return self in (Rule.MEAN_WITHIN_TOLERANCE, Rule.RATE_WITHIN_TOLERANCE)

    @property
    def could_not_tell(self) -> bool:
        """At the end of the lifetime, the judge could not tell the canary within its tolerance
        from a regression (END_PASS_RULE): undecided, whatever `on_undecided` makes of it."""
        return self in (Rule.MEAN_COULD_NOT_TELL_AT_END, Rule.RATE_COULD_NOT_TELL_AT_END)

    @property
    def not_reporting(self) -> bool:
        """The canary stopped reporting: every metric fails for that one cause, none of them for
        what it measures."""
        return self is Rule.CANARY_NOT_REPORTING

    @property
    def shared_breach(self) -> bool:
        """An SLO breach the reference shares: not the release's doing, not promoted into."""
        return self is Rule.FLEET_BREACHES_SLO


@dataclass(frozen=True)
class StatisticRules:
    """The rules of one statistic (a gauge's mean, a count's rate) compared with its baseline."""

    beyond_tolerance: Rule
    within_tolerance: Rule
    beyond_tolerance_at_end: Rule
    rising_beyond_tolerance_at_end: Rule
    not_shown_worse_at_end: Rule
    could_not_tell_at_end: Rule


MEAN_RULES = StatisticRules(Rule.MEAN_BEYOND_TOLERANCE, Rule.MEAN_WITHIN_TOLERANCE, Rule.MEAN_BEYOND_TOLERANCE_AT_END,
                            Rule.MEAN_RISING_BEYOND_TOLERANCE_AT_END, Rule.MEAN_NOT_SHOWN_WORSE_AT_END,
                            Rule.MEAN_COULD_NOT_TELL_AT_END)
RATE_RULES = StatisticRules(Rule.RATE_BEYOND_TOLERANCE, Rule.RATE_WITHIN_TOLERANCE, Rule.RATE_BEYOND_TOLERANCE_AT_END,
                            Rule.RATE_RISING_BEYOND_TOLERANCE_AT_END, Rule.RATE_NOT_SHOWN_WORSE_AT_END,
                            Rule.RATE_COULD_NOT_TELL_AT_END)
