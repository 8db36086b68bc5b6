"""urllib3 pools for the gate's own HTTP clients (the Datadog client, the webhook): an answer's
status line and headers within one deadline."""

from __future__ import annotations

from typing import Any


def header_deadline_pools() -> dict[str, type]:
    """urllib3 pools whose connections wait for an answer's status line and headers at most their
    read timeout in all, not per read: a server trickling its headers a byte at a time would
    otherwise hold the gate for ever (the body's deadline is the caller's: the Datadog source's
    _Bounded). At the deadline the socket is shut down, which wakes the blocked read, and the wait
    ends as a timeout (retried within the budget like any other)."""
    import threading

    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    def with_header_deadline(base: type) -> type:
        class Connection(base):
            def getresponse(self, *args: Any, **kwargs: Any) -> Any:
                seconds, sock = self.timeout, self.sock
                if not isinstance(seconds, (int, float)) or sock is None:
                    return super().getresponse(*args, **kwargs)
                late = threading.Event()
                watchdog = threading.Timer(seconds, _cut, args=(sock, late))
                watchdog.daemon = True
                watchdog.start()
                try:
                    response = super().getresponse(*args, **kwargs)
                except Exception:
                    if late.is_set():
                        raise TimeoutError(f"no status line and headers within {seconds:g}s") from None
                    raise
                finally:
                    watchdog.cancel()
                if late.is_set():  # headers cut short by the shutdown may still parse
                    response.close()
                    raise TimeoutError(f"no status line and headers within {seconds:g}s")
                return response

        return Connection

    class Pool(HTTPConnectionPool):
        ConnectionCls = with_header_deadline(HTTPConnection)

    class SecurePool(HTTPSConnectionPool):
        ConnectionCls = with_header_deadline(HTTPSConnection)

    return {"http": Pool, "https": SecurePool}


def _cut(sock: Any, late: Any) -> None:
    late.set()
    try:
        sock.shutdown(2)  # socket.SHUT_RDWR
    except OSError:
        pass  # already closed: nothing waits on it
