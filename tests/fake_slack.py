"""A local stand-in for a Slack incoming webhook: a real HTTP server on 127.0.0.1.

It records every request it receives (path and JSON body) and answers from a script of
responses: e.g. `[(429, {"Retry-After": "1"}), (200, {})]` answers 429 once, then 200; the last
entry repeats. Slack answers a taken message with `200 ok`, a rate limit with 429 and a
`Retry-After` header. `trickle="headers"` (or `"body"`) answers 200 but sends its header lines (or
its body) a byte at a time, never finishing: a receiver that would hold its caller for ever. A GET
(what a client following a redirect sends) is recorded too and answered 200.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET_PATH = "/services/T000TEST/B000TEST/s3cr3tWebhookToken"


class FakeSlack:
    def __init__(self, script: list[tuple[int, dict]] | None = None, trickle: str | None = None):
        self.script = list(script or [(200, {})])
        self.trickle = trickle
        self._stop = threading.Event()
        self.requests: list[dict] = []  # every request: {"path", "body" (parsed JSON or raw text), "raw", "headers"}
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode("utf-8")
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw
                with fake._lock:
                    # raw and headers: what a signed webhook's receiver checks (tests/test_webhook.py)
                    fake.requests.append({"path": self.path, "method": "POST", "body": body, "raw": raw.encode("utf-8"),
                                          "headers": dict(self.headers.items())})
                    index = min(len(fake.requests) - 1, len(fake.script) - 1)
                    status, headers = fake.script[index]
                if fake.trickle:
                    self._trickle()
                    return
                text = b"ok" if status == 200 else (b"rate_limited" if status == 429 else b"internal_error")
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def do_GET(self):  # noqa: N802
                with fake._lock:
                    fake.requests.append({"path": self.path, "method": "GET", "body": None, "raw": b"",
                                          "headers": dict(self.headers.items())})
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def _trickle(self):
                if fake.trickle == "headers":
                    self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                    endless = iter(lambda: b"X-Slow: a\r\n", None)
                else:
                    self.send_response(200)
                    self.send_header("Content-Length", "1000000")
                    self.end_headers()
                    endless = iter(lambda: b"." * 10, None)
                try:
                    for chunk in endless:
                        for byte in chunk:
                            if fake._stop.wait(0.1):
                                return
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                except OSError:
                    pass  # the client gave up and cut the connection

            def log_message(self, *args):  # keep test output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}{SECRET_PATH}"

    @property
    def payloads(self) -> list:
        return [r["body"] for r in self.requests]

    def __enter__(self) -> FakeSlack:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
