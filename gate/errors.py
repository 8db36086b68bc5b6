"""Errors that mean "could not judge". Every one of them maps to exit code 4 and never to a pass."""


QUOTE_LIMIT = 200  # characters of a user's value an error message quotes


def quoted(value: object, limit: int = QUOTE_LIMIT) -> str:
    """A user's value as an error message quotes it: its repr, cut to `limit` characters (a 10 MB
    policy field stays a short line)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


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


class CaseError(GateError):
    """A recorded case folder is missing or malformed."""


class StoreError(GateError):
    """The evaluation store could not be read or written."""


class ReleaseError(GateError):
    """The release cannot be judged as asked: a bad name, a deploy time that contradicts the one
    registered, a canary window that is over."""


class ReportError(GateError):
    """The report could not be built or published."""
