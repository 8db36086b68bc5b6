"""lambda/handler.py imported in-process, as a fresh Lambda container would, plus a fake context."""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

HANDLER = Path(__file__).resolve().parents[1] / "lambda" / "handler.py"


@dataclass
class FakeContext:
    function_name: str = "canary-gate-analyzer"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:canary-gate-analyzer"
    aws_request_id: str = ""
    log_group_name: str = "/aws/lambda/canary-gate-analyzer"
    log_stream_name: str = "stream"

    def __post_init__(self):
        self.aws_request_id = self.aws_request_id or str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


class CurrentStdout:
    """Whatever sys.stdout is now: pytest swaps it per test, and capfd/capsys read it there."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def import_handler(name: str, *, replays: bool = False) -> ModuleType:
    """A fresh import of the handler module (its caches are per container) under `name`.

    `replays`: the handler judges `replay` policies, which production refuses (DEMO_SOURCES):
    the corpus' recorded cases are these tests' data.

    logging's loggers are process-wide: powertools configures the service's logger once, on the
    first import in the process, with the stdout and POWERTOOLS_LOG_LEVEL of that moment. Here its
    handlers write to the current stdout and its level follows the environment, as in a new
    container, so what the handler logs is captured by the running test whichever test imported
    it first.
    """
    spec = importlib.util.spec_from_file_location(name, HANDLER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as an import would: pydantic resolves the annotations there
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    if replays:
        module.DEMO_SOURCES = module.DEMO_SOURCES - {"replay"}
    service_logger = logging.getLogger(module.SERVICE)
    service_logger.setLevel(os.environ.get("POWERTOOLS_LOG_LEVEL", "INFO").upper())
    for handler in service_logger.handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(CurrentStdout())
    return module
