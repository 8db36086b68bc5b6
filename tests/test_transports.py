"""Each transport has one home: boto3 clients are made by gate/aws.py, the Datadog client is set
up by gate/datadog_client.py for the source and the event notifier alike."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(p for folder in ("gate", "lambda") for p in (ROOT / folder).rglob("*.py"))


def calls(path: Path, owner: str, names: tuple[str, ...]) -> list[int]:
    """Lines of `path` calling `owner.<name>(...)` (boto3.client, boto3.resource...)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr in names and isinstance(n.func.value, ast.Name) and n.func.value.id == owner]


def imported_names(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == module for a in n.names}


def test_every_boto3_client_is_made_by_the_one_client_maker():
    makers = {str(p.relative_to(ROOT)) for p in MODULES if calls(p, "boto3", ("client", "resource", "Session"))}
    assert makers == {"gate/aws.py"}


def test_the_datadog_source_and_event_share_the_one_client_set_up():
    builders = {str(p.relative_to(ROOT)) for p in MODULES if calls(p, "datadog_api_client", ("Configuration",))
                or "Configuration" in imported_names(p, "datadog_api_client")}
    assert builders == {"gate/datadog_client.py"}
    for user in ("gate/sources/datadog.py", "gate/notify/datadog_event.py"):
        assert "configuration" in imported_names(ROOT / user, "gate.datadog_client"), user
    # the event notifier no longer reaches into the source for its transport
    assert not imported_names(ROOT / "gate/notify/datadog_event.py", "gate.sources.datadog")
