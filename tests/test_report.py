"""The HTML report: rendered by a real headless Chromium, rebuilt from the store, published."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from gate.analysis import replayed
from gate.errors import ReportError
from gate.policy import parse_policy
from gate.release import file_name as safe_name
from gate.report import rebuild, write_report
from gate.report.page import render_report
from gate.report.publish import publish
from gate.report.snapshot import from_snapshot, snapshot
from gate.series import Frame, Observations
from gate.store import SqliteStore
from gate.verdict import MetricResult, Verdict
from tests.conftest import run_gate

CHROMIUM = Path("/usr/bin/chromium")
FAIL_CASE = "k1m-canary-down-012"
PASS_CASE = "k1m-aa-001"
PNG = b"\x89PNG\r\n\x1a\n"
_chromium_installed = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="/usr/bin/chromium is absent: install the Debian package `chromium` (scripts/test.sh does) "
    "to render the reports in a real browser",
)


def needs_chromium(test):
    """A test in a real browser: slow (run last), skipped without one."""
    return pytest.mark.slow("browser")(_chromium_installed(test))


@pytest.fixture(scope="module")
def fail_case(corpus):
    verdict, window, expected, policy = replayed(corpus / FAIL_CASE)
    assert verdict.verdict == "fail", verdict.reason  # the canary stops reporting
    return verdict, window, expected, policy


@pytest.fixture(scope="module")
def pass_case(corpus):
    from gate.sources.replay import load_case

    full = load_case(corpus / PASS_CASE).policy()
    gauges = full.model_copy(update={"metrics": [m for m in full.metrics if m.kind == "gauge"]})
    verdict, window, expected, policy = replayed(corpus / PASS_CASE, gauges)
    assert verdict.verdict == "pass", verdict.reason  # A/A: the same code on both groups
    return verdict, window, expected, policy


def chromium(tmp_path: Path, page: Path, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium, offline-minded flags, console messages logged to stderr."""
    command = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'chromium-profile'}", "--enable-logging=stderr", "--v=0",
        *args, page.resolve().as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def console_messages(stderr: str) -> list[str]:
    """What the page wrote to its console (errors, CSP violations, failed loads)."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def render_in_browser(tmp_path: Path, document: str, name: str) -> tuple[str, list[str], Path]:
    page = tmp_path / f"{name}.html"
    page.write_text(document, encoding="utf-8")
    shot = tmp_path / f"{name}.png"
    screenshot = chromium(tmp_path, page, f"--screenshot={shot}", "--window-size=840,1800")
    dom = chromium(tmp_path, page, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    return dom.stdout, console_messages(screenshot.stderr) + console_messages(dom.stderr), shot


def check_rendered(tmp_path, case, name) -> str:
    verdict, window, expected, policy = case
    document = render_report(verdict, window, expected, policy)
    dom, messages, shot = render_in_browser(tmp_path, document, name)
    assert messages == [], messages
    assert shot.read_bytes().startswith(PNG) and shot.stat().st_size > 20_000
    for m in verdict.metrics:  # one chart per judged metric, with both groups drawn
        chart = re.search(rf'<svg[^>]*class="chart"[^>]*data-metric="{m.name}".*?</svg>', dom, re.S)
        assert chart, f"no chart for {m.name}"
        assert 'data-series="canary"' in chart.group(0)
        assert 'class="decision"' in chart.group(0)
    assert f">{verdict.verdict}</span> release {verdict.release}" in dom
    return dom


NUMBER_HEADERS = ["canary", "baseline", "expected", "effect", "interval", "tolerance"]
DASH = "–"


def judged(verdict: Verdict, policy) -> list[MetricResult]:
    """The metrics the verdict judged: not muted, not context only (bad direction none)."""
    names = {m.name for m in policy.metrics if m.judged}
    return [m for m in verdict.metrics if m.name in names and not m.muted]


def _number(cell: str) -> float:
    return float(cell.replace(",", ""))


def _percent(cell: str) -> float:
    assert cell.endswith("%"), cell
    return float(cell[:-1]) / 100


def assert_band_and_numbers(document: str, case) -> None:
    """For every judged metric: its chart draws the seasonal band and the expected line, and its
    numbers table shows the verdict's own values, effect, interval and tolerance."""
    verdict, window, expected, policy = case
    metrics = judged(verdict, policy)
    assert metrics, "no judged metric: the test proves nothing"
    tolerances = {m.name: m.tolerance for m in policy.metrics}
    for m in metrics:
        assert expected is not None and m.name in expected, f"the judge told no seasonal expectation for {m.name}"
        chart = re.search(rf'<svg[^>]*class="chart"[^>]*data-metric="{m.name}".*?</svg>', document, re.S).group(0)
        assert 'data-series="expected-band"' in chart and "<polygon" in chart, f"no band drawn for {m.name}"
        assert 'data-series="expected"' in chart, f"no expected line for {m.name}"
        card = re.search(rf'<section[^>]*id="metric-{m.name}".*?</section>', document, re.S).group(0)
        table = re.search(r'<table class="numbers[^"]*">(.*?)</table>', card, re.S).group(1)
        headers = re.findall(r"<th>(.*?)</th>", table)
        cells = dict(zip(headers, (c.strip() for c in re.findall(r"<td>(.*?)</td>", table))))
        assert headers == NUMBER_HEADERS, headers
        for name in ("canary", "baseline", "expected"):
            value = getattr(m, name)
            if value is None:
                assert cells[name] == DASH, (m.name, name, cells[name])
            else:
                assert _number(cells[name]) == pytest.approx(value, rel=1e-3, abs=1e-3), (m.name, name, cells)
        if m.effect is None:
            assert cells["effect"] == DASH and cells["interval"] == DASH, cells
        else:
            assert _percent(cells["effect"]) == pytest.approx(m.effect, abs=0.0006), cells
            low, high = (_percent(c.strip()) for c in cells["interval"].strip("[]").split(","))
            assert (low, high) == pytest.approx(m.interval, abs=0.0006), cells
            assert low <= _percent(cells["effect"]) <= high, cells
        assert m.tolerance == tolerances[m.name]
        assert _percent(cells["tolerance"]) == pytest.approx(tolerances[m.name]), cells


@pytest.mark.parametrize("case_name", ["fail_case", "pass_case"])
def test_every_judged_metric_shows_its_band_and_numbers(request, case_name):
    case = request.getfixturevalue(case_name)
    assert_band_and_numbers(render_report(*case), case)


def test_the_pass_report_has_every_number_behind_the_verdict(pass_case):
    """A/A pass: each judged metric has values for both groups and the expectation, and an effect
    inside its interval, inside the tolerance."""
    verdict, _, _, policy = pass_case
    for m in judged(verdict, policy):
        assert None not in (m.canary, m.baseline, m.expected, m.effect, m.interval), m
        direction = next(x.bad_direction for x in policy.metrics if x.name == m.name)
        assert m.interval[0] <= m.effect <= m.interval[1], m
        if direction in ("increase", "either"):  # shown not worse beyond tolerance on the bad side
            assert m.interval[1] <= m.tolerance, m
        if direction in ("decrease", "either"):
            assert m.interval[0] >= -m.tolerance, m


def test_the_fail_report_shows_a_dead_canary_as_no_canary_numbers(fail_case):
    """Canary down: nothing from the canary (no value, effect or interval: dashes, not zeros)."""
    verdict, _, _, policy = fail_case
    document = render_report(*fail_case)
    for m in judged(verdict, policy):
        assert m.verdict == "fail" and m.canary is None and m.effect is None, m
        card = re.search(rf'<section[^>]*id="metric-{m.name}".*?</section>', document, re.S).group(0)
        assert f"<td>{DASH}</td>" in card


def test_the_fail_report_shows_the_baseline_and_expected_values_of_a_dead_canary(fail_case):
    verdict, _, _, policy = fail_case
    for m in judged(verdict, policy):
        assert m.baseline is not None and m.expected is not None, m


@needs_chromium
def test_fail_report_renders_with_charts_and_no_console_errors(tmp_path, fail_case):
    dom = check_rendered(tmp_path, fail_case, "fail")
    assert_band_and_numbers(dom, fail_case)
    verdict = fail_case[0]
    failing = [m.name for m in verdict.metrics if m.verdict == "fail"]
    decided_by = re.search(r"<th>decided by</th><td>(.*?)</td>", dom).group(1)
    assert all(name in decided_by for name in failing)
    for m in verdict.metrics:
        chart = re.search(rf'<svg[^>]*class="chart"[^>]*data-metric="{m.name}".*?</svg>', dom, re.S).group(0)
        assert 'data-series="baseline"' in chart  # the baseline kept reporting


@needs_chromium
def test_pass_report_renders_with_charts_and_no_console_errors(tmp_path, pass_case):
    dom = check_rendered(tmp_path, pass_case, "pass")
    assert "all judged metrics" in dom
    assert_band_and_numbers(dom, pass_case)  # the band and the numbers of every judged metric, always


@needs_chromium
def test_the_browser_check_catches_a_broken_page(tmp_path, pass_case):
    """The console check can fail: a report that loads anything from outside is caught."""
    document = render_report(*pass_case).replace("</main>", '<img src="https://cdn.example/x.png"></main>')
    _, messages, _ = render_in_browser(tmp_path, document, "broken")
    assert messages and "Content Security Policy" in messages[0]


def test_report_is_self_contained_and_escapes_what_it_shows(fail_case):
    verdict, window, expected, policy = fail_case
    hostile = Verdict(**{**verdict.__dict__, "release": '<script>alert(1)</script>"&', "reason": "<b>x</b>"})
    document = render_report(hostile, window, expected, policy)
    assert "<script" not in document and "&lt;script&gt;" in document
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", document)
    assert "default-src 'none'" in document


def test_secrets_in_source_options_stay_out_of_the_report_data():
    policy = parse_policy({
        "name": "web", "source": {"type": "datadog", "options": {"api_key": "SECRET-KEY-123"}},
        "canary": {"scope": "version:{release}"}, "baseline": {"scope": "version:stable"},
        "metrics": [{"name": "cpu", "kind": "gauge", "queries": {"datadog": "avg:cpu{token:SECRET-KEY-123}"}}],
    })
    t = np.arange(0, 600, 60)
    frame = Frame(60, t, {"cpu": np.linspace(1, 2, len(t))})
    verdict = Verdict("r1", "pass", "ok", 0, 600, True, [MetricResult("cpu", "pass", "within", tolerance=0.1)])
    window = Observations(frame, frame)
    data = snapshot(policy, window, None)
    assert "SECRET" not in json.dumps(data) and "SECRET" not in render_report(verdict, window, None, policy)
    policy2, window2, _, groups = from_snapshot(json.loads(json.dumps(data)))
    assert [m.name for m in policy2.metrics] == ["cpu"] and groups["canary"] == "version:{release}"
    assert np.allclose(window2.canary.values["cpu"], frame.values["cpu"])


def test_gaps_and_a_dead_metric_are_drawn_as_gaps(fail_case):
    verdict, window, expected, policy = fail_case
    document = render_report(verdict, window, expected, policy)
    # canary-down: the canary's line stops, and the chart says nothing is invented after it
    cpu = re.search(r'data-metric="cpu".*?</svg>', document, re.S).group(0)
    canary = re.search(r'data-series="canary">(.*?)</g>', cpu, re.S).group(1)
    baseline = re.search(r'data-series="baseline">(.*?)</g>', cpu, re.S).group(1)
    assert canary.count(",") < baseline.count(",")


def test_the_report_shows_the_window_the_verdict_judged_not_a_later_read(corpus, tmp_path, monkeypatch):
    """Issue 14.2: the report read the window from the source a second time, so points that reached
    it late (Datadog's are often minutes late) showed data the verdict had not judged."""
    import yaml
    from typer.testing import CliRunner

    import gate.sources
    from gate.cli import app

    window_reads: list[Observations] = []
    real_open_source = gate.sources.open_source

    class LatePoints:
        """The recorded case, but every read of the window after the first finds the canary's
        points changed, as late points change them."""

        def __init__(self, source):
            self.source = source

        def __getattr__(self, name):
            return getattr(self.source, name)

        def fetch(self, query):
            observations = self.source.fetch(query)
            if query.start < self.source.known_deployed_at:  # the history, before the deploy
                return observations
            window_reads.append(observations)
            if len(window_reads) == 1:
                return observations
            canary = observations.canary
            late = Frame(canary.step, canary.timestamps, {k: v * 3 + 7 for k, v in canary.values.items()})
            return Observations(late, observations.baseline)

    monkeypatch.setattr(gate.sources, "open_source", lambda policy: LatePoints(real_open_source(policy)))
    for key in ("GATE_REPORT_BUCKET", "GATE_STORE_TABLE", "SLACK_WEBHOOK_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("GATE_REPORT_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("GATE_CACHE_DIR", str(tmp_path / "cache"))
    data = yaml.safe_load((Path(__file__).parents[1] / "examples" / "replay.yaml").read_text())
    data["source"]["options"]["case"] = str(corpus / FAIL_CASE)
    policy, store = tmp_path / "policy.yaml", tmp_path / "gate.sqlite"
    policy.write_text(yaml.safe_dump(data))

    result = CliRunner().invoke(app, ["check", "rel", "--policy", str(policy), "--store", str(store), "--json"])
    assert result.exit_code == 1, result.output  # the dead canary fails
    recorded = [e["detail"] for e in SqliteStore(store).events("rel") if e["kind"] == "report-data"]
    assert len(recorded) == 1
    judged = window_reads[0].canary
    drawn = recorded[0]["canary"]
    assert drawn["t"] == [int(t) for t in judged.timestamps]
    for name in ("cpu", "latency"):
        shown = np.array([np.nan if v is None else v for v in drawn["values"][name]], dtype=float)
        np.testing.assert_array_equal(shown, judged.values[name], err_msg=name)
    assert (tmp_path / "reports" / "rel.html").exists()


def test_write_then_rebuild_from_the_store_gives_the_same_report(tmp_path, fail_case):
    verdict, window, expected, policy = fail_case
    store = SqliteStore(tmp_path / "s.sqlite")
    store.start_release(verdict.release, verdict.deployed_at, {})
    store.record(verdict)
    location = write_report(verdict, window, expected, policy, store=store, out=tmp_path / "a.html")
    assert location == str(tmp_path / "a.html")
    again = rebuild(store, verdict.release)

    def strip(doc: str) -> str:
        return re.sub(r"generated [^·]*·", "", doc)

    assert strip(again) == strip(Path(location).read_text())
    kinds = [e["kind"] for e in store.events(verdict.release)]
    assert kinds == ["report-data", "report"]


def test_the_rebuilt_report_shows_the_numbers_the_verdict_showed(tmp_path, fail_case):
    """Stored at full precision: rounded once for display, as the first report and Slack did
    (0.0051449999 shows as 0.00514; stored rounded to 0.005145 it came back as 0.00515)."""
    from dataclasses import replace

    verdict, window, expected, policy = fail_case
    first = verdict.metrics[0]
    on_the_edge = replace(first, canary=0.0051449999, baseline=0.0031449999, effect=0.63594999, expected=None,
                          interval=(0.1234549999, 1.1234549999))
    verdict = replace(verdict, metrics=[on_the_edge, *verdict.metrics[1:]])
    store = SqliteStore(tmp_path / "s.sqlite")
    store.start_release(verdict.release, verdict.deployed_at, {})
    store.record(verdict)
    location = write_report(verdict, window, expected, policy, store=store, out=tmp_path / "a.html")
    again = rebuild(store, verdict.release)
    strip = lambda doc: re.sub(r"generated [^·]*·", "", doc)  # noqa: E731
    assert "0.00514" in again and "0.00515" not in again
    assert strip(again) == strip(Path(location).read_text())
    assert Verdict.from_dict(store.evaluations(verdict.release)[-1]["payload"]) == verdict


def test_only_the_cards_that_share_the_release_verdict_carry_it_on_their_marker(fail_case):
    from dataclasses import replace

    verdict, window, expected, policy = fail_case
    passed = replace(verdict.metrics[0], verdict="pass")
    document = render_report(replace(verdict, metrics=[passed, *verdict.metrics[1:]]), window, expected, policy)
    markers = dict(re.findall(r'data-metric="([^"]+)".*?class="marker"[^>]*>([^<]*)</text>', document, re.S))
    assert markers[passed.name].startswith("decided at +"), markers
    assert all(markers[m.name].startswith("fail at +") for m in verdict.metrics[1:] if m.verdict == "fail")


def test_the_effect_strip_keeps_its_axis_labels_inside():
    from gate.report.page import effect_svg

    for effect, interval in ((11.35, (9.08, 13.62)), (1.1, (0.88, 1.32)), (-0.9, (-0.95, -0.85))):
        svg = effect_svg(MetricResult("errors", "fail", "r", effect=effect, interval=interval, tolerance=0.5), None)
        width = float(re.search(r'viewBox="0 0 (\d+)', svg).group(1))
        for x, anchor, label in re.findall(r'<text x="([\d.]+)" y="46" text-anchor="(\w+)"[^>]*>([^<]*)<', svg):
            half = len(label) * 3.5  # about half the width of an 11px label
            left, right = {"start": (0, 2 * half), "middle": (half, half), "end": (2 * half, 0)}[anchor]
            assert float(x) - left >= 0 and float(x) + right <= width, (label, x, anchor)


def test_gate_report_says_why_there_is_no_report(tmp_path, fail_case):
    from dataclasses import replace

    verdict = fail_case[0]
    store = SqliteStore(tmp_path / "s.sqlite")
    store.start_release(verdict.release, verdict.deployed_at, {})
    store.record(replace(verdict, verdict="inconclusive", final=False))
    with pytest.raises(ReportError, match="no report yet: one is written when the gate decides"):
        rebuild(store, verdict.release)
    store.record(verdict)  # decided, but its report data never made it to the store
    with pytest.raises(ReportError, match="the data behind its fail verdict at .* was not recorded"):
        rebuild(store, verdict.release)


def test_a_report_that_cannot_be_written_does_not_raise(tmp_path, fail_case):
    verdict, window, expected, policy = fail_case
    store = SqliteStore(tmp_path / "s.sqlite")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert write_report(verdict, window, expected, policy, store=store, out=blocker / "x.html") is None
    (event,) = [e for e in store.events(verdict.release) if e["kind"] == "report"]
    assert event["detail"]["ok"] is False and "cannot write the report" in event["detail"]["error"]


def test_gate_report_command(tmp_path, corpus):
    case = corpus / FAIL_CASE
    deployed = json.loads((case / "case.json").read_text())["deploy_at"]
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        f"name: web\nsource: {{type: replay, options: {{case: '{case}'}}}}\n"
        "canary: {scope: canary}\nbaseline: {scope: baseline}\ninterval: 1m\nlifetime: 1h\n"
        "metrics:\n  - {name: cpu, kind: gauge}\n  - {name: latency, kind: gauge}\n")
    store = tmp_path / "s.sqlite"
    env = {"SLACK_WEBHOOK_URL": "", "GATE_REPORT_BUCKET": "", "GATE_REPORT_DIR": ""}  # the default folder
    checked = run_gate("check", "web-1.2", "--policy", policy, "--deployed-at", deployed, "--store", store,
                       "--examine-past", cwd=tmp_path, env=env)
    assert checked.returncode == 1, checked.stderr
    assert "report: reports/web-1.2.html" in checked.stderr
    written = (tmp_path / "reports" / "web-1.2.html").read_text()
    again = run_gate("report", "web-1.2", "--store", store, "--out", tmp_path / "again.html", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == str(tmp_path / "again.html")
    strip = lambda doc: re.sub(r"generated [^·]*·", "", doc)  # noqa: E731
    assert strip((tmp_path / "again.html").read_text()) == strip(written)
    unknown = run_gate("report", "nope", "--store", store, cwd=tmp_path, env=env)
    assert unknown.returncode == 4 and "no verdict recorded for release 'nope'" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_publish_to_s3_gives_a_presigned_link(tmp_path, monkeypatch):
    pytest.importorskip("moto")
    import urllib.request

    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        for key, value in {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
                           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                           "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
        boto3.client("s3").create_bucket(Bucket="gate-reports")
        monkeypatch.setenv("GATE_REPORT_BUCKET", "gate-reports")
        link = publish("<!DOCTYPE html><p>report</p>", "web/1.2")
        assert link.startswith(f"http://{host}:{port}/") and "Signature=" in link
        assert f"reports/{safe_name('web/1.2')}.html" in link and "reports/web_1.2" in link
        with urllib.request.urlopen(link, timeout=10) as response:
            assert response.read() == b"<!DOCTYPE html><p>report</p>"
        monkeypatch.setenv("GATE_REPORT_BUCKET", "no-such-bucket")
        with pytest.raises(ReportError, match="cannot upload the report to s3://no-such-bucket"):
            publish("x", "web")
    finally:
        server.stop()


@pytest.mark.parametrize("seconds", ["abc", "1h", "0", "-60", "604801"])
def test_a_bad_report_link_lifetime_is_named_before_anything_is_uploaded(monkeypatch, seconds):
    """Review: GATE_REPORT_LINK_SECONDS=abc was a bare int(): a ValueError (`gate report`: internal
    error), and a negative or an 8-day value handed out a link that never opens (S3 refuses SigV4
    links valid longer than 7 days). The endpoint is a closed port: nothing was sent."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("GATE_REPORT_BUCKET", "gate-reports")
    monkeypatch.setenv("GATE_REPORT_LINK_SECONDS", seconds)
    with pytest.raises(ReportError) as refused:
        publish("x", "web")
    assert str(refused.value) == (f"GATE_REPORT_LINK_SECONDS: {seconds!r} is not a whole number of seconds from 1 "
                                  "to 604800 (e.g. 86400 for a day)")


def test_the_chart_of_an_early_fail_gives_its_data_most_of_the_width(tmp_path, capsys):
    """A fail at minute 4 of a 60-minute lifetime drew its data on the first 7% of the axis."""
    import json as json_module

    import gate.demo
    from gate.report.page import LEFT, RIGHT, W

    gate.demo.run_demo("db_connections", pace=0, as_json=True, store=tmp_path / "s.sqlite")
    verdict = json_module.loads(capsys.readouterr().out)
    assert verdict["verdict"] == "fail" and verdict["evaluations"] < 10  # decided early
    document = Path(verdict["report"]).read_text()
    charts = re.findall(r'<svg class="chart".*?</svg>', document, re.S)
    assert charts
    for chart in charts:
        decision = float(re.search(r'<line class="decision" x1="([\d.]+)"', chart).group(1))
        assert (decision - LEFT) / (W - RIGHT - LEFT) >= 0.7, decision
        assert "lifetime 60 min" in chart  # the axis says the canary had time left


def test_the_band_is_the_judges_answer_and_the_report_reads_no_reference(corpus):
    """The expected band comes through the judge's interface (`gate.judge.expected_band`): the
    report draws what the judge answers, and a judge that tells none gets no band, never one the
    report made up from the reference's insides."""
    from gate import judge
    from gate.analysis import _replay
    from gate.report.snapshot import BAND_SCALES, expected_band, window_grid

    analysis, evaluation, _ = _replay(corpus / PASS_CASE, None)
    drawn = expected_band(judge, evaluation.reference, analysis.policy, evaluation.window)
    told = judge.expected_band(analysis.policy, evaluation.reference, window_grid(evaluation.window), BAND_SCALES)
    assert drawn and set(drawn) == set(told) >= {m.name for m in analysis.policy.metrics if m.judged}
    for name, arrays in told.items():
        for a, b in zip(drawn[name], arrays):
            np.testing.assert_array_equal(a, b)

    class Silent:  # learns and judges, tells no band
        learn, evaluate = judge.learn, judge.evaluate

    assert expected_band(Silent(), evaluation.reference, analysis.policy, evaluation.window) is None
