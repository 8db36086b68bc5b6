"""The replay source (recorded cases) and the replay stepping: it never sees past the step it judges."""

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import gate.analysis
from gate import judge as real_judge
from gate.analysis import replay_case
from gate.errors import CaseError, PolicyError
from gate.policy import Metric
from gate.sources import Query
from gate.sources.replay import ReplaySource, from_policy, load_case
from gate.verdict import parse_time

METRICS = (Metric(name="cpu", kind="gauge"), Metric(name="errors", kind="count", denominator="requests"),
           Metric(name="requests", kind="count", bad_direction="none"))
LABELS = ("expect", "culprits", "injected", "scenario", "source", "family")


def write_case(folder: Path, rows: list[str], step: int = 60, deploy: int = 6000, end: int = 6600, **meta) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    info = {"id": folder.name, "step_seconds": step, "deploy_at": str(deploy), "end_at": str(end),
            "metrics": [{"name": "cpu", "kind": "gauge", "tolerance": 0.1},
                        {"name": "errors", "kind": "count", "tolerance": 0.5, "denominator": "requests"},
                        {"name": "requests", "kind": "count", "bad_direction": "none", "tolerance": None}],
            **meta}
    (folder / "case.json").write_text(json.dumps(info))
    with gzip.open(folder / "series.csv.gz", "wt") as f:
        f.write("\n".join(["timestamp,scope,cpu,errors,requests", *rows]) + "\n")
    return folder


def copy_case(source: Path, target: Path, keep_until: int | None = None, blind: bool = False) -> Path:
    """A copy of a corpus case, optionally without its rows after `keep_until` or its labels."""
    target.mkdir(parents=True)
    meta = json.loads((source / "case.json").read_text())
    if blind:
        meta = {k: v for k, v in meta.items() if k not in LABELS}
        meta["id"] = "blind-case"
    (target / "case.json").write_text(json.dumps(meta))
    if keep_until is None:
        shutil.copy(source / "series.csv.gz", target / "series.csv.gz")
        return target
    with gzip.open(source / "series.csv.gz", "rt") as f:
        header, *rows = f.read().splitlines()
    kept = [r for r in rows if int(r.split(",", 1)[0]) <= keep_until]
    assert len(kept) < len(rows)
    with gzip.open(target / "series.csv.gz", "wt") as f:
        f.write("\n".join([header, *kept]) + "\n")
    return target


# -- the source -----------------------------------------------------------------------------------

def test_a_case_is_laid_on_its_grid_with_missing_points_as_nan(tmp_path):
    rows = ["5880,baseline,10,1,100", "5940,baseline,11,0,90", "6000,baseline,12,2,95", "6060,baseline,13,,99",
            "6000,canary,20,0,50", "6120,canary,22,3,"]
    case = load_case(write_case(tmp_path / "c", rows))
    assert (case.step, case.deployed_at, case.end_at) == (60, 6000, 6600)
    source = ReplaySource(case)
    seen = source.fetch(Query(METRICS, "canary", "baseline", 5900, 6200, 60))
    # Up to the moment read, as a metrics API answers: rows the recording lacks are missing points.
    assert list(seen.baseline.timestamps) == [5940, 6000, 6060, 6120, 6180]
    np.testing.assert_array_equal(seen.baseline.values["errors"], [0, 2, np.nan, np.nan, np.nan])  # a zero is not missing
    assert list(seen.canary.timestamps) == [6000, 6060, 6120, 6180]
    np.testing.assert_array_equal(seen.canary.values["cpu"], [20, np.nan, 22, np.nan])
    np.testing.assert_array_equal(seen.canary.values["requests"], [50, np.nan, np.nan, np.nan])


def test_visible_until_hides_the_future_whatever_is_asked(tmp_path):
    rows = [f"{t},{s},1,0,10" for t in range(5400, 6601, 60) for s in ("baseline", "canary")]
    source = ReplaySource(load_case(write_case(tmp_path / "c", rows)))
    source.visible_until = 6120
    seen = source.fetch(Query(METRICS, "canary", "baseline", 6000, 6600, 60))
    assert seen.canary.timestamps.max() == 6120 and seen.baseline.timestamps.max() == 6120


def test_history_only_case_has_no_baseline_and_its_policy_says_so(tmp_path):
    rows = [f"{t},canary,1,0,10" for t in range(0, 6601, 60)]
    case = load_case(write_case(tmp_path / "c", rows))
    policy = case.policy()
    assert policy.history_only and policy.baseline is None
    seen = ReplaySource(case).fetch(Query(METRICS, "canary", None, 0, 6600, 60))
    assert seen.baseline is None and len(seen.canary) == 111


def test_the_policy_of_a_case_is_built_from_case_json(corpus):
    case = load_case(corpus / "k1m-aa-000")
    policy = case.policy()
    assert policy.source.type == "replay" and policy.interval == case.step
    assert policy.lifetime == case.end_at - case.deployed_at
    assert [m.name for m in policy.metrics] == [m["name"] for m in case.metrics]
    assert policy.metric("errors").denominator == "requests"
    assert not policy.metric("requests").judged
    baseline = case.frames["baseline"]
    assert baseline.timestamps.min() < case.deployed_at - 5 * 86400  # days of history
    assert baseline.timestamps.max() == case.end_at
    assert case.frames["canary"].timestamps.min() == case.deployed_at


def test_labels_are_never_needed(corpus, tmp_path):
    blind = load_case(copy_case(corpus / "k1m-canary-down-012", tmp_path / "x", blind=True))
    full = load_case(corpus / "k1m-canary-down-012")
    assert blind.id == "blind-case"
    assert blind.policy().metrics == full.policy().metrics


def test_from_policy_needs_the_case_folder(corpus):
    policy = load_case(corpus / "k1m-aa-000").policy()
    assert isinstance(from_policy(policy), ReplaySource)
    no_case = policy.model_copy(update={"source": policy.source.model_copy(update={"options": {}})})
    with pytest.raises(PolicyError, match="source.options.case"):
        from_policy(no_case)


def test_a_policy_on_another_step_is_refused(tmp_path):
    source = ReplaySource(load_case(write_case(tmp_path / "c", ["6000,canary,1,0,10"])))
    with pytest.raises(PolicyError, match="every 60s, the policy asks 300s"):
        source.fetch(Query(METRICS, "canary", None, 6000, 6600, 300))


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: None, "case folder not found"),
        (lambda d: d.mkdir(), "no case.json"),
        (lambda d: (d.mkdir(), (d / "case.json").write_text("{not json")), "not valid JSON"),
        (lambda d: (d.mkdir(), (d / "case.json").write_text('{"step_seconds": 60}')), "missing or invalid field"),
        (lambda d: (d.mkdir(), (d / "case.json").write_text('{"step_seconds": 1e400}')), "missing or invalid field"),
        (lambda d: write_case(d, [], deploy=6000, end=5000), "end_at after deploy_at"),
        (lambda d: (write_case(d, []), (d / "series.csv.gz").unlink()), "no series.csv.gz"),
        (lambda d: (write_case(d, []), (d / "series.csv.gz").write_bytes(b"not gzip")), "unreadable"),
        (lambda d: write_case(d, ["6000,staging,1,0,10"]), "line 2: unknown scope 'staging'"),
        (lambda d: write_case(d, ["6000,canary,1,zero,10"]), "line 2"),
    ],
)
def test_malformed_cases_are_named(tmp_path, setup, message):
    folder = tmp_path / "case"
    setup(folder)
    with pytest.raises(CaseError, match=message):
        load_case(folder)


def test_a_metric_without_a_column_is_named(tmp_path):
    folder = write_case(tmp_path / "c", [])
    with gzip.open(folder / "series.csv.gz", "wt") as f:
        f.write("timestamp,scope,cpu\n6000,canary,1\n")
    with pytest.raises(CaseError, match="no column for metric.*errors"):
        load_case(folder)


@pytest.mark.parametrize("rows, line, scope", [
    (["6000,canary,20,50,1000", "6000,canary,20,0,1000"], 3, "canary"),  # the same minute twice
    (["6000,baseline,10,5,1000", "6060,baseline,10,5,1000", "6000,canary,20,5,900", "6000,baseline,11,0,1000"],
     5, "baseline"),  # apart in the file
    (["6000,canary,20,,", "6000,canary,,3,900"], 3, "canary"),  # even cells that would not collide
    (["6000,canary,20,5,900", "6000,canary,20,5,900", "6000,canary,20,0,900"], 4, "canary"),
])
def test_a_row_repeating_a_timestamp_and_scope_is_refused_naming_the_file_the_lines_and_the_scope(
        tmp_path, rows, line, scope):
    """Review (sources): a repeated row silently kept the last one (a canary minute of 50 errors
    read as 0). Which is the recording is not the gate's to choose."""
    folder = write_case(tmp_path / "c", rows)
    with pytest.raises(CaseError) as e:
        load_case(folder)
    message = str(e.value)
    assert message.startswith(f"{folder / 'series.csv.gz'}: line {line}: timestamp 6000 of scope {scope!r}"), message
    assert "already recorded on line" in message and "with other values" in message
    assert "one row per timestamp and scope" in message


def test_a_row_written_twice_is_read_once(tmp_path):
    """The same row twice leaves nothing to choose (test_reliability_data: duplicated and
    shuffled rows keep their verdicts)."""
    case = load_case(write_case(tmp_path / "c", ["6000,canary,20,5,900", "6060,canary,21,1,800",
                                                 "6000,canary,20,5,900"]))
    assert case.frames["canary"].values["errors"].tolist() == [5.0, 1.0]
    assert case.frames["canary"].values["requests"].tolist() == [900.0, 800.0]


def test_the_same_moment_in_both_scopes_is_not_a_repeat(tmp_path):
    case = load_case(write_case(tmp_path / "c", ["6000,baseline,10,1,100", "6000,canary,20,2,50"]))
    assert case.frames["canary"].values["errors"].tolist() == [2.0]
    assert case.frames["baseline"].values["errors"].tolist() == [1.0]


def test_points_of_one_step_add_up_for_a_count_and_average_for_a_level(tmp_path):
    """Review (sources): two half-minute points of a count in one minute were averaged (30 + 30
    errors read as 30, the canary's rate halved); they are the minute's events."""
    rows = ["6000,canary,20,50,1000", "6060,canary,20,30,500", "6090,canary,40,30,500",
            "6000,baseline,10,5,1000", "6060,baseline,10,5,1000"]
    case = load_case(write_case(tmp_path / "c", rows))
    canary = case.frames["canary"]
    assert canary.timestamps.tolist() == [6000, 6060]
    assert canary.values["errors"].tolist() == [50.0, 60.0]
    assert canary.values["requests"].tolist() == [1000.0, 1000.0]
    assert canary.values["cpu"].tolist() == [20.0, 30.0]  # a level: the mean of the minute's points
    seen = ReplaySource(case).fetch(Query(METRICS, "canary", "baseline", 6000, 6060, 60))
    assert seen.canary.values["errors"].tolist() == [50.0, 60.0]


# -- the stepping ---------------------------------------------------------------------------------

class Spy:
    """Wraps the judge and the replay source; records what each evaluation could see."""

    def __init__(self, monkeypatch):
        self.verdicts: dict[int, dict] = {}
        self.queries: list[tuple[int, int | None]] = []  # (query end, clock of the replay)
        self.latest_seen: list[tuple[int, int]] = []  # (moment judged, latest row it was given)
        spy = self

        class SpiedSource(ReplaySource):
            def fetch(self, query):
                spy.queries.append((query.end, self.visible_until))
                return super().fetch(query)

        monkeypatch.setattr(gate.analysis, "ReplaySource", SpiedSource)

    @staticmethod
    def _latest(observations) -> int:
        frames = [f for f in (observations.canary, observations.baseline) if f is not None and len(f)]
        return max((int(f.timestamps.max()) for f in frames), default=-1)

    def learn(self, policy, history, deployed_at):
        assert self._latest(history) < deployed_at
        return real_judge.learn(policy, history, deployed_at)

    def evaluate(self, policy, reference, window, deployed_at, now):
        self.latest_seen.append((now, self._latest(window)))
        verdict = real_judge.evaluate(policy, reference, window, deployed_at, now)
        self.verdicts[now] = verdict.to_dict()
        return verdict


def test_replay_never_asks_for_or_sees_data_after_the_step_it_judges(corpus, monkeypatch):
    spy = Spy(monkeypatch)
    case = load_case(corpus / "k1m-cpu-shift-008")
    result = replay_case(corpus / "k1m-cpu-shift-008", judge=spy)
    assert result.evaluations == len(spy.latest_seen) >= 2
    moments = [now for now, _ in spy.latest_seen]
    assert moments == list(range(case.deployed_at + case.step, moments[-1] + 1, case.step))  # every step, in order
    for now, latest in spy.latest_seen:
        assert latest == now  # the step's own row is seen, nothing later
    history_query, *window_queries = spy.queries
    assert history_query[0] < case.deployed_at
    for end, clock in window_queries:
        assert clock is not None and end <= clock  # asked only up to the replay clock
    assert [end for end, _ in window_queries] == moments


def test_the_verdict_at_a_step_does_not_change_when_the_later_data_is_deleted(corpus, tmp_path, monkeypatch):
    source = corpus / "k1m-cpu-shift-008"
    case = load_case(source)
    cut = case.deployed_at + 20 * case.step
    truncated = copy_case(source, tmp_path / "truncated", keep_until=cut)

    full_spy, cut_spy = Spy(monkeypatch), Spy(monkeypatch)
    replay_case(source, judge=full_spy)
    replay_case(truncated, judge=cut_spy)
    shared = [t for t in full_spy.verdicts if t <= cut]
    assert len(shared) >= 10
    for t in shared:
        assert cut_spy.verdicts[t] == full_spy.verdicts[t], f"the verdict at {t} depends on later data"
    assert all(cut_spy.verdicts[t]["evaluated_at"] for t in shared)
    assert parse_time(full_spy.verdicts[shared[-1]]["evaluated_at"]) == shared[-1]
