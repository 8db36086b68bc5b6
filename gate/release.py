"""Release names and moments: what a release may be called, the file name it is written under,
and how a moment is read and written. Shared by every front door, source, store and output.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

MAX_RELEASE = 200
LAST_MOMENT = 253402300799  # 9999-12-31T23:59:59Z: the last moment `iso` can write


def release_problem(name: object) -> str | None:
    """What is wrong with a release name, or None: 1 to 200 printable characters, no control
    characters (a newline would forge log lines, an escape sequence rewrite the terminal), not
    starting with `-` (`--help` put where a command expects the release would be read as an
    option: help printed, exit 0, a pass)."""
    if not isinstance(name, str):
        return f"must be a string, got {type(name).__name__}"
    if not name:
        return "must not be empty"
    if len(name) > MAX_RELEASE:
        return f"must be at most {MAX_RELEASE} characters, got {len(name)}"
    if not name.isprintable():
        return "must be printable characters only (no newline, tab, escape or other control character)"
    if name != name.strip():
        return "must not start or end with a space"
    if name.startswith("-"):
        return "must not start with '-' (a command would read it as an option)"
    return None


def check_release(name: str) -> str:
    """The release name itself, or ReleaseError naming what is wrong with it."""
    from gate.errors import ReleaseError, quoted

    problem = release_problem(name)
    if problem is not None:
        shown = f" {quoted(name, 60)}" if isinstance(name, str) else ""
        raise ReleaseError(f"release{shown}: {problem}")
    return name


def iso(epoch: int | float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> int:
    """ISO 8601 (with Z or an offset) or epoch seconds -> epoch seconds.

    Anything else (not a string, `nan`, `yesterday`, month 13, a moment past year 9999) is a
    ValueError that says what a moment looks like. A time without its zone is refused too: read
    as UTC, a local time would move the canary's window by hours."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a moment: ISO 8601 text like 2024-05-01T10:00:00Z, or epoch seconds")
    stripped = text.strip()
    naive = False
    try:
        if stripped.lstrip("-").isdigit() and stripped.isascii():
            seconds = int(stripped)
        else:
            moment = datetime.fromisoformat(stripped.replace("Z", "+00:00"))
            naive = moment.tzinfo is None
            seconds = int(moment.timestamp())
    except (ValueError, OverflowError, OSError):
        seconds = None
    if naive:
        raise ValueError(f"{text[:60]!r} has no time zone: add Z for UTC or an offset like +02:00 "
                         "(e.g. 2024-05-01T10:00:00Z)")
    if seconds is None or not 0 <= seconds <= LAST_MOMENT:
        raise ValueError(f"{text[:60]!r} is not a moment: ISO 8601 like 2024-05-01T10:00:00Z, or epoch seconds "
                         "(1970 to 9999)")
    return seconds


def release_name(value: object) -> object:
    """For pydantic models (the Lambda event): a string that is a good release name passes,
    anything else that is a string raises ValueError saying why; non-strings are left to the type."""
    if isinstance(value, str) and 0 < len(value) <= MAX_RELEASE:  # the length is the field's to say
        problem = release_problem(value)
        if problem is not None:
            raise ValueError(problem)
    return value


def file_name(release: str) -> str:
    """A release name as a file name or object key: no path separators, no dot-dot.

    A name that had to be altered gets a short hash of the exact name, so that `web/1.2`,
    `web_1.2` and `web 1.2` never share (and overwrite) one file. The Jenkins step
    (jenkins/vars/canaryGate.groovy, `fileName`) writes the same rule in Groovy."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", release).strip("._") or "release"
    if name == release and len(name) <= 150:
        return name
    digest = hashlib.sha256(release.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{name[:139]}-{digest}"
