import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("GATE_CORPUS", ROOT.parent / "shared" / "corpus" / "dev"))


@pytest.fixture(autouse=True)
def reports_in_tmp(tmp_path_factory, monkeypatch):
    """A report a test writes goes to a temporary folder, never into the working tree's reports/
    (subprocesses inherit it; a test about the default folder sets GATE_REPORT_DIR="")."""
    monkeypatch.setenv("GATE_REPORT_DIR", str(tmp_path_factory.mktemp("reports")))


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The recorded cases (../shared/corpus/dev, or GATE_CORPUS). Absent, the tests that replay them
    skip, unless GATE_REQUIRE_CORPUS=1 (CI): then they fail, so that a run without the corpus
    cannot go green."""
    if not CORPUS.is_dir():
        where = (f"corpus not found at {CORPUS}: expected ../shared/corpus/dev next to the repository "
                 "(set GATE_CORPUS to its path)")
        if os.environ.get("GATE_REQUIRE_CORPUS") == "1":
            pytest.fail(f"{where}; GATE_REQUIRE_CORPUS=1, so the replay tests may not skip", pytrace=False)
        pytest.skip(where)
    return CORPUS


def run_gate(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 300):
    """Run the real `gate` console script in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    gate = Path(sys.executable).parent / "gate"
    return subprocess.run([str(gate), *map(str, args)], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=timeout)
