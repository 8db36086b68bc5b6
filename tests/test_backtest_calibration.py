"""`gate backtest` judges a window as the live gate would judge a canary deployed at the end of the
history: here, against a reference of the same kind as the live canary's (issue 27, item 2)."""

import gzip
import json

import numpy as np
import yaml

from gate.stats.seasonal import DAY, MIN_DAYS, same_kind_from
from gate.release import iso, parse_time
from tests.conftest import run_gate

UNTIL = "2024-05-10T00:00:00Z"


def history_only_policy(**changes) -> dict:
    return {"name": "own-history", "source": {"type": "simulate", "options": {"scenario": "healthy", "seed": 3}},
            "canary": {"scope": "canary"}, "interval": "1m", "lifetime": "30m", "history": "7d",
            "metrics": [{"name": "cpu", "kind": "gauge", "tolerance": None}], **changes}


def window_starts(tmp_path, policy: dict, *args: str) -> tuple[dict, list[int]]:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    result = run_gate("backtest", "--policy", path, "--no-recommend", "--jobs", "1", "--json", *args)
    assert result.returncode in (0, 3), result.stderr
    report = json.loads(result.stdout)
    return report, [parse_time(t) for t in report["window_starts"]]


def test_the_seasonal_model_kinds_are_named_by_the_history_they_need():
    assert same_kind_from(1.9 * DAY) == 0
    assert same_kind_from(3 * DAY) == MIN_DAYS * DAY
    assert same_kind_from(20 * DAY) == 14 * DAY


def test_a_short_history_still_gives_every_window_a_daily_shape_as_the_live_canary_has(tmp_path):
    # 3 days read, a policy history of 7d: the live canary learns 3 days (a daily shape). Each
    # window learned from half of them (1.5 days: level and spread only, the whole day's swing as
    # its noise: another judge than the live canary's); now from at least MIN_DAYS.
    report, starts = window_starts(tmp_path, history_only_policy(), "--days", "3", "--windows", "4",
                                   "--until", UNTIL)
    begins = parse_time(report["history"]["start"])
    assert len(starts) == 4
    assert min(starts) - begins >= MIN_DAYS * DAY
    assert max(starts) + 30 * 60 <= parse_time(UNTIL)  # each window's lifetime within the history


def test_a_long_history_keeps_the_policys_learning_stretch(tmp_path):
    report, starts = window_starts(tmp_path, history_only_policy(), "--days", "14", "--windows", "4",
                                   "--until", UNTIL)
    assert min(starts) - parse_time(report["history"]["start"]) == 7 * DAY


def recorded_history(folder, start: int, days: float, deploy: int) -> None:
    """A history-only case: a KPI with a daily cycle from `start`, deployed at `deploy`."""
    folder.mkdir()
    (folder / "case.json").write_text(json.dumps({
        "id": "short-history", "step_seconds": 60, "deploy_at": iso(deploy), "end_at": iso(deploy + 3600),
        "metrics": [{"name": "kpi", "kind": "gauge", "bad_direction": "either", "tolerance": None}]}))
    t = start + 60 * np.arange(int(days * DAY / 60) + 60)
    x = 100 + 30 * np.sin(2 * np.pi * t / DAY) + np.random.default_rng(1).normal(0, 1, len(t))
    with gzip.open(folder / "series.csv.gz", "wt") as f:
        f.write("timestamp,scope,kpi\n" + "".join(f"{a},canary,{b:.3f}\n" for a, b in zip(t, x)))


def test_windows_learn_from_where_the_history_really_starts_not_from_where_it_was_asked(tmp_path):
    # 3 days recorded, 5 asked: the source answers from its first point; half of what was asked
    # (2.5 days from the asked start) is half a day of real history.
    deploy = parse_time("2024-05-09T12:00:00Z")
    first = deploy - 3 * DAY
    recorded_history(tmp_path / "case", first, 3, deploy)
    policy = {"name": "recorded", "source": {"type": "replay", "options": {"case": str(tmp_path / "case")}},
              "canary": {"scope": "canary"}, "interval": "1m", "lifetime": "1h", "history": "14d",
              "metrics": [{"name": "kpi", "kind": "gauge", "bad_direction": "either", "tolerance": None}]}
    report, starts = window_starts(tmp_path, policy, "--days", "5", "--windows", "3")
    assert report["mode"] == "history-only"
    assert min(starts) - first >= MIN_DAYS * DAY
    assert max(starts) + 3600 < deploy
