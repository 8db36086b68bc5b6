"""The built artifact, as Lambda runs it: dist/gate-lambda.zip unpacked into an empty folder and
its handler invoked there by python3.12 in isolated mode, with the AWS SDK beside it as the
python3.12 runtime provides it (/var/runtime), and nothing else.

The build takes minutes: it runs once per session, and not at all when dist/gate-lambda.zip is
newer than everything it is built from.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml

from bench.lambda_import import LAZY, RUNTIME, aws_sdk, find_python312, lambda_env
from gate.analysis import Analysis
from gate.policy import parse_policy
from gate.sources.replay import ReplaySource, load_case
from tests.test_lambda_handler import case_event

ROOT = Path(__file__).resolve().parents[1]
ZIP = ROOT / "dist" / "gate-lambda.zip"
MB = 1024 * 1024
UNZIPPED_LIMIT = 250 * MB  # Lambda's hard limit for a function's unzipped code
UNZIPPED_TARGET = 220 * MB
SOURCES = ["pyproject.toml", "lambda/handler.py", "lambda/build.sh", "gate/**/*.py"]
pytestmark = pytest.mark.slow("Lambda zip build")


def newest_source() -> float:
    return max(os.path.getmtime(p) for pattern in SOURCES for p in glob.glob(str(ROOT / pattern), recursive=True))


@pytest.fixture(scope="session")
def python312() -> str:
    found = find_python312()
    if found is None:
        pytest.skip("python3.12 not found (set PYTHON312): the Lambda runtime's interpreter is needed")
    return found


@pytest.fixture(scope="session")
def artifact(python312) -> Path:
    if not ZIP.exists() or ZIP.stat().st_mtime < newest_source():
        build = subprocess.run(["bash", str(ROOT / "lambda" / "build.sh")], capture_output=True, text=True,
                               cwd=ROOT, timeout=1200, env={**os.environ, "PYTHON312": python312})
        assert build.returncode == 0, f"lambda/build.sh failed:\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}"
    return ZIP


@pytest.fixture(scope="session")
def runtime(python312) -> Path:
    return aws_sdk(RUNTIME)


@pytest.fixture(scope="session")
def task(artifact, tmp_path_factory) -> Path:
    """The zip unpacked into an empty folder, as Lambda does into /var/task."""
    folder = tmp_path_factory.mktemp("task")
    assert not any(folder.iterdir())
    with zipfile.ZipFile(artifact) as z:
        z.extractall(folder)
    return folder


# Run inside the unpacked folder by `python3.12 -I`: sys.path as Lambda's bootstrap sets it (the
# task, then the runtime), a cold import of the handler, then events from stdin. How long the
# import takes is measured by bench/lambda_import.py (a ratio to `import numpy`), not here.
RUNNER = r"""
import json, sys
task, runtime, lazy = sys.argv[1], sys.argv[2], sys.argv[3].split()
sys.path[:0] = [task, runtime]
import handler
loaded_at_init = [m for m in lazy if m in sys.modules]
handler.DEMO_SOURCES = handler.DEMO_SOURCES - {"replay"}  # the recorded cases are the test data

class Context:
    function_name = "canary-gate-analyzer"; function_version = "$LATEST"; memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:canary-gate-analyzer"
    aws_request_id = "11111111-2222-3333-4444-555555555555"
    def get_remaining_time_in_millis(self): return 60000

origins = {name: getattr(sys.modules.get(name), "__file__", None) for name in
           ("handler", "gate", "numpy", "scipy", "statsmodels", "pandas", "pydantic", "aws_lambda_powertools",
            "datadog_api_client", "boto3")}
import datadog_api_client, statsmodels.tsa.seasonal  # in the artifact even if the judge did not import them yet
origins["datadog_api_client"] = datadog_api_client.__file__
origins["statsmodels"] = statsmodels.__file__
results = [handler.lambda_handler(json.loads(line), Context()) for line in sys.stdin]
print("RESULT " + json.dumps({"loaded_at_init": loaded_at_init, "origins": origins, "results": results}))
"""


def invoke(python312: str, task: Path, runtime: Path, events: list[dict], tmp_path: Path) -> dict:
    run = subprocess.run([python312, "-I", "-c", RUNNER, str(task), str(runtime), " ".join(LAZY)], cwd=task,
                         env=lambda_env(task, tmp_path),
                         input="".join(json.dumps(e) + "\n" for e in events), capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-5000:]
    line = next(line for line in run.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def test_the_artifact_is_within_lambda_limits(artifact):
    with zipfile.ZipFile(artifact) as z:
        entries = z.infolist()
    unzipped = sum(e.file_size for e in entries)
    names = [e.filename for e in entries]
    print(f"\ngate-lambda.zip: {artifact.stat().st_size / MB:.1f} MiB zipped, {unzipped / MB:.1f} MiB unzipped,"
          f" {len(names)} files")
    assert unzipped <= UNZIPPED_TARGET <= UNZIPPED_LIMIT
    assert "handler.py" in names
    tops = {n.split("/")[0] for n in names}
    assert {"gate", "numpy", "scipy", "statsmodels", "pandas", "datadog_api_client", "aws_lambda_powertools",
            "pydantic", "yaml"} <= tops
    assert not tops & {"boto3", "botocore", "s3transfer"}, "the runtime provides the AWS SDK"
    assert not [n for n in names if "/tests/" in n or "__pycache__" in n]
    assert not [n for n in names if n.endswith(".py") and n != "handler.py"], "sources are compiled and removed"
    assert "gate/analysis.pyc" in names and any(n.startswith("statsmodels/tsa/") for n in names)


def test_the_unpacked_handler_judges_a_replayed_case(python312, task, runtime, corpus, tmp_path):
    fail_event = case_event(corpus, "k1m-canary-down-012")
    pass_event = case_event(corpus, "k1m-aa-000", only=("cpu",))
    bad_event = {"release": "x", "policy": {"name": "p"}}
    http_event = {"body": json.dumps(fail_event | {"release": "k1m-canary-down-012-http"}), "isBase64Encoded": False}
    demo_event = {"release": "demo", "policy": yaml.safe_load((ROOT / "examples" / "simulate.yaml").read_text())}
    out = invoke(python312, task, runtime, [fail_event, pass_event, bad_event, http_event, demo_event], tmp_path)

    for name, origin in out["origins"].items():
        if origin is not None:  # everything but the SDK comes from the artifact
            where = runtime if name == "boto3" else task
            assert origin.startswith(str(where)), (name, origin)

    # A cold start pays for statsmodels, scipy and the Datadog client only when a fit or a fetch needs them.
    assert out["loaded_at_init"] == []
    fail, passed, bad, http, demo = out["results"]
    case = load_case(corpus / "k1m-canary-down-012")
    expected = Analysis(parse_policy(fail_event["policy"]), ReplaySource(case), "k1m-canary-down-012",
                        case.deployed_at, canary="canary", baseline="baseline").evaluate(case.end_at).to_dict()
    assert (fail["verdict"], fail["exit_code"], fail["final"]) == ("fail", 1, True)
    assert set(fail) == set(expected) | {"exit_code", "interval_seconds", "deploy", "same_deploy"}  # the first deploy: 1
    assert fail["interval_seconds"] == 60  # the policy's interval, for the Step Functions loop
    assert {k: fail[k] for k in ("release", "deployed_at", "evaluated_at", "verdict")} == \
        {k: expected[k] for k in ("release", "deployed_at", "evaluated_at", "verdict")}
    assert [(m["name"], m["verdict"]) for m in fail["metrics"]] == [(m["name"], m["verdict"]) for m in expected["metrics"]]
    assert (passed["verdict"], passed["exit_code"]) == ("pass", 0)
    assert (bad["statusCode"], bad["exit_code"]) == (400, 4) and "metrics" in bad["error"]
    assert http["statusCode"] == 200 and json.loads(http["body"])["verdict"] == "fail"
    assert (demo["statusCode"], demo["exit_code"]) == (400, 4) and demo["error"].startswith("source.type: 'simulate'")
