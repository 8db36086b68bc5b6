"""`gate replay`'s loop: recorded cases replayed one after another (`gate.analysis.replay_case`),
one bad case being that case's error while the others still run, and the exit code the worst
over them, so that one case that could not be judged, or failed, is never hidden."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gate.analysis import ReplayResult, replay_case
from gate.errors import GateError
from gate.policy import Policy
from gate.verdict import EXIT_CODES, EXIT_ERROR

# Worst first: could not judge, fail, undecided, pass.
EXIT_SEVERITY = (EXIT_ERROR, EXIT_CODES["fail"], EXIT_CODES["inconclusive"], EXIT_CODES["pass"])


def worst_exit(code: int | None, new: int) -> int:
    return new if code is None else min((code, new), key=EXIT_SEVERITY.index)


@dataclass
class Replayed:
    """One case's outcome: its replay, or the error that stopped it (one line)."""

    case: Path
    result: ReplayResult | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        if self.result is not None:
            return self.result.to_dict()
        return {"case": self.case.name or str(self.case), "verdict": "error", "error": self.error}


class Replays:
    """The cases replayed in order, as they are iterated (each printed before the next runs), and
    what they add up to: the worst exit code and the count of each outcome."""

    def __init__(self, cases: list[Path], policy: Policy | None):
        self.cases, self.policy = cases, policy
        self.outcomes: dict[str, int] = {}
        self._code: int | None = None

    def __iter__(self) -> Iterator[Replayed]:
        for case in self.cases:
            try:
                result = replay_case(case, self.policy)
            except Exception as e:  # noqa: BLE001 - one bad case is that case's error, the others still run
                message = str(e) if isinstance(e, GateError) else f"{case}: malformed case ({type(e).__name__}: {e})"
                self._count("error", EXIT_ERROR)
                yield Replayed(case, error=message)
                continue
            self._count(result.verdict.verdict, EXIT_CODES[result.verdict.verdict])
            yield Replayed(case, result=result)

    def _count(self, outcome: str, code: int) -> None:
        self._code = worst_exit(self._code, code)
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    @property
    def exit_code(self) -> int:
        """The worst over the cases replayed; could not judge when none was."""
        return EXIT_ERROR if self._code is None else self._code

    def summary(self) -> str:
        counted = ", ".join(f"{self.outcomes[o]} {o}" for o in ("error", "fail", "inconclusive", "pass")
                            if o in self.outcomes)
        return f"{len(self.cases)} cases: {counted} (exit {self.exit_code})"
