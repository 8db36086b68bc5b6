"""Messy data has a defined outcome, never a crash and never a wrongful pass.

Datadog answers are mangled on the wire (a FakeDatadog subclass) and read by the real source and
the real judge in-process; recorded cases are mangled in their CSV and replayed. For each mangling
an A/A canary (clean: passes) and a dead canary (clean: fails) are judged:

* NaN points, duplicated timestamps, out-of-order timestamps: the same verdicts as clean data.
* counters that reset (negative per-step counts): the negative points are missing (series.py
  `Observations.cleaned`), never "fewer than zero events"; the same verdicts.
* clock skew between groups (canary 30 s late, replay): points land in the bucket they fall in
  (Frame.on_grid), one grid for both groups; the same verdicts.
* a canary group with zero instances (no canary series at all): fail (the canary is down).
* no history in either group (no series before the deploy): the dead canary fails; the A/A
  canary is never passed on a reference learned from nothing (a new baseline group's history is
  its canary group's: tests/test_history_fallback.py).
* a history-only policy (no baseline) without history: never a pass.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
import shutil
import time
from pathlib import Path

import pytest
import yaml

from gate.analysis import Analysis, replay_case
from gate.policy import parse_policy
from gate.series import Frame, Observations
from gate.sources.datadog import from_policy
from tests.fake_datadog import API_KEY, APP_KEY, FakeDatadog
from tests.test_reliability_faults import AA, DOWN, ROOT, live


class MangledDatadog(FakeDatadog):
    """Answers as the fake does, then passes the answer through `mangle(attributes, history,
    names)`: `history` is True for the request reading the history before the deploy, `names`
    the query names by index (c<i> canary, b<i> baseline, i the metric's index in the policy)."""

    mangle = None

    def timeseries(self, request: dict) -> dict:
        answer = super().timeseries(request)
        if self.mangle is not None:
            attributes = request["data"]["attributes"]
            self.mangle(answer["data"]["attributes"], attributes["to"] <= self.deployed_at * 1000,
                        [q["name"] for q in attributes["queries"]])
        return answer


def every_third_nan(a, history, names):
    for column in a["values"]:
        for i in range(0, len(column), 3):
            column[i] = float("nan")  # json.dumps writes NaN: Python's JSON reads it back


def duplicated(a, history, names):
    a["times"] = [t for t in a["times"] for _ in (0, 1)]
    a["values"] = [[v for v in column for _ in (0, 1)] for column in a["values"]]


def reversed_order(a, history, names):
    a["times"] = a["times"][::-1]
    a["values"] = [column[::-1] for column in a["values"]]


def counter_resets(a, history, names):
    # errors (2nd-last metric, index 3) and requests (index 4) of the canary go negative now and then
    for s, column in zip(a["series"], a["values"]):
        if names[s["query_index"]] in ("c3", "c4"):
            for i in range(0, len(column), 5):
                if column[i] is not None:
                    column[i] = -column[i] - 100.0


def no_canary(a, history, names):
    keep = [i for i, s in enumerate(a["series"]) if names[s["query_index"]].startswith("b")]
    a["series"] = [a["series"][i] for i in keep]
    a["values"] = [a["values"][i] for i in keep]


def no_history(a, history, names):
    if history:
        a["series"], a["values"], a["times"] = [], [], []


def policy(**changes):
    data = yaml.safe_load((ROOT / "examples" / "datadog.yaml").read_text())
    data["history"] = "1d"
    data["source"]["options"] = {"timeout": 2, "retry_budget": 3}
    return parse_policy({**data, **changes})


def judge_live(corpus, case: str, mangle, **changes) -> str:
    ahead = 0 if case == AA else 120
    with live(corpus, case, ahead=ahead, fake_class=MangledDatadog) as fake:
        fake.mangle = mangle
        saved = {k: os.environ.get(k) for k in ("GATE_DATADOG_URL", "DD_API_KEY", "DD_APP_KEY")}
        os.environ.update(GATE_DATADOG_URL=fake.url, DD_API_KEY=API_KEY, DD_APP_KEY=APP_KEY)
        try:
            chosen = policy(**changes)
            analysis = Analysis(chosen, from_policy(chosen), "web-9", fake.deployed_at)
            return analysis.evaluate(int(time.time())).verdict
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


@pytest.mark.parametrize("mangle", [None, every_third_nan, duplicated, reversed_order, counter_resets],
                         ids=lambda m: getattr(m, "__name__", "clean"))
def test_messy_datadog_answers_keep_their_verdicts(corpus, mangle):
    assert judge_live(corpus, AA, mangle) == "pass"
    assert judge_live(corpus, DOWN, mangle) == "fail"


def test_a_canary_with_zero_instances_fails(corpus):
    assert judge_live(corpus, AA, no_canary) == "fail"


def test_without_any_history_a_clean_canary_is_never_passed_and_a_dead_one_fails(corpus):
    """Review: judged against the concurrent baseline alone, a reference learned from nothing
    passed the A/A canary."""
    assert judge_live(corpus, AA, no_history) != "pass"
    assert judge_live(corpus, DOWN, no_history) == "fail"


def test_history_only_without_any_history_is_never_a_pass(corpus):
    verdict = judge_live(corpus, AA, no_history, baseline=None)
    assert verdict != "pass"


# -- the grid and the cleaning, directly ------------------------------------------------------


def test_points_off_the_grid_land_in_their_bucket_and_a_level_s_average_a_count_s_add_up():
    points = {30: 1.0, 90: 2.0, 100: 4.0, 150: float("nan"), 999: 7.0}
    frame = Frame.on_grid(60, 0, 180, {"cpu": points, "errors": points}, summed={"errors"})
    assert list(frame.timestamps) == [0, 60, 120, 180]
    assert frame.values["cpu"][:2].tolist() == [1.0, 3.0]
    assert frame.values["errors"][:2].tolist() == [1.0, 6.0]  # events of one bucket: their sum, never their mean
    for name in ("cpu", "errors"):
        assert all(math.isnan(v) for v in frame.values[name][2:])


def test_cleaning_drops_negative_counts_and_infinities_only():
    frame = Frame(60, __import__("numpy").array([0, 60, 120]),
                  {"errors": __import__("numpy").array([3.0, -5.0, float("inf")]),
                   "delta": __import__("numpy").array([-1.0, 2.0, float("-inf")])})
    cleaned = Observations(frame, None).cleaned({"errors"}).canary
    assert cleaned.values["errors"][0] == 3.0 and math.isnan(cleaned.values["errors"][1])
    assert math.isnan(cleaned.values["errors"][2])
    assert cleaned.values["delta"][:2].tolist() == [-1.0, 2.0] and math.isnan(cleaned.values["delta"][2])


# -- recorded cases with skewed, duplicated and shuffled rows ---------------------------------


def rewrite_case(source: Path, target: Path, change) -> Path:
    shutil.copytree(source, target)
    with gzip.open(source / "series.csv.gz", "rt", newline="") as f:
        header, *rows = list(csv.reader(f))
    rows = change(rows)
    buffer = io.StringIO()
    csv.writer(buffer).writerows([header, *rows])
    with gzip.open(target / "series.csv.gz", "wt", newline="") as f:
        f.write(buffer.getvalue())
    return target


def canary_late_30s(rows):
    return [[str(int(r[0]) + 30), *r[1:]] if r[1] == "canary" else r for r in rows]


def duplicated_shuffled(rows):
    import random

    rows = rows + rows[::7]
    random.Random(3).shuffle(rows)
    return rows


@pytest.mark.parametrize("change", [canary_late_30s, duplicated_shuffled], ids=lambda c: c.__name__)
def test_replayed_cases_with_skewed_or_shuffled_rows_keep_their_verdicts(corpus, tmp_path, change):
    for name, expected in (("k1m-aa-offset-002", "pass"), ("k1m-canary-down-012", "fail")):
        clean = replay_case(corpus / name).verdict
        mangled = replay_case(rewrite_case(corpus / name, tmp_path / name, change)).verdict
        assert clean.verdict == expected
        assert mangled.verdict == expected, mangled.reason


def test_a_count_with_points_at_fewer_of_a_buckets_moments_than_the_others_is_missing_there():
    """Review: a case recorded at 30 s with a step of 60, the canary's second half-minute errors
    cell empty: the minute's errors were the first half's alone beside the whole minute's
    requests (half the rate), and a doubled error rate passed. A partial sum is missing."""
    errors = {0: 10.0, 30: float("nan"), 60: 4.0, 90: 6.0}
    requests = {0: 500.0, 30: 500.0, 60: 500.0, 90: 500.0}
    frame = Frame.on_grid(60, 0, 60, {"errors": errors, "requests": requests}, summed={"errors", "requests"})
    assert math.isnan(frame.values["errors"][0])  # before: 10 of the minute's 1000 requests
    assert frame.values["errors"][1] == 10.0 and frame.values["requests"].tolist() == [1000.0, 1000.0]
