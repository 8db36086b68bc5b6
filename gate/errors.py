"""Errors that mean "could not judge". Every one of them maps to exit code 4 and never to a pass."""

from __future__ import annotations

from typing import Any


QUOTE_LIMIT = 200  # characters of a user's value an error message quotes


def quoted(value: object, limit: int = QUOTE_LIMIT) -> str:
    """A user's value as an error message quotes it: its repr, cut to `limit` characters (a 10 MB
    policy field stays a short line)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def _type_tag(part: object) -> bool:
    """A step of a pydantic error location that names a type tried, not a field (a union's
    `dict[str,any]`, `str`): the user never wrote it."""
    return isinstance(part, str) and (part.startswith(("dict[", "list[", "function-")) or part == "str")


def validation_problems(error: Any, where: str = "", root: str = "value") -> str:
    """A pydantic ValidationError as one line a user can act on: per problem, the field's path
    under `where` (`source.options.timeout`), the message, and the value given (quoted)."""
    parts = []
    for e in error.errors():
        field = ".".join(str(p) for p in e["loc"] if not _type_tag(p))
        place = ".".join(p for p in (where, field) if p) or root
        value = e.get("input")
        shown = "" if isinstance(value, (dict, list)) or value is None else f" (got {quoted(value)})"
        parts.append(f"{place}: {e['msg'].removeprefix('Value error, ')}{shown}")
    return "; ".join(dict.fromkeys(parts))


class GateError(Exception):
    """The gate could not judge: the message is meant for the user, one line, no traceback.

    Messages quote user input (policy keys, release names, answers of a source): control
    characters in them are shown escaped, so a message stays one line and cannot forge others."""

    def __init__(self, message: object = "") -> None:
        text = str(message)
        if not text.isprintable():
            text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
        super().__init__(text)


class PolicyError(GateError):
    """The policy file is missing, unreadable or invalid."""


class SourceError(GateError):
    """A metric source failed (unreachable, refused, malformed answer) after its retries."""


class InputError(GateError):
    """A value given to a command (an option, a field of the Lambda's event) is outside what the
    gate can work with: the request is wrong, asking again will not help (the Lambda: 400)."""


class CaseError(GateError):
    """A recorded case folder is missing or malformed."""


class StoreError(GateError):
    """The evaluation store could not be read or written."""


class ReleaseError(GateError):
    """The release cannot be judged as asked: a bad name, a deploy time that contradicts the one
    registered, a canary window that is over."""


class ReportError(GateError):
    """The report could not be built or published."""


class CrashError(GateError):
    """The gate itself failed while judging (a bug, or data it could not handle): could not judge,
    recorded as an error like any other, never a traceback with nothing recorded (and never a pass)."""
