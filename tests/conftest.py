import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("GATE_CORPUS", ROOT.parent / "shared" / "corpus" / "dev"))


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"corpus not found at {CORPUS} (set GATE_CORPUS)")
    return CORPUS


def run_gate(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 300):
    """Run the real `gate` console script in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    gate = Path(sys.executable).parent / "gate"
    return subprocess.run([str(gate), *map(str, args)], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=timeout)
