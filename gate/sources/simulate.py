"""The demo source: a simulated service with a canary and a baseline group, no account needed.

Every value is a pure function of (seed, group, metric, timestamp, step): the source can answer
any time range (a week of history, the canary window, a single minute) and two queries that
overlap agree on the points they share, as a real metrics backend would. Randomness comes from
numpy generators seeded per (group, metric, day), so no state is kept between queries.

The service: traffic with a daily and a weekly shape and a slow fleet-wide wiggle shared by both
groups (so it cancels when the canary is paired with the baseline), CPU and latency that follow
the load, memory that barely moves, and errors as over-dispersed binomial counts of the requests.
Both groups are statistically identical until the canary is deployed; then the scenario acts on
the canary only:

* `healthy`: nothing (the canary runs the same code as the baseline);
* `db_connections`: the new version leaks database connections: every few minutes the pool runs
  dry and the canary has a burst of errors and slow requests, and latency stays up in between;
* `payment_failures`: a broken payment call: the canary's error rate is several times higher;
* `bad_version`: a slow code path: canary latency up by 60%, CPU by 30%;
* `gateway_killed`: the canary's gateway dies a few minutes after the deploy: it stops reporting.

Effects are several times the tolerances of examples/simulate.yaml (10% for gauges, 50% for the
error rate), so any sound judge can tell them apart from `healthy`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from gate.errors import PolicyError
from gate.policy import Policy
from gate.series import Frame, Observations
from gate.sources import Query
from gate.release import parse_time

DAY = 86400
SCENARIOS = ("healthy", "db_connections", "payment_failures", "bad_version", "gateway_killed")
# What each scenario is, and what a sound gate answers (the demo says it before it runs, so that
# a first run's fail reads as the gate working, not as the install failing).
EXPECTED = {
    "healthy": "the same code as the baseline: it should pass",
    "db_connections": "the new version leaks database connections: it should fail",
    "payment_failures": "a broken payment call: it should fail",
    "bad_version": "a slow code path: it should fail",
    "gateway_killed": "the canary stops reporting: it should fail",
}
METRICS = ("cpu", "memory", "latency", "errors", "requests")

# The service on an average day (per host of either group).
REQUESTS_PER_SECOND = 50.0
ERROR_PROBABILITY = 0.005

# What each scenario does to the canary, and when (seconds after the deploy).
ONSET = 120  # the new version warms up for two minutes before its faults show
LATENCY_FACTOR_BAD_VERSION = 1.6
CPU_FACTOR_BAD_VERSION = 1.3
ERROR_FACTOR_PAYMENT = 5.0
POOL_CYCLE = 420  # db_connections: the pool runs dry every 7 minutes, first at the onset...
POOL_DRY = 120  # ...for 2 minutes
BURST_ERROR_FACTOR = 15.0
BETWEEN_BURSTS_ERROR_FACTOR = 3.0  # queries that wait too long for a connection time out
BURST_LATENCY_FACTOR = 2.5
BETWEEN_BURSTS_LATENCY_FACTOR = 1.5
GATEWAY_DIES_AFTER = 480  # gateway_killed: the canary goes silent 8 minutes after the deploy


def check_scenario(name: str) -> str:
    if name not in SCENARIOS:
        raise PolicyError(f"unknown scenario {name!r}: choose one of {', '.join(SCENARIOS)}")
    return name


@dataclass(frozen=True)
class _Shape:
    """The load of the whole fleet at given moments: relative traffic, ~1 on average."""

    phases: np.ndarray  # random phases of the fleet-wide wiggle
    periods = np.array([1080.0, 2460.0, 5400.0, 11100.0])  # 18 min .. 3 h
    amplitudes = np.array([0.012, 0.015, 0.02, 0.025])

    def load(self, t: np.ndarray) -> np.ndarray:
        hour = (t % DAY) / 3600.0
        # Quiet at 4 am, busy from mid-morning to the evening peak around 8 pm.
        daily = 1 + 0.45 * np.sin(2 * np.pi * (hour - 10) / 24) + 0.12 * np.sin(4 * np.pi * (hour - 7) / 24)
        weekday = (t // DAY + 3) % 7  # 1970-01-01 was a Thursday: 0 = Monday
        weekly = np.where(weekday >= 5, 0.8, 1.0)
        wiggle = 1 + (self.amplitudes[:, None] * np.sin(2 * np.pi * t[None, :] / self.periods[:, None]
                                                       + self.phases[:, None])).sum(axis=0)
        return daily * weekly * wiggle


class SimulateSource:
    def __init__(self, scenario: str = "healthy", seed: int = 0, deployed_at: int | None = None):
        self.scenario = check_scenario(scenario)
        self.seed = int(seed)
        # Without a deploy time the canary runs the new version at every moment it is asked about.
        self.deployed_at = deployed_at
        self._shape = _Shape(np.random.default_rng([self.seed, 0]).uniform(0, 2 * np.pi, 4))

    # -- randomness: one generator per (group, metric, day, step), so any range is reproducible
    def _noise(self, group: str, metric: str, t: np.ndarray, step: int, draw) -> np.ndarray:
        out = np.empty(len(t))
        days = t // DAY
        for day in np.unique(days):
            key = [self.seed, zlib.crc32(group.encode()), zlib.crc32(metric.encode()), int(day) + 10**6, step]
            rng = np.random.default_rng(key)
            points_per_day = -(-DAY // step)
            block = draw(rng, points_per_day)
            mask = days == day
            out[mask] = block[(t[mask] - day * DAY) // step]
        return out

    def _normal(self, group: str, metric: str, t: np.ndarray, step: int) -> np.ndarray:
        return self._noise(group, metric, t, step, lambda rng, n: rng.standard_normal(n))

    def _uniform(self, group: str, metric: str, t: np.ndarray, step: int) -> np.ndarray:
        return self._noise(group, metric, t, step, lambda rng, n: rng.random(n))

    # -- the healthy service
    def _healthy(self, group: str, t: np.ndarray, step: int) -> dict[str, np.ndarray]:
        load = self._shape.load(t)
        expected_requests = REQUESTS_PER_SECOND * step * load
        requests = _poisson(expected_requests, self._uniform(group, "requests", t, step))
        cpu = 12 + 28 * load + 1.2 * self._normal(group, "cpu", t, step)
        memory = 52 + 3 * load + 0.6 * self._normal(group, "memory", t, step)
        latency = (110 + 45 * load**2) * np.exp(0.06 * self._normal(group, "latency", t, step))
        # Over-dispersion: the error probability itself varies from minute to minute.
        p = ERROR_PROBABILITY * np.exp(0.15 * self._normal(group, "error_rate", t, step) - 0.011)
        return {"cpu": cpu, "memory": memory, "latency": latency, "requests": requests, "p": p}

    def _values(self, group: str, t: np.ndarray, step: int) -> dict[str, np.ndarray]:
        v = self._healthy(group, t, step)
        if group == "canary" and self.scenario != "healthy":
            since = t - self.deployed_at if self.deployed_at is not None else np.full(len(t), 10**9)
            self._apply(v, since, t, step)
        errors = _binomial(v["requests"], np.clip(v.pop("p"), 0, 1), self._uniform(group, "errors", t, step))
        v["errors"] = np.where(np.isnan(v["requests"]), np.nan, errors)
        return v

    def _apply(self, v: dict[str, np.ndarray], since: np.ndarray, t: np.ndarray, step: int) -> None:
        on = since >= ONSET
        if self.scenario == "bad_version":
            v["latency"] = np.where(on, v["latency"] * LATENCY_FACTOR_BAD_VERSION, v["latency"])
            v["cpu"] = np.where(on, v["cpu"] * CPU_FACTOR_BAD_VERSION, v["cpu"])
        elif self.scenario == "payment_failures":
            v["p"] = np.where(on, v["p"] * ERROR_FACTOR_PAYMENT, v["p"])
        elif self.scenario == "db_connections":
            dry = on & (((since - ONSET) % POOL_CYCLE) < POOL_DRY)
            error_factor = np.where(dry, BURST_ERROR_FACTOR, np.where(on, BETWEEN_BURSTS_ERROR_FACTOR, 1.0))
            v["p"] = v["p"] * error_factor
            latency_factor = np.where(dry, BURST_LATENCY_FACTOR, np.where(on, BETWEEN_BURSTS_LATENCY_FACTOR, 1.0))
            v["latency"] = v["latency"] * latency_factor
        elif self.scenario == "gateway_killed":
            dead = since >= GATEWAY_DIES_AFTER
            for name in ("cpu", "memory", "latency", "requests"):
                v[name] = np.where(dead, np.nan, v[name])

    def frame(self, group: str, names: list[str], start: int, end: int, step: int) -> Frame:
        first = -(-start // step) * step
        t = np.arange(first, end + 1, step, dtype=np.int64)
        if len(t) == 0:
            return Frame.empty(step, names)
        values = self._values(group, t, step)
        return Frame(step, t, {n: values[n] for n in names})

    def fetch(self, query: Query) -> Observations:
        names = [m.name for m in query.metrics]
        canary = self.frame("canary", names, query.start, query.end, query.step)
        baseline = self.frame("baseline", names, query.start, query.end, query.step) if query.baseline else None
        return Observations(canary=canary, baseline=baseline)


def _poisson(mean: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Poisson counts from uniforms, exact by the inverse CDF (scipy)."""
    from scipy.stats import poisson

    return poisson.ppf(u, mean)


def _binomial(n: np.ndarray, p: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Binomial counts from uniforms, exact by the inverse CDF (scipy)."""
    from scipy.stats import binom

    n = np.nan_to_num(n, nan=0.0)
    return binom.ppf(u, n, p).clip(0, None)


def from_policy(policy: Policy) -> SimulateSource:
    options = dict(policy.source.options)
    unknown = sorted(set(options) - {"scenario", "seed", "deployed_at"})
    if unknown:
        raise PolicyError(f"source.options: unknown option(s) {', '.join(unknown)} for the simulate source "
                          "(it takes scenario, seed, deployed_at)")
    scenario = options.get("scenario", "healthy")
    if not isinstance(scenario, str):
        raise PolicyError(f"source.options.scenario: a scenario name, got {scenario!r}")
    check_scenario(scenario)
    seed = options.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise PolicyError(f"source.options.seed: an integer, got {seed!r}")
    deployed_at = options.get("deployed_at")
    if deployed_at is not None:
        try:
            deployed_at = parse_time(str(deployed_at))
        except ValueError:
            raise PolicyError(f"source.options.deployed_at: not a time (ISO 8601 or epoch): {deployed_at!r}") from None
    unknown_metrics = [m.name for m in policy.metrics if m.name not in METRICS]
    if unknown_metrics:
        raise PolicyError(f"metrics: the simulate source has no metric {', '.join(map(repr, unknown_metrics))} "
                          f"(it generates {', '.join(METRICS)})")
    return SimulateSource(scenario, seed, deployed_at)
