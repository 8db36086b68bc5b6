"""The noisy-pair family (bench/noisy_pairs.py): its cases have the properties issue 23 asks for,
measured on the files it writes (what the judge and the peers read), not on its own variables."""

import hashlib
import json

import numpy as np
import pytest

from bench import cv, noisy_pairs
from gate.release import parse_time
from gate.sources.replay import load_case


@pytest.fixture(scope="module")
def family(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("noisy")
    metas = noisy_pairs.generate(corpus, out)
    return out, metas


def realized(path):
    """(points, paired SD over the baseline's level, relative difference of the means, factor) of a
    written case's canary window, the shift it says it injected divided out."""
    case = load_case(path)
    meta = json.loads((path / "case.json").read_text(encoding="utf-8"))
    name = case.metrics[0]["name"]
    canary, baseline = case.frames["canary"], case.frames["baseline"]
    window = baseline.between(case.deployed_at, case.end_at)
    assert np.array_equal(window.timestamps, canary.timestamps)  # every canary point has its baseline
    factor = meta["injected"].get("shift_factor", 1.0)
    x, y = window.values[name], canary.values[name] / factor
    level = x.mean()
    return len(x), np.std(y - x, ddof=1) / level, y.mean() / level - 1, factor


def test_every_case_has_15_to_25_points_a_paired_sd_of_40_to_70_percent_and_a_screened_clean_window(family):
    out, metas = family
    assert sum(m["expect"] == "pass" for m in metas) >= 50 and sum(m["expect"] == "fail" for m in metas) >= 50
    for meta in metas:
        points, sd, effect, factor = realized(out / meta["id"])
        tolerance = meta["metrics"][0]["tolerance"]
        assert noisy_pairs.POINTS[0] <= points <= noisy_pairs.POINTS[1], meta["id"]
        assert 0.40 <= sd <= 0.70, (meta["id"], sd)
        assert abs(effect) <= tolerance / 2 + 1e-6, (meta["id"], effect)  # clean: within half the tolerance
        if meta["expect"] == "fail":
            assert 2 * tolerance <= factor - 1 <= 4 * tolerance, meta["id"]
        else:
            assert factor == 1.0


def test_canary_and_baseline_come_from_two_different_real_series_with_history_before_the_deploy(family):
    out, metas = family
    for meta in metas:
        roles = meta["source"].split("; ", 1)[1]
        baseline, canary = (part.split(" ", 1)[1] for part in roles.split(", canary "))
        assert baseline.removeprefix("baseline ") != canary, meta["source"]
        case = load_case(out / meta["id"])
        history = case.frames["baseline"].between(0, case.deployed_at - 1)
        assert case.deployed_at - history.timestamps[0] >= noisy_pairs.MIN_HISTORY
        assert case.step == noisy_pairs.STEP
        assert parse_time(meta["end_at"]) == case.end_at


def test_bench_cv_folds_a_pair_of_series_together_whichever_is_the_canary(family):
    out, _ = family
    rows = cv.find_rows([out], folds=5)
    assert {r["family"] for r in rows} == {"noisy"}
    folds, sources = {}, {}
    for r in rows:
        folds.setdefault(r["group"], set()).add(r["fold"])
        sources.setdefault(r["group"], set()).add(json.loads((out / r["case"] / "case.json").read_text())["source"])
    assert all(len(f) == 1 for f in folds.values())
    assert all(len(s) <= 2 for s in sources.values())  # one pair of series, in either role
    assert sum(len(s) == 2 for s in sources.values()) >= len(sources) / 2  # mirrored pairs: one group


def test_the_same_dev_corpus_gives_the_same_bytes(family, corpus, tmp_path):
    out, metas = family
    again = noisy_pairs.generate(corpus, tmp_path / "again")

    def digest(root):
        return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())).hexdigest()

    assert again == metas and digest(tmp_path / "again") == digest(out)


def test_backtest_calibration_pairs_scores_the_noisy_family_apart_with_wilson_intervals(family, tmp_path):
    # Issue 27's done-when at a level above zero: `bench.backtest_calibration --pairs` given the
    # noisy folder scores its clean cases as a family of their own, each predicted from the other
    # clean windows of its pair of series. Before: the family was dropped (only canary-vs-baseline
    # and replicas were read), so the check ran at 0 only.
    import shutil

    from bench import backtest_calibration

    out, metas = family
    groups: dict[str, list[dict]] = {}
    for meta in metas:
        if meta["expect"] == "pass":
            groups.setdefault(cv.series_group(meta["source"]), []).append(meta)
    chosen = [m for g in sorted(groups)[:2] for m in groups[g]]
    corpus = tmp_path / "noisy"
    for meta in chosen:
        shutil.copytree(out / meta["id"], corpus / meta["id"])
    assert backtest_calibration.main([str(corpus), "--pairs", "--jobs", "1", "--out", str(tmp_path / "pairs.json")]) == 0
    report = json.loads((tmp_path / "pairs.json").read_text(encoding="utf-8"))
    noisy = report["summary"]["noisy"]
    assert noisy["series"] == 2 and noisy["false_alarms"]["cases"] == len(chosen)
    rows = {r["case"]: r for r in report["rows"]}
    for meta in chosen:  # each predicted from the others of its series, never from itself
        mine = [m for m in chosen if cv.series_group(m["source"]) == cv.series_group(meta["source"])]
        others = [rows[m["id"]]["outcome"] for m in mine if m is not meta]
        assert rows[meta["id"]]["predicted"] == pytest.approx(sum(o == "fail" for o in others) / len(others))
    fa = noisy["false_alarms"]
    lo, hi = fa["observed_wilson95"]
    assert lo <= fa["observed"] <= hi and "within_wilson" in fa
    undecided = noisy["undecided"]
    if undecided["observed_count"] == 0:  # none of 0: its own Wilson interval starts at exactly 0
        assert undecided["observed_wilson95"][0] == 0.0 and undecided["within_wilson"]


def test_a_noisy_case_is_backtested_split_by_host_over_its_two_series_whole_history(family, corpus):
    # `--noisy-split`: the two series rebuilt over the history before the deploy are the case's
    # own (its canary window reproduced to the written precision), and the backtest judges them
    # as two hosts, one against the other, never against the baseline's own history.
    from bench import backtest_calibration

    out, metas = family
    meta = next(m for m in metas if m["expect"] == "pass")
    case, hosts = backtest_calibration.noisy_hosts(str(out / meta["id"]), corpus)
    name = case.metrics[0]["name"]
    canary = case.frames["canary"].between(case.deployed_at, case.end_at)
    rebuilt = hosts["0-canary-series"]
    at = np.searchsorted(rebuilt.timestamps, canary.timestamps)
    assert rebuilt.values[name][at] == pytest.approx(canary.values[name], abs=1e-3)
    assert np.isfinite(rebuilt.values[name][: at[0]]).sum() > 2 * 144  # days of history before the deploy
    row = backtest_calibration.one_noisy((str(out / meta["id"]), 2, str(corpus)))
    assert row["mode"] == "split by host" and row["windows"] == 2, row
    assert row["actual"] in ("pass", "fail", "undecided")


def test_a_noisy_pair_is_held_out_in_time_its_earlier_windows_predicting_its_later_unscreened_ones(family, corpus):
    # `--noisy-holdout` (issue 27 item 2): every window against every later window, split by host;
    # the later windows the family's screen keeps are a subset of them, never more.
    from bench import backtest_calibration

    out, metas = family
    meta = next(m for m in metas if m["expect"] == "pass")
    row = backtest_calibration.one_noisy_holdout((str(out / meta["id"]), 2, str(corpus)))
    assert row["mode"] == "split by host", row
    assert len(row["early"]) == len(row["late"]) == 2
    assert len(row["late_screened"]) <= len(row["late"])
    assert set(row["early"] + row["late"]) <= {"pass", "fail", "undecided"}


def test_a_noisy_pair_is_planned_split_by_host_beside_one_groups_history(family, corpus):
    # `bench.plan_calibration --noisy-split`: the plan's answer split by host and from one group's
    # history, each scored against the case's own window with a 2x regression.
    from bench import plan_calibration

    out, metas = family
    meta = next(m for m in metas if m["expect"] == "pass")
    rows = plan_calibration.noisy_split_answers((str(out / meta["id"]), str(corpus)))
    assert rows and all("error" not in r for r in rows), rows
    for r in rows:
        assert r["mode"] == "split by host"
        assert r["answer"] in ("ok", "at the end", "too short") and r["one_group_answer"] in ("ok", "at the end", "too short")
        assert isinstance(r["caught"], bool)
