"""Links from a failing metric to its evidence (gate/links.py): each provider's documented URL
form, the time encoding, the escaping of scopes, the policy's templates, and their presence in
every output (terminal, report, Slack, JUnit, Datadog event, webhook, JSON)."""

import json
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from rich.console import Console

from gate.errors import PolicyError
from gate.evidence import with_links
from gate.links import cloudwatch_links, datadog_links, jsurl
from gate.policy import json_schema, load_policy, parse_policy
from gate.sources.cloudwatch import from_policy as cloudwatch_source
from tests.conftest import ROOT, run_gate
from tests.test_webhook import FAILED

START, END = 1_700_000_000, 1_700_000_960  # FAILED's window: the deploy to the decision
DATADOG = load_policy(ROOT / "examples" / "datadog.yaml")
CLOUDWATCH = load_policy(ROOT / "examples" / "cloudwatch.yaml")


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


@pytest.mark.parametrize("site, app", [("datadoghq.com", "app.datadoghq.com"), ("datadoghq.eu", "app.datadoghq.eu"),
                                       ("us3.datadoghq.com", "us3.datadoghq.com"), ("ddog-gov.com", "app.ddog-gov.com")])
def test_datadog_links_open_the_site_app_on_the_canary_scope_and_the_window_in_milliseconds(site, app):
    links = datadog_links("latency", "p95:trace.http.request{service:web,autoscaling_group:web-canary}",
                          "autoscaling_group:web-canary", "autoscaling_group:web-baseline", START, END, site)
    traces, logs, metric = (urlsplit(links[k]) for k in ("traces", "logs", "metric"))
    assert {traces.scheme, logs.scheme, metric.scheme} == {"https"} and {traces.netloc, logs.netloc, metric.netloc} == {app}
    assert (traces.path, logs.path, metric.path) == ("/apm/traces", "/logs", "/metric/explorer")
    assert query_of(links["traces"]) == {"query": "autoscaling_group:web-canary", "start": str(START * 1000),
                                         "end": str(END * 1000), "paused": "true"}
    assert query_of(links["logs"]) == {"query": "autoscaling_group:web-canary", "from_ts": str(START * 1000),
                                       "to_ts": str(END * 1000), "live": "false"}
    shown = query_of(links["metric"])  # both groups side by side: grouped by their tag's key
    assert (shown["exp_metric"], shown["exp_group"], shown["exp_scope"]) == ("trace.http.request", "autoscaling_group", "")
    assert (shown["from_ts"], shown["to_ts"]) == (str(START * 1000), str(END * 1000))


def test_a_datadog_scope_is_escaped_and_its_tags_searched_together():
    links = datadog_links("cpu", "avg:system.cpu.user{env:prod,version:1.2+b/7}", "env:prod,version:1.2+b/7",
                          "env:prod,version:1.1", START, END, "datadoghq.com")
    assert query_of(links["traces"])["query"] == "env:prod version:1.2+b/7"  # a space: every tag must match
    raw = urlsplit(links["traces"]).query
    assert "+" not in raw and "/" not in raw and " " not in raw  # each a %-escape: never read as a space or a path
    shown = query_of(links["metric"])  # two tags each: no shared key, the canary's scope
    assert shown["exp_scope"] == "env:prod,version:1.2+b/7" and "exp_group" not in shown


def test_jsurl_is_the_notation_sage_jsurl_documents():
    assert jsurl({"name": "John Doe", "age": 42, "children": ["Mary", "Bill"]}) == \
        "~(name~'John*20Doe~age~42~children~(~'Mary~'Bill))"
    assert jsurl([]) == "~(~)" and jsurl(True) == "~true" and jsurl(None) == "~null"
    assert jsurl("a$b/c") == "~'a!b*2fc" and jsurl("é") == "~'*e9" and jsurl("€") == "~'**20ac"


def test_the_xray_link_is_the_consoles_documented_deep_link():
    """docs.aws.amazon.com/xray/latest/devguide/xray-console-deeplinks.html: xray/home?region=R
    #/traces?filter=EXPR&timeRange=START~END (ISO 8601, UTC, at most 6 hours)."""
    url = cloudwatch_links("eu-west-1", 'web "canary"', START, END)["traces"]
    parts = urlsplit(url)
    assert (parts.netloc, parts.path, parts.query) == ("console.aws.amazon.com", "/xray/home", "region=eu-west-1")
    route, _, state = parts.fragment.partition("?")
    assert route == "/traces"
    state = {k: v[0] for k, v in parse_qs(state).items()}
    assert state["filter"] == 'annotation.autoscaling_group = "web \\"canary\\""'  # its quotes escaped
    assert state["timeRange"] == "2023-11-14T22:13:20~2023-11-14T22:29:20"
    long = cloudwatch_links("eu-west-1", "web-canary", START, START + 10 * 3600)["traces"]
    assert "timeRange=2023-11-15T02:13:20~2023-11-15T08:13:20" in long  # the last 6 hours of a longer window


def test_the_cloudwatch_metric_and_logs_insights_links_carry_both_groups_and_the_window():
    source = cloudwatch_source(CLOUDWATCH)
    verdict = with_links(FAILED, CLOUDWATCH, source, "web-canary", "web-baseline", site="-", region="us-east-1")
    links = verdict.metrics[0].links
    assert "logs" not in links  # no log group named: no Logs Insights link
    metric = urlsplit(links["metric"])
    assert (metric.netloc, metric.path, metric.query) == ("us-east-1.console.aws.amazon.com", "/cloudwatch/home",
                                                          "region=us-east-1")
    assert metric.fragment.startswith("metricsV2:graph=~(metrics~(~(~'AWS*2fApplicationELB~'TargetResponseTime~")
    for group in ("web-canary*2f73e2d6bc24d8a067", "web-baseline*2f2a6e1c0d5b3e9f41"):
        assert f"~'targetgroup*2f{group}" in metric.fragment
    assert "~start~'2023-11-14T22*3a13*3a20.000Z~end~'2023-11-14T22*3a29*3a20.000Z" in metric.fragment
    named = parse_policy({**CLOUDWATCH.model_dump(exclude_none=True), "links": {"log_group": "/web/{scope}/app"}})
    logs = with_links(FAILED, named, source, "web-canary", "web-baseline", site="-", region="us-east-1").metrics[0]
    fragment = urlsplit(logs.links["logs"]).fragment
    assert fragment.startswith("logsV2:logs-insights$3FqueryDetail$3D~(end~'2023-11-14T22*3a29*3a20.000Z"
                               "~start~'2023-11-14T22*3a13*3a20.000Z~timeType~'ABSOLUTE~tz~'UTC~editorString~'fields*20")
    assert fragment.endswith("~source~(~'*2fweb*2fweb-canary*2fapp))")


def test_only_failing_metrics_get_links():
    verdict = with_links(FAILED, DATADOG, None, "autoscaling_group:web-canary", "autoscaling_group:web-baseline",
                         site="datadoghq.com", region=None)
    assert [bool(m.links) for m in verdict.metrics] == [True, False]  # latency failed, cpu passed
    assert "links" not in verdict.metrics[1].to_dict()  # a JSON without links is unchanged


def policy_with(urls: dict) -> object:
    return parse_policy({**DATADOG.model_dump(exclude_none=True), "links": {"urls": urls}})


def test_policy_templates_replace_the_defaults_with_every_value_escaped():
    policy = policy_with({"runbook": "https://wiki.example/canary?scope={scope}&from={start_iso}&to={end_ms}&m={metric}"})
    verdict = with_links(FAILED, policy, None, "team:a&b=c#d", None, site="datadoghq.com", region=None)
    (url,) = verdict.metrics[0].links.values()
    assert list(verdict.metrics[0].links) == ["runbook"]
    assert query_of(url) == {"scope": "team:a&b=c#d", "from": "2023-11-14T22:13:20Z", "to": str(END * 1000),
                             "m": "latency"}
    assert urlsplit(url).fragment == ""  # the '#' of the scope cannot cut the link
    assert with_links(FAILED, policy_with({}), None, "x:y", None, site="-", region=None).metrics[0].links is None


@pytest.mark.parametrize("urls, field", [
    ({"runbook": "https://x.example/{scop}"}, "unknown placeholder(s) {scop}"),
    ({"runbook": "http://x.example/"}, "links.urls.runbook"),
    ({"runbook": "https://x.example/{start:%Y}"}, "take no format"),
    ({"Run book": "https://x.example/"}, "'Run book': a link's name"),
])
def test_bad_link_templates_are_refused_naming_the_field(urls, field):
    with pytest.raises(PolicyError, match="links.urls") as raised:
        policy_with(urls)
    assert field in str(raised.value)


def test_the_schema_has_the_links_section():
    schema = json.loads(json_schema())
    assert {"log_group", "urls"} <= set(schema["$defs"]["Links"]["properties"])


def failed_with_links():
    return with_links(FAILED, DATADOG, None, "autoscaling_group:web-canary", "autoscaling_group:web-baseline",
                      site="datadoghq.com", region=None)


def test_every_message_carries_the_links():
    from gate import junit
    from gate.console import print_verdict
    from gate.notify import datadog_event, slack, webhook

    verdict = failed_with_links()
    links = verdict.metrics[0].links
    console = Console(width=80, record=True, force_terminal=False, color_system=None)
    print_verdict(verdict, console)
    terminal = console.export_text().splitlines()
    for name, url in links.items():
        assert f"  latency {name}: {url}" in terminal  # one line each, never cut at 80 columns
    message = json.dumps(slack.build_message(verdict, policy="web", canary="c", baseline="b"))
    event = datadog_event.event_body(verdict, "web")["text"]
    xml = junit.report(verdict)
    body = webhook.body(verdict, policy="web", canary="c", baseline="b")
    for name, url in links.items():
        assert f"<{url}|{name}>" in message and f"[{name}]({url})" in event
        assert url.replace("&", "&amp;") in xml
    assert body["failing_metrics"][0]["links"] == links


def test_check_carries_the_links_to_json_the_report_and_junit(tmp_path):
    simulate = yaml.safe_load((ROOT / "examples" / "simulate.yaml").read_text())
    template = "https://logs.example/search?group={scope}&from={start}&to={end}"
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({**simulate, "links": {"urls": {"logs": template}}}))
    result = run_gate("check", "rel", "--policy", path, "--deployed-at", "2024-05-06T12:00:00Z", "--examine-past",
                      "--store", tmp_path / "s.sqlite", "--json", "--junit", tmp_path / "junit.xml",
                      env={"SLACK_WEBHOOK_URL": "", "GATE_STORE_TABLE": ""})
    assert result.returncode == 1, result.stdout + result.stderr
    verdict = json.loads(result.stdout)
    failed = [m for m in verdict["metrics"] if m["verdict"] == "fail"]
    assert failed and all(set(m["links"]) == {"logs"} for m in failed)
    url = failed[0]["links"]["logs"]
    assert query_of(url)["group"] == "canary"
    assert url.replace("&", "&amp;") in (tmp_path / "junit.xml").read_text()
    (report,) = (tmp_path / "reports").glob("*.html")
    assert f'href="{url.replace("&", "&amp;")}"' in report.read_text()
