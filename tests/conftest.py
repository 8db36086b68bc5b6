import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("GATE_CORPUS", ROOT.parent / "shared" / "corpus" / "dev"))
SLOW_START = pytest.StashKey[tuple[str, str]]()  # the first slow test, and the header shown before it


# The slow groups (the Lambda zip build, Groovy, a real browser) take most of the suite's
# minutes: they run last, under a header, so that a slow machine shows where the time goes.
def pytest_configure(config):
    config.addinivalue_line("markers", "slow(group): part of a slow group, run last under its own header")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.get_closest_marker("slow") is not None)  # stable: the rest keep their order
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        groups = ", ".join(dict.fromkeys(item.get_closest_marker("slow").args[0] for item in slow))
        header = f"{len(slow)} slow test{'s' if len(slow) > 1 else ''} last ({groups}): several minutes"
        config.stash[SLOW_START] = (slow[0].nodeid, header)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    first, header = item.config.stash.get(SLOW_START, ("", ""))
    reporter = item.config.pluginmanager.get_plugin("terminalreporter")
    if item.nodeid == first and reporter is not None:
        reporter.ensure_newline()
        reporter.write_sep("=", header, bold=True)


@pytest.fixture(autouse=True)
def reports_in_tmp(tmp_path, monkeypatch):
    """A report a test writes goes to its tmp_path/reports, never into the working tree's reports/
    (subprocesses inherit it; a test about the default folder sets GATE_REPORT_DIR="")."""
    monkeypatch.setenv("GATE_REPORT_DIR", str(tmp_path / "reports"))


@pytest.fixture(autouse=True)
def request_budget_in_tmp(tmp_path, monkeypatch):
    """The organisation's request budget a test's Datadog answers fill (gate.request_budget) is the
    test's own: a 429 of one test never holds back the next one's requests."""
    monkeypatch.setenv("GATE_BUDGET_DIR", str(tmp_path / "budget"))


@pytest.fixture(autouse=True)
def reference_cache_in_tmp(tmp_path, monkeypatch):
    """The references a test's judge learns (gate.cache) go to its tmp_path/cache, never into the
    working tree's .gate/cache (nor the Lambda's /tmp/gate-cache): a reference another test, or an
    earlier run, learned is never read instead of a fetch (subprocesses inherit it; a test about
    the default folder sets GATE_CACHE_DIR="")."""
    monkeypatch.setenv("GATE_CACHE_DIR", str(tmp_path / "cache"))


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


@pytest.fixture
def env_keys(monkeypatch):
    """The fake Datadog's keys in the environment, and no site or store table of the machine's."""
    from tests.fake_datadog import API_KEY, APP_KEY

    monkeypatch.setenv("DD_API_KEY", API_KEY)
    monkeypatch.setenv("DD_APP_KEY", APP_KEY)
    monkeypatch.delenv("DD_SITE", raising=False)
    monkeypatch.delenv("GATE_STORE_TABLE", raising=False)
    return monkeypatch
