"""The Lambda's cold start: importing the handler, as a ratio to a bare `import numpy`.

Runs the built artifact as Lambda does: dist/gate-lambda.zip unpacked into an empty folder,
`python3.12 -I` with the folder and the AWS SDK (build/lambda-runtime, as the python3.12 runtime
provides it) on sys.path. Each import runs in a fresh process, the handler and numpy in turn, so
that each pair sees the same machine; the ratio of a pair is what this reports, because seconds
follow the machine's load and the ratio far less (docs: lambda/README.md).

    bash lambda/build.sh && .venv/bin/python -m bench.lambda_import [--runs 9]
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ZIP = ROOT / "dist" / "gate-lambda.zip"
RUNTIME = ROOT / "build" / "lambda-runtime"  # boto3 for 3.12: what Lambda's runtime ships
# What the handler must not import at init: a fit (statsmodels, scipy) or a fetch (Datadog) loads it.
LAZY = ("statsmodels", "scipy", "pandas", "datadog_api_client")

# Prints the seconds the import took, then the lazy modules that it loaded anyway.
PROBE = """
import sys, time
sys.path[:0] = sys.argv[1:3]
started = time.perf_counter()
import {module}
print(time.perf_counter() - started)
print(" ".join(m for m in {lazy!r} if m in sys.modules))
"""


def find_python312() -> str | None:
    candidates = [os.environ.get("PYTHON312"), shutil.which("python3.12"),
                  *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")))]
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 12))"],
                               capture_output=True, text=True)
        if probe.stdout.strip() == "True":
            return candidate
    return None


def aws_sdk(folder: Path = RUNTIME) -> Path:
    """boto3 and botocore for 3.12, kept in build/ across runs: not in the zip, in the runtime."""
    if not (folder / "boto3").is_dir():
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target", str(folder),
                        "--python-version", "3.12", "--only-binary=:all:", "boto3"],
                       check=True, capture_output=True, timeout=600)
    return folder


def lambda_env(task: Path, scratch: Path) -> dict[str, str]:
    """The environment a Lambda function sees, reduced to what the gate reads."""
    return {"PATH": "/usr/bin:/bin", "TZ": "UTC", "LANG": "C.UTF-8", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1", "LAMBDA_TASK_ROOT": str(task), "POWERTOOLS_TRACE_DISABLED": "true",
            "GATE_STORE": str(scratch / "gate.sqlite"), "TMPDIR": str(scratch)}


def cold_import(python312: str, module: str, task: Path, runtime: Path) -> tuple[float, list[str]]:
    """Seconds to import `module` in a fresh interpreter, and the lazy modules it loaded."""
    with tempfile.TemporaryDirectory() as scratch:
        run = subprocess.run([python312, "-I", "-c", PROBE.format(module=module, lazy=LAZY), str(task), str(runtime)],
                             cwd=task, env=lambda_env(task, Path(scratch)), capture_output=True, text=True,
                             timeout=300)
    if run.returncode != 0:
        raise SystemExit(f"import {module} failed:\n{run.stderr[-3000:]}")
    seconds, loaded = run.stdout.splitlines()[-2:]
    return float(seconds), loaded.split()


def measure(python312: str, task: Path, runtime: Path, runs: int) -> dict:
    cold_import(python312, "handler", task, runtime)  # warm-up: the page cache, not the interpreter
    pairs, loaded = [], []
    for _ in range(runs):
        handler, loaded = cold_import(python312, "handler", task, runtime)
        numpy, _ = cold_import(python312, "numpy", task, runtime)
        pairs.append((handler, numpy))
    return {"handler_s": statistics.median(h for h, _ in pairs), "numpy_s": statistics.median(n for _, n in pairs),
            "ratios": sorted(h / n for h, n in pairs), "loaded_at_init": loaded}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zip", type=Path, default=ZIP, help="the artifact (default dist/gate-lambda.zip)")
    parser.add_argument("--runs", type=int, default=9, help="pairs of imports (default 9)")
    args = parser.parse_args(argv)
    python312 = find_python312()
    if python312 is None:
        raise SystemExit("python3.12 not found (set PYTHON312): the Lambda runtime's interpreter is needed")
    if not args.zip.is_file():
        raise SystemExit(f"{args.zip} not found: build it first (bash lambda/build.sh)")
    with tempfile.TemporaryDirectory() as folder:
        with zipfile.ZipFile(args.zip) as z:
            z.extractall(folder)
        result = measure(python312, Path(folder), aws_sdk(), args.runs)
    ratios = result["ratios"]
    print(f"cold import of the handler: {statistics.median(ratios):.1f}x a bare `import numpy` "
          f"(median of {len(ratios)} pairs; min {ratios[0]:.1f}x, max {ratios[-1]:.1f}x)")
    print(f"  medians: handler {result['handler_s']:.2f} s, numpy {result['numpy_s']:.2f} s")
    print(f"  loaded at init, though only a fit or a fetch needs them: {', '.join(result['loaded_at_init']) or 'none'}")
    return 1 if result["loaded_at_init"] else 0


if __name__ == "__main__":
    sys.exit(main())
