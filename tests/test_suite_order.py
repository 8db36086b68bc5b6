"""The suite's own order: the slow groups run last, under a header (tests/conftest.py)."""

from tests.conftest import ROOT

pytest_plugins = ["pytester"]


def test_the_slow_groups_run_last_under_a_header(pytester):
    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text())
    pytester.makepyfile(
        test_a="import pytest\n\n@pytest.mark.slow('Groovy')\ndef test_slow(): pass\n\ndef test_quick_a(): pass\n",
        test_b="def test_quick_b(): pass\n",
    )
    result = pytester.runpytest("-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    lines = result.outlines
    order = [name for line in lines for name in ("test_quick_a", "test_quick_b", "test_slow") if f"::{name} " in line]
    assert order == ["test_quick_a", "test_quick_b", "test_slow"], lines
    header = next(i for i, line in enumerate(lines) if "1 slow test last (Groovy)" in line)
    assert header < next(i for i, line in enumerate(lines) if "::test_slow " in line)


def test_the_tests_that_build_a_virtualenv_run_under_the_slow_header():
    """The checkov test builds a virtualenv of its own on first use (146 s without a word): it
    belongs to the slow groups, announced by the header, not among the quick tests."""
    from tests import test_infra

    marks = getattr(test_infra.test_checkov_finds_no_unjustified_failure, "pytestmark", [])
    assert any(m.name == "slow" for m in marks), marks


def test_the_test_command_says_what_it_installs_before_it_installs_it(tmp_path):
    """scripts/test.sh in a sandbox: pip, dpkg, apt-get and id are stand-ins that log their call,
    so the order of what it says and what it does can be read from one stream."""
    import os
    import shutil
    import subprocess

    repo, tools = tmp_path / "repo", tmp_path / "bin"
    (repo / "scripts").mkdir(parents=True)
    (repo / ".venv" / "bin").mkdir(parents=True)
    tools.mkdir()
    shutil.copy(ROOT / "scripts" / "test.sh", repo / "scripts" / "test.sh")
    (repo / "scripts" / "apt-packages.txt").write_text("# what the tests drive\nchromium\n")
    stand_ins = {repo / ".venv" / "bin" / "python": 'echo "RAN python $*"', tools / "apt-get": 'echo "RAN apt-get $*"',
                 tools / "dpkg": "exit 1", tools / "id": "echo 0"}
    for path, body in stand_ins.items():
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    run = subprocess.run(["bash", str(repo / "scripts" / "test.sh"), "-x"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=60,
                         env={**os.environ, "PATH": f"{tools}:/usr/bin:/bin"})
    lines = run.stdout.splitlines()
    assert run.returncode == 0, run.stdout

    def first(text: str) -> int:
        return next(i for i, line in enumerate(lines) if text in line)

    assert first("installing the system packages the tests drive: chromium") < first("RAN apt-get")
    assert first("installing the gate and its test tooling") < first("RAN python -m pip")
    assert first("running the tests") < first("RAN python -m pytest -q -x")
