"""Rates measured on a finite number of trials: how sure a count of k in n can make us."""

from __future__ import annotations


def proportion_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson (exact binomial) interval of a rate seen k times in n trials: never
    narrower than the trials allow (0 of 24 false alarms is not a rate of 0, it is up to ~14%)."""
    if n <= 0:
        return 0.0, 1.0
    from statsmodels.stats.proportion import proportion_confint  # here: scipy costs a cold start

    lo, hi = proportion_confint(k, n, alpha=1 - level, method="beta")
    return float(lo), float(hi)


def trials_for(rate: float, level: float = 0.95) -> int:
    """Trials without a single event needed before the upper end of proportion_interval drops
    to `rate` (the exact rule of three): fewer windows cannot show a false-alarm rate that low."""
    import math

    if not 0 < rate < 1:
        return 1
    return max(1, math.ceil(math.log((1 - level) / 2) / math.log(1 - rate)))
