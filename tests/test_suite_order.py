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
