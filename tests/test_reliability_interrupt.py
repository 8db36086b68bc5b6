"""Nothing lost: a `gate check` killed (SIGKILL) in the middle of an evaluation leaves the SQLite
store consistent and the next evaluation carries on; concurrent evaluations of different
releases, in threads and in processes, never mix their results."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gate.analysis import Analysis
from gate.sources.replay import ReplaySource, load_case
from gate.store import SqliteStore
from tests.test_reliability_faults import DOWN, RELEASE, check, datadog_env, datadog_policy, live


def integrity(path: Path) -> str:
    with sqlite3.connect(path) as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]


def rows(path: Path, release: str) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT verdict, final, reason, payload FROM evaluations WHERE release = ?",
                          (release,)).fetchall()


def test_a_check_killed_mid_evaluation_leaves_the_store_consistent_and_the_next_one_continues(corpus, tmp_path):
    store = tmp_path / "gate.sqlite"
    with live(corpus, DOWN) as fake:
        fake.faults, fake.slow_seconds = ["slow"], 20  # the first request hangs: the process is mid-fetch
        gate = Path(sys.executable).parent / "gate"
        process = subprocess.Popen(
            [str(gate), "check", RELEASE, "--policy", str(datadog_policy(tmp_path, timeout=30, retry_budget=60)),
             "--deployed-at", str(fake.deployed_at), "--store", str(store), "--json"],
            env={**os.environ, **datadog_env(fake)}, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while not fake.timeseries_requests() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fake.timeseries_requests(), "the gate never asked Datadog"
        os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=10)
        assert process.returncode == -signal.SIGKILL
        # Killed: the release is registered, no half evaluation is recorded.
        assert integrity(store) == "ok"
        assert rows(store, RELEASE) == []
        with sqlite3.connect(store) as db:
            [(deployed_at,)] = db.execute("SELECT deployed_at FROM releases WHERE release = ?", (RELEASE,))
        assert deployed_at == fake.deployed_at
        again = check(fake, tmp_path, store=store)  # the next evaluation carries on
    assert again.returncode == 1, again.stderr
    assert json.loads(again.stdout)["verdict"] == "fail"
    [(verdict, final, reason, payload)] = rows(store, RELEASE)
    assert verdict == "fail" and json.loads(payload)["release"] == RELEASE
    assert integrity(store) == "ok"


def _replay(corpus: Path, name: str, release: str, store_path: Path) -> tuple[str, str]:
    case = load_case(corpus / name)
    policy = case.policy().model_copy(update={"lifetime": case.end_at - case.deployed_at})
    source = ReplaySource(case)
    analysis = Analysis(policy, source, release, case.deployed_at, canary="canary", baseline="baseline",
                        store=SqliteStore(store_path))

    def advance(t: int) -> None:
        source.visible_until = t

    verdict, _ = analysis.run(wait=advance)
    return release, verdict.verdict


CASES = {"k1m-aa-039": "pass", "k1m-canary-down-012": "fail", "k1m-aa-offset-002": "pass"}


def test_concurrent_releases_in_threads_and_processes_never_mix(corpus, tmp_path):
    store = tmp_path / "gate.sqlite"
    jobs = [(name, f"{name}-t{i}") for i in range(2) for name in CASES]
    with ThreadPoolExecutor(max_workers=6) as pool:
        threads = list(pool.map(lambda job: _replay(corpus, job[0], job[1], store), jobs))
    # ... and other processes writing into the same file meanwhile
    code = ("import sys; from pathlib import Path; from tests.test_reliability_interrupt import _replay; "
            "print(*_replay(Path(sys.argv[1]), sys.argv[2], sys.argv[3], Path(sys.argv[4])))")
    root = Path(__file__).resolve().parents[1]
    processes = [subprocess.Popen([sys.executable, "-c", code, str(corpus), name, f"{name}-p", str(store)],
                                  cwd=root, stdout=subprocess.PIPE, text=True) for name in CASES]
    outputs = [p.communicate(timeout=300)[0].split() for p in processes]
    assert all(p.returncode == 0 for p in processes)
    results = dict(threads) | {release: verdict for release, verdict in outputs}
    assert len(results) == 9
    for release, verdict in results.items():
        expected = CASES[release.rsplit("-", 1)[0]]
        assert verdict == expected, release
        recorded = rows(store, release)
        assert recorded and all(json.loads(p)["release"] == release for *_, p in recorded)
        assert recorded[-1][0] == expected  # the last record is this release's own verdict
    assert integrity(store) == "ok"
