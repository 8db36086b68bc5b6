"""The request budget of a metrics provider's organisation, shared by every evaluation running at
once (every `gate check` of a machine, every container of the Lambda).

Datadog limits its query endpoints per organisation and says where the limit stands in every
answer (`X-RateLimit-Limit`, `-Period`, `-Remaining`, `-Reset`). Each evaluation, alone, only knew
its own answers: a few hundred canaries starting at once spent the organisation's requests on
history, were refused (429) and retried, and came late or not at all. Here the last word of the
provider is kept where every evaluation sees it (the provider's window: requests left, when it
resets), and one request is taken from it before each request is sent. An empty window means
waiting for its reset, within the look's deadline (its interval, at most 100 s): a busy hour
delays requests instead of failing them. A look that would have to wait past its deadline answers could not judge,
saying so (`BudgetSpent`, a `SourceError`), never a pass.

One interface (`RequestBudget`), the rules written once (`taken`, `after`, applied by
`SharedBudget`), one implementation per backend, each giving one atomic read-modify-write
(`_update`): `FileBudget` (a JSON file under a lock: the CLI, `GATE_BUDGET_DIR`, default `.gate`)
and `DynamoBudget` (one item in the stack's table, `GATE_STORE_TABLE`, written under a condition
on its version; its common cases are single conditional updates, so that hundreds of containers
do not queue on one item). Until an answer has been heard the
budget does not hold anything back. A reset is believed up to the window's period, as heard
(`believed`) and as read back (`current`: a window stored by an older build, which believed any
reset, holds nothing back), so that no stored state locks the budget longer than one period. A budget that cannot be read or written holds nothing back
either (logged): it spaces requests out, the source's own retries still handle a 429.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from gate.errors import SourceError
from gate.settings import current_settings

log = logging.getLogger(__name__)

DEFAULT_PERIOD = 60.0  # seconds of a provider's window when it has not said (X-RateLimit-Period)
# The longest window believed: Datadog's periods are seconds to an hour. A reset said to be further
# (an epoch-style value from a proxy) would hold every request back until then, and no answer
# could correct it, none being asked.
MAX_PERIOD = 3600.0


class BudgetSpent(SourceError):
    """The organisation's requests are spent until after the look's deadline: could not judge."""


@dataclass(frozen=True)
class Window:
    """The provider's rate-limit window as last heard: requests left, when it resets (epoch
    seconds), and its size (requests per `period` seconds)."""

    remaining: int
    resets_at: float
    limit: int | None = None
    period: float | None = None


@dataclass(frozen=True)
class Heard:
    """What one answer's X-RateLimit-* headers said (a 429 says 0 remaining)."""

    remaining: int
    reset: float  # seconds until the window resets
    limit: int | None = None
    period: float | None = None


class RequestBudget(Protocol):
    def take(self, now: float, count: int = 1) -> float:
        """Spend `count` requests at `now`, all or none: 0 once taken, else the seconds to wait
        before asking again."""
        ...

    def heard(self, now: float, heard: Heard) -> None:
        """Keep what an answer said of the organisation's window."""
        ...


# -- the rules, once ----------------------------------------------------------------------------


def taken(window: Window | None, now: float, count: int = 1) -> tuple[Window | None, float]:
    """The window after `count` requests are taken at `now` (all or none: a history read in
    several requests reserves them together, so that evaluations starved halfway through their
    history do not spend the organisation's requests for nothing), and the wait (0: taken). More
    than a whole window holds is asked as a whole window."""
    window = current(window, now)
    if window is None:
        return None, 0.0  # nothing heard yet: nothing to hold back
    if now >= window.resets_at:
        if window.limit is None:
            return None, 0.0  # a reset window of unknown size: as if nothing was heard
        window = Window(window.limit, now + (window.period or DEFAULT_PERIOD), window.limit, window.period)
    count = min(count, window.limit or count)
    if window.remaining >= count:
        return replace(window, remaining=window.remaining - count), 0.0
    return window, window.resets_at - now


def after(window: Window | None, now: float, heard: Heard) -> Window:
    """The window once an answer's headers are heard at `now`. In the window we know, the fewer
    requests left wins (other evaluations' requests may be in flight, or answered later); a reset
    later than the known one is a new window of the provider: its own count. The reset is the
    provider's, to the second (Reset is whole seconds: within a second of the known one it is
    the known one, so that answers agreeing with it write nothing)."""
    window = current(window, now)
    heard = believed(heard, window.period if window is not None else None)
    resets_at = now + heard.reset
    limit, period = heard.limit, heard.period
    if window is not None:
        limit, period = limit or window.limit, period or window.period
        if now < window.resets_at and resets_at <= window.resets_at + 1:
            known = window.resets_at if resets_at >= window.resets_at - 1 else resets_at
            return Window(min(window.remaining, heard.remaining), known, limit, period)
    return Window(heard.remaining, resets_at, limit, period)


def believed(heard: Heard, known_period: float | None = None) -> Heard:
    """What is believed of an answer's headers: a period of at most `MAX_PERIOD`, and a reset
    between now and the end of one period (the answer's, else the one known, else `MAX_PERIOD`)."""
    period = min(heard.period, MAX_PERIOD) if heard.period else None
    longest = min(period or known_period or MAX_PERIOD, MAX_PERIOD)
    return replace(heard, reset=min(max(0.0, heard.reset), longest), period=period)


def current(window: Window | None, now: float) -> Window | None:
    """The stored window as believed at `now`: one resetting further away than one period (its
    own, else `MAX_PERIOD`; and a second, Reset being whole seconds) was not kept by these rules
    (an older build's, which believed any reset, or a hand's) and would hold every request back
    until then, no answer being asked to correct it: as if nothing was heard. The next answer
    heard replaces it."""
    if window is not None and window.resets_at > now + (window.period or MAX_PERIOD) + 1:
        return None
    return window


class SharedBudget:
    """The rules over one atomic read-modify-write of the stored window (`_update`)."""

    label = "request budget"

    def _update(self, change: Callable[[Window | None], tuple[Window | None, float]]) -> float:
        """Apply `change` to the stored window atomically (store what it returns, unless None);
        returns its second value."""
        raise NotImplementedError

    def take(self, now: float, count: int = 1) -> float:
        try:
            return self._take(now, count)
        except Exception as e:  # noqa: BLE001 - a budget that fails holds nothing back
            log.warning("%s unusable, not waiting for it: %s", self.label, e)
            return 0.0

    def heard(self, now: float, heard: Heard) -> None:
        try:
            self._heard(now, heard)
        except Exception as e:  # noqa: BLE001
            log.warning("%s unusable, not keeping what the answer said: %s", self.label, e)

    def _take(self, now: float, count: int) -> float:
        return self._update(lambda window: taken(window, now, count))

    def _heard(self, now: float, heard: Heard) -> None:
        self._update(lambda window: (after(window, now, heard), 0.0))


def wait_for_request(budget: RequestBudget, deadline: float, clock: Callable[[], float],
                     sleep: Callable[[float], None], provider: str, count: int = 1) -> float:
    """Take `count` requests from the budget, waiting for them until `deadline` (on `clock`); the
    seconds waited. `BudgetSpent` if they cannot be had by then."""
    waited = 0.0
    while True:
        now = clock()
        wait = budget.take(now, count)
        if not 0 < wait < math.inf:
            return waited  # taken; or a wait that means nothing (NaN, infinite): no reason to hold back
        if now + wait > deadline:
            raise BudgetSpent(budget_spent(provider, f"its window resets in {wait:.0f}s", deadline - now))
        sleep(wait)
        waited += wait


def budget_spent(provider: str, why: str, left: float) -> str:
    """The reason of a look that could not get its data in time: the budget, named."""
    return (f"{provider}: the organisation's request budget (shared by every evaluation) is spent ({why}), "
            f"past this look's deadline ({max(0.0, left):.0f}s left of its interval); could not judge at "
            "this moment, the next look asks again")


# -- the backends -------------------------------------------------------------------------------


def _window(data: dict | None) -> Window | None:
    """A window from its JSON (the file) or its DynamoDB attributes (`{"N": "..."}`); None if there
    is none, or if it is damaged (a value missing, not a number, not finite or out of range: a
    NaN would make every wait NaN): as if nothing was heard."""
    if not data or "remaining" not in data:
        return None
    plain = {k: (v["N"] if isinstance(v, dict) else v) for k, v in data.items() if k in Window.__dataclass_fields__}
    try:
        window = Window(int(plain["remaining"]), float(plain["resets_at"]),
                        int(plain["limit"]) if plain.get("limit") is not None else None,
                        float(plain["period"]) if plain.get("period") is not None else None)
    except (KeyError, TypeError, ValueError, OverflowError):
        return None
    sound = (window.remaining >= 0 and math.isfinite(window.resets_at)
             and (window.limit is None or window.limit > 0)
             and (window.period is None or 0 < window.period <= MAX_PERIOD))
    return window if sound else None


class FileBudget(SharedBudget):
    """The CLI's budget: a JSON file, read and written under an exclusive lock (every `gate` of the
    machine, and every thread of one, sees the same)."""

    def __init__(self, name: str, folder: str | Path | None = None):
        self.path = Path(folder or current_settings().budget_dir or ".gate") / f"budget-{name}.json"
        self.label = f"request budget {self.path}"

    def _update(self, change):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+", encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # released when the file is closed
            f.seek(0)
            text = f.read()
            try:
                window = _window(json.loads(text)) if text.strip() else None
            except (ValueError, TypeError):
                window = None  # a damaged file: as if nothing was heard
            new, result = change(window)
            if new is not None and new != window:
                f.seek(0)
                f.truncate()
                f.write(json.dumps(asdict(new)))
            return result


BUDGET_SK = "budget"


class DynamoBudget(SharedBudget):
    """The Lambda's budget: one item of the stack's table (partition `#budget#<provider>`, sort key
    `budget`: apart from every release's items). Every container spends from it at once, so the
    common cases are one conditional write each, with no read: a request is taken by decrementing
    `remaining` while the window lasts and holds one; an answer lowers it only if it says fewer.
    Anything else (nothing heard yet, a window over or empty) goes through the rules on the item
    read whole and written back under a condition on its version, so that two containers never
    both take the last request."""

    def __init__(self, name: str, table: str, client: Any = None):
        self.table = table
        self.key = {"release": {"S": f"#budget#{name}"}, "sk": {"S": BUDGET_SK}}
        self.client = client or _dynamodb(current_settings().aws_endpoint_url)
        self.label = f"request budget in DynamoDB {table}"

    def _take(self, now: float, count: int) -> float:
        for _ in range(50):
            stored = self._conditional("SET remaining = remaining - :count, version = version + :one",
                                       "remaining >= :count AND resets_at > :now",
                                       {":count": _n(count), ":one": _n(1), ":now": _n(now)})
            if stored is None:
                return 0.0  # taken
            # Empty, over, or never heard: the rules, on the item as it was.
            window = _window(stored)
            new, wait = taken(window, now, count)
            if new is None or wait > 0 or self._replace(stored, new):
                return wait
            # Another container restarted the window first: take from it as the others do.
        raise RuntimeError("too many concurrent updates")

    def _heard(self, now: float, heard: Heard) -> None:
        resets_at = now + believed(heard).reset  # else (another period known) the rules below
        stored = self._conditional(
            "SET remaining = :r, version = version + :one",
            "remaining > :r AND resets_at > :now AND resets_at BETWEEN :early AND :late", {
                ":r": _n(heard.remaining), ":one": _n(1), ":now": _n(now),
                ":early": _n(resets_at - 1), ":late": _n(resets_at + 1)})
        if stored is None or (stored and after(_window(stored), now, heard) == _window(stored)):
            return  # lowered; or nothing to change (the common answer: it agrees)
        super()._heard(now, heard)

    def _conditional(self, update: str, condition: str, values: dict) -> dict | None:
        """One conditional update: None once done, else the item as it was ({} if there is none)."""
        from botocore.exceptions import ClientError

        try:
            self.client.update_item(TableName=self.table, Key=self.key, UpdateExpression=update,
                                    ConditionExpression=condition, ExpressionAttributeValues=values,
                                    ReturnValuesOnConditionCheckFailure="ALL_OLD")
            return None
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return e.response.get("Item") or {}

    def _update(self, change):
        for _ in range(50):  # each lost race means another evaluation moved the window: read again
            item = self.client.get_item(TableName=self.table, Key=self.key, ConsistentRead=True).get("Item") or {}
            new, result = change(_window(item))
            if new is None or new == _window(item) or self._replace(item, new):
                return result
        raise RuntimeError("too many concurrent updates")

    def _replace(self, item: dict, new: Window) -> bool:
        """Write `new` if the item is still `item` (its version; {}: no item yet); False if not."""
        from botocore.exceptions import ClientError

        version = int(item["version"]["N"]) if item else 0
        condition = ({"ConditionExpression": "version = :v", "ExpressionAttributeValues": {":v": _n(version)}}
                     if item else {"ConditionExpression": "attribute_not_exists(sk)"})
        fields = {k: _n(v) for k, v in asdict(new).items() if v is not None}
        try:
            self.client.put_item(TableName=self.table, Item={
                **self.key, **fields, "version": _n(version + 1), "expires_at": _n(int(time.time()) + 86400),
            }, **condition)
            return True
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return False


def _n(value: float) -> dict:
    return {"N": repr(value) if isinstance(value, float) else str(value)}


@lru_cache(maxsize=4)
def _dynamodb(endpoint: str | None) -> Any:
    from gate.aws import make_client

    return make_client("dynamodb", raw_errors=True)  # once per container: a client is slow to build


def shared_budget(name: str) -> RequestBudget:
    """The budget of this environment: the stack's table when `GATE_STORE_TABLE` names one (the
    Lambda, as `gate.store.open_store`), else a file of the machine."""
    table = current_settings().store_table
    return DynamoBudget(name, table) if table else FileBudget(name)
