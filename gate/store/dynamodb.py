"""The evaluation store in DynamoDB, for Lambda: the same `Store` as `gate.store.sqlite`.

One table (its name from `GATE_STORE_TABLE`), partition key `release`, sort key `sk`:

* `release`                       the release itself: its deploy time and info (one per release)
* `eval#<evaluated_at>#<nanos>`   one evaluation (verdict or error), in time order
* `event#<nanos>`                 anything else: promote, rollback, notification
* `traffic#<nanos>`               a traffic weight change of `gate rollout`, in the order made

Every item carries `expires_at` (epoch seconds), the table's TTL attribute, so the history of old
releases goes away by itself (`GATE_STORE_TTL_DAYS`, 90 by default). The release item's is moved
to each record's as it is written, so that it never expires before the records of its deploys
(a release whose item went away is registered anew, numbered after the deploys its records name:
gate.lifecycle.highest_deploy). Payloads are JSON strings:
DynamoDB has no float type and the payload is only ever read back whole.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from gate.aws import error_code, error_message, make_client
from gate.errors import StoreError
from gate.lifecycle import REDEPLOY_EVENT, release_record, stored_json, traffic_record
from gate.settings import current_settings
from gate.store.base import Registry
from gate.verdict import Verdict

log = logging.getLogger(__name__)

RELEASE_SK = "release"
EVALUATION_PREFIX = "eval#"
EVENT_PREFIX = "event#"
TRAFFIC_PREFIX = "traffic#"
DEFAULT_TTL_DAYS = 90
MAX_TTL_DAYS = 36_500  # a century: past that, an expiry is a number DynamoDB refuses, not a policy


def ttl_seconds(days: str | float | None) -> int:
    """How long an item is kept, from GATE_STORE_TTL_DAYS (None: the default): a positive, finite
    number of days. Zero or less would write every item already expired (DynamoDB deletes the
    release being judged), so it is refused like a value that is not a number, naming the setting."""
    if days is None or days == "":
        days = DEFAULT_TTL_DAYS
    try:
        value = float(days)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= MAX_TTL_DAYS) or int(value * 86400) < 1:
        raise StoreError(f"GATE_STORE_TTL_DAYS: {str(days)[:40]!r} is not a number of days between 0 (excluded) "
                         f"and {MAX_TTL_DAYS}: how long the store keeps a release's records (default "
                         f"{DEFAULT_TTL_DAYS})")
    return int(value * 86400)


class DynamoStore(Registry):
    def __init__(self, table: str, *, ttl_days: float | None = None, client: Any = None):
        self.table = table
        self.ttl_seconds = ttl_seconds(ttl_days if ttl_days is not None else current_settings().store_ttl_days)
        try:
            self.client = client or make_client("dynamodb", raw_errors=True)
        except BotoCoreError as e:
            raise StoreError(f"cannot open the DynamoDB store {table}: {e}") from None

    # -- low level: every AWS fault becomes a StoreError (could not judge), with no traceback
    def _call(self, operation: str, **kwargs: Any) -> dict:
        try:
            if operation != "transact_write_items":  # a transaction names the table in each item
                kwargs["TableName"] = self.table
            return getattr(self.client, operation)(**kwargs)
        except ClientError as e:
            code = error_code(e)
            if code == "ConditionalCheckFailedException" or _lost_condition(e):
                raise
            raise StoreError(f"DynamoDB store {self.table}: {operation} failed: {code}: {error_message(e) or e}") from None
        except BotoCoreError as e:
            raise StoreError(f"DynamoDB store {self.table}: {operation} failed: {e}") from None

    def _expires_at(self) -> dict:
        return {"N": str(int(time.time()) + self.ttl_seconds)}

    def _query(self, release: str, prefix: str) -> list[dict]:
        items, start = [], None
        while True:
            page = self._call(
                "query",
                KeyConditionExpression="#r = :r AND begins_with(sk, :p)",
                ExpressionAttributeNames={"#r": "release"},
                ExpressionAttributeValues={":r": {"S": release}, ":p": {"S": prefix}},
                ConsistentRead=True,
                **({"ExclusiveStartKey": start} if start else {}),
            )
            items.extend(page.get("Items", []))
            start = page.get("LastEvaluatedKey")
            if not start:
                return items

    @property
    def label(self) -> str:
        return f"DynamoDB store {self.table}"

    # -- the Store protocol
    def _register(self, release: str, deployed_at: int, info: dict) -> None:
        try:
            self._call(
                "put_item",
                Item={
                    "release": {"S": release},
                    "sk": {"S": RELEASE_SK},
                    "deployed_at": {"N": str(int(deployed_at))},
                    "info": {"S": json.dumps(info)},
                    "created_at": {"N": repr(time.time())},
                    "expires_at": self._expires_at(),
                },
                # The first registration wins, as in SQLite's INSERT OR IGNORE.
                ConditionExpression="attribute_not_exists(sk)",
            )
        except ClientError:
            pass  # already registered: keep its deploy time

    def _replace_deploy(self, release: str, deployed_at: int, info: dict, previous: int, detail: dict) -> None:
        update = {
            "TableName": self.table,
            "Key": {"release": {"S": release}, "sk": {"S": RELEASE_SK}},
            "UpdateExpression": "SET deployed_at = :d, info = :i, created_at = :c, expires_at = :e",
            # Only the deploy we saw: a concurrent restart wins once, as a registration does.
            "ConditionExpression": "deployed_at = :p",
            "ExpressionAttributeValues": {":d": {"N": str(int(deployed_at))}, ":i": {"S": json.dumps(info)},
                                          ":c": {"N": repr(time.time())}, ":e": self._expires_at(),
                                          ":p": {"N": str(int(previous))}},
        }
        # One transaction, as in SQLite: the new deploy time never lands without the event that
        # keeps the previous deploy's record.
        event = {"TableName": self.table, "Item": self._event_item(release, REDEPLOY_EVENT, detail)}
        try:
            self._call("transact_write_items", TransactItems=[{"Update": update}, {"Put": event}])
        except ClientError:
            pass  # restarted (or removed) by someone else meanwhile: report what is registered now

    def release(self, release: str) -> dict | None:
        item = self._call(
            "get_item", Key={"release": {"S": release}, "sk": {"S": RELEASE_SK}}, ConsistentRead=True
        ).get("Item")
        if item is None:
            return None
        deployed_at = item.get("deployed_at")
        return release_record(self.label, release,
                              deployed_at.get("N", deployed_at) if isinstance(deployed_at, dict) else None,
                              item.get("info", {}).get("S"))

    def _put_record(self, release: str, item: dict) -> None:
        """A record of the release, then the release item's expiry moved to the record's (only
        later, never earlier: a process with a longer TTL keeps its own; a release not registered,
        e.g. an error recorded before its registration, has no item to keep)."""
        self._call("put_item", Item=item)
        try:
            self._call("update_item", Key={"release": {"S": release}, "sk": {"S": RELEASE_SK}},
                       UpdateExpression="SET expires_at = :e",
                       ConditionExpression="attribute_exists(sk) AND (attribute_not_exists(expires_at) "
                                           "OR expires_at < :e)",
                       ExpressionAttributeValues={":e": item["expires_at"]})
        except ClientError:
            pass  # not registered, or it already expires as late: nothing to move
        except StoreError as e:
            # The record is written: told it was not, a caller would judge and announce the moment
            # again (review). The expiry is best effort: a new deploy is numbered from the records
            # themselves (lifecycle.highest_deploy), never from the release item.
            log.warning("the release item's expiry was not moved to its record's: %s", e)

    def _put_evaluation(self, release: str, at: int, verdict: str, final: bool, reason: str, payload: dict) -> None:
        self._put_record(
            release,
            {
                "release": {"S": release},
                "sk": {"S": f"{EVALUATION_PREFIX}{int(at):012d}#{time.time_ns():020d}"},
                "evaluated_at": {"N": str(int(at))},
                "verdict": {"S": verdict},
                "final": {"BOOL": bool(final)},
                "reason": {"S": reason},
                "payload": {"S": json.dumps(payload)},
                "recorded_at": {"N": repr(time.time())},
                "expires_at": self._expires_at(),
            },
        )

    def record(self, verdict: Verdict) -> None:
        self._put_evaluation(verdict.release, verdict.evaluated_at, verdict.verdict, verdict.final,
                             verdict.reason, verdict.to_dict())

    def record_error(self, release: str, at: int, message: str) -> None:
        self._put_evaluation(release, at, "error", False, message, {})

    def record_event(self, release: str, kind: str, detail: dict) -> None:
        self._put_record(release, self._event_item(release, kind, detail))

    def _event_item(self, release: str, kind: str, detail: dict) -> dict:
        return {
            "release": {"S": release},
            "sk": {"S": f"{EVENT_PREFIX}{time.time_ns():020d}"},
            "kind": {"S": kind},
            "detail": {"S": json.dumps(detail)},
            "recorded_at": {"N": repr(time.time())},
            "expires_at": self._expires_at(),
        }

    def evaluations(self, release: str) -> list[dict]:
        what = f"DynamoDB store {self.table}: an evaluation of {release!r}"
        return [
            {"evaluated_at": int(i["evaluated_at"]["N"]), "verdict": i["verdict"]["S"], "final": i["final"]["BOOL"],
             "reason": i["reason"]["S"], "payload": stored_json(i["payload"]["S"], what),
             "recorded_at": float(i.get("recorded_at", {}).get("N", 0))}
            for i in self._query(release, EVALUATION_PREFIX)  # sorted by sk: time, then insertion
        ]

    def events(self, release: str) -> list[dict]:
        what = f"DynamoDB store {self.table}: an event of {release!r}"
        return [
            {"kind": i["kind"]["S"], "detail": stored_json(i["detail"]["S"], what),
             "recorded_at": float(i["recorded_at"]["N"])}
            for i in self._query(release, EVENT_PREFIX)
        ]

    # -- traffic steps (gate rollout): one item per weight change, in the order they were made
    def record_traffic(self, release: str, change: dict) -> None:
        self._put_record(release, {
            "release": {"S": release},
            "sk": {"S": f"{TRAFFIC_PREFIX}{time.time_ns():020d}"},
            "step": {"N": str(int(change["step"]))},
            "detail": {"S": json.dumps(change)},
            "recorded_at": {"N": repr(time.time())},
            "expires_at": self._expires_at(),
        })

    def traffic(self, release: str) -> list[dict]:
        return [traffic_record(f"DynamoDB store {self.table}, item {i.get('sk', {}).get('S')}", release,
                               (i.get("detail") or {}).get("S"))
                for i in self._query(release, TRAFFIC_PREFIX)]


def _lost_condition(error: ClientError) -> bool:
    """A transaction cancelled only because a condition did not hold (someone else wrote first)."""
    if error_code(error) != "TransactionCanceledException":
        return False
    reasons = [r.get("Code") for r in error.response.get("CancellationReasons", [])]
    return "ConditionalCheckFailed" in reasons and set(reasons) <= {"ConditionalCheckFailed", "None", None}
