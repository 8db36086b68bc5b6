"""`aws ... lambda invoke` for the Jenkins step's tests: the real lambda/handler.py, one new process
per invocation (a cold container), on a shared SQLite store, at moments the test sets.

    python tests/fake_aws_lambda.py [--region R] lambda invoke ... --payload fileb://EVENT OUT

Writes the handler's answer to OUT and the invocation's metadata to stdout, as the AWS CLI does.
Environment: FAKE_LAMBDA_PLAN, a JSON list with one entry per invocation, consumed in order:
`{"at": EPOCH, "others": [FIELDS, ...]}` (the clock of that invocation, and the events other
builds of the pipeline send at that moment first: this invocation's event with FIELDS set, e.g.
another build's deployed_at); none left: exit 255, as a failed CLI. FAKE_LAMBDA_LOG: one JSON line per event judged, `{"by": "step" | "other", "event", "answer"}`.
The policy's `simulate` source is let through (the Lambda refuses demo sources): it makes data at
any moment, which the moved clock needs.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def payload_and_output(argv: list[str]) -> tuple[Path, Path]:
    if "invoke" not in argv or "--payload" not in argv:
        sys.exit(f"fake aws: only `lambda invoke --payload fileb://FILE OUT`, got {argv}")
    payload = argv[argv.index("--payload") + 1]
    return Path(payload.removeprefix("fileb://")), Path(argv[-1])


def next_moment(plan_file: Path) -> dict | None:
    plan = json.loads(plan_file.read_text())
    if not plan:
        return None
    plan_file.write_text(json.dumps(plan[1:]))
    return plan[0]


def main(argv: list[str]) -> int:
    event_file, output = payload_and_output(argv)
    entry = next_moment(Path(os.environ["FAKE_LAMBDA_PLAN"]))
    if entry is None:
        print("fake aws: no invocation planned", file=sys.stderr)
        return 255
    from tests.lambda_module import FakeContext, import_handler

    handler = import_handler("fake_lambda_handler")
    handler.DEMO_SOURCES = handler.DEMO_SOURCES - {"simulate"}
    moment = float(entry["at"])
    handler.time = SimpleNamespace(time=lambda: moment, perf_counter=time.perf_counter)
    log = Path(os.environ["FAKE_LAMBDA_LOG"])
    event = json.loads(event_file.read_text())
    # Another build of the same pipeline sends the same event, with its own fields (deployed_at).
    judged = [("other", {**event, **fields}) for fields in entry.get("others", [])]
    judged.append(("step", event))
    metadata, sys.stdout = sys.stdout, sys.stderr  # the handler's logs and metrics: not the CLI's output
    try:
        for by, event in judged:
            answer = handler.lambda_handler(event, FakeContext())
            with log.open("a") as lines:
                lines.write(json.dumps({"by": by, "event": event, "answer": answer}) + "\n")
    finally:
        sys.stdout = metadata
    output.write_text(json.dumps(answer))
    print(json.dumps({"StatusCode": 200, "ExecutedVersion": "$LATEST"}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
