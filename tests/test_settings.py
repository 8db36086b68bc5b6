"""gate/settings.py: the one module that reads the environment."""

from __future__ import annotations

import ast
from pathlib import Path

from gate.settings import SECRET_KEYS, Settings, current_settings, put_secrets

ROOT = Path(__file__).resolve().parent.parent


def environment_reads(path: Path) -> list[int]:
    """Lines of `path` that read the process environment (os.environ, os.getenv, getenv)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb"):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os" and any(
                a.name in ("environ", "getenv") for a in node.names):
            lines.append(node.lineno)
    return lines


def test_no_module_but_settings_reads_the_environment():
    readers = {str(p.relative_to(ROOT)): lines
               for folder in ("gate", "lambda") for p in sorted((ROOT / folder).rglob("*.py"))
               if (lines := environment_reads(p))}
    assert readers == {"gate/settings.py": readers.get("gate/settings.py")}, readers


def test_settings_are_the_environment_as_given_with_the_defaults_where_unset():
    given = Settings.from_environment({"GATE_STORE_TABLE": "t", "DD_SITE": "datadoghq.eu", "TMPDIR": "",
                                       "AWS_REGION": "eu-west-1", "GATE_SECRET_MAX_AGE": "60"})
    assert (given.store_table, given.datadog_site, given.tmpdir, given.secret_max_age) == ("t", "datadoghq.eu", "", "60")
    assert given.region == "eu-west-1"  # AWS_REGION when botocore's AWS_DEFAULT_REGION is unset
    assert given.store_path is None and given.metrics_namespace == "CanaryGate" and given.idempotency_ttl == "21600"
    assert Settings.from_environment({"AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "eu-west-1"}).region == "us-east-1"


def test_settings_follow_the_environment_and_the_secret_replaces_every_key(monkeypatch):
    for key in SECRET_KEYS:
        monkeypatch.setenv(key, "plain-variable")
    put_secrets({"DD_API_KEY": "from-secret", "DD_APP_KEY": ""})
    now = current_settings()
    assert now.datadog_api_key == "from-secret"
    # a key the secret does not hold is unset, never the function's plain variable
    assert now.datadog_app_key is None and now.slack_webhook_url is None and now.webhook_secret is None
    assert now.secrets == ["from-secret"]
