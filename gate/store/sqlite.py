"""The evaluation store in SQLite: a file, its path from `GATE_STORE` or `.gate/gate.sqlite`.

Writes are single transactions, so a process killed mid-evaluation leaves either the whole record
or nothing.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from gate.errors import StoreError
from gate.lifecycle import REDEPLOY_EVENT, release_record, stored_json, traffic_record
from gate.settings import current_settings
from gate.store.base import Registry
from gate.verdict import Verdict

DEFAULT_PATH = ".gate/gate.sqlite"


SCHEMA = """
CREATE TABLE IF NOT EXISTS releases (
    release TEXT PRIMARY KEY,
    deployed_at INTEGER NOT NULL,
    info TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS evaluations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    release TEXT NOT NULL,
    evaluated_at INTEGER NOT NULL,
    verdict TEXT NOT NULL,
    final INTEGER NOT NULL,
    reason TEXT NOT NULL,
    payload TEXT NOT NULL,
    recorded_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS evaluations_release ON evaluations (release, evaluated_at);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    release TEXT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    recorded_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_release ON events (release);
CREATE TABLE IF NOT EXISTS traffic (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    release TEXT NOT NULL,
    step INTEGER NOT NULL,
    set_at INTEGER NOT NULL,
    detail TEXT NOT NULL,
    recorded_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS traffic_release ON traffic (release);
"""


class SqliteStore(Registry):
    def __init__(self, path: str | Path | None = None):
        self.path = Path(path or current_settings().store_path or DEFAULT_PATH)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"cannot open the store {self.path}: {e}") from None

    def _connect(self) -> sqlite3.Connection:
        # One short-lived connection per operation: safe across threads and processes;
        # the timeout waits out another writer instead of failing.
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.execute("PRAGMA busy_timeout = 30000")
        db.row_factory = sqlite3.Row
        return db

    def _write(self, sql: str, params: tuple) -> None:
        try:
            db = self._connect()
            try:
                db.execute("BEGIN IMMEDIATE")
                db.execute(sql, params)
                db.execute("COMMIT")
            finally:
                db.close()
        except sqlite3.Error as e:
            raise StoreError(f"cannot write to the store {self.path}: {e}") from None

    def _read(self, sql: str, params: tuple) -> list[sqlite3.Row]:
        try:
            db = self._connect()
            try:
                return db.execute(sql, params).fetchall()
            finally:
                db.close()
        except sqlite3.Error as e:
            raise StoreError(f"cannot read the store {self.path}: {e}") from None

    @property
    def label(self) -> str:
        return f"store {self.path}"

    def _register(self, release: str, deployed_at: int, info: dict) -> None:
        self._write(
            "INSERT OR IGNORE INTO releases (release, deployed_at, info, created_at) VALUES (?, ?, ?, ?)",
            (release, int(deployed_at), json.dumps(info), time.time()),
        )

    def _replace_deploy(self, release: str, deployed_at: int, info: dict, previous: int, detail: dict) -> None:
        try:
            db = self._connect()
            try:
                db.execute("BEGIN IMMEDIATE")
                changed = db.execute(
                    "UPDATE releases SET deployed_at = ?, info = ?, created_at = ? WHERE release = ? AND deployed_at = ?",
                    (int(deployed_at), json.dumps(info), time.time(), release, int(previous)),
                ).rowcount
                if changed:
                    db.execute("INSERT INTO events (release, kind, detail, recorded_at) VALUES (?, ?, ?, ?)",
                               (release, REDEPLOY_EVENT, json.dumps(detail), time.time()))
                db.execute("COMMIT")
            finally:
                db.close()
        except sqlite3.Error as e:
            raise StoreError(f"cannot write to the store {self.path}: {e}") from None

    def release(self, release: str) -> dict | None:
        rows = self._read("SELECT release, deployed_at, info FROM releases WHERE release = ?", (release,))
        if not rows:
            return None
        return release_record(self.label, release, rows[0]["deployed_at"], rows[0]["info"])

    def record(self, verdict: Verdict) -> None:
        self._write(
            "INSERT INTO evaluations (release, evaluated_at, verdict, final, reason, payload, recorded_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (verdict.release, verdict.evaluated_at, verdict.verdict, int(verdict.final),
             verdict.reason, json.dumps(verdict.to_dict()), time.time()),
        )

    def record_error(self, release: str, at: int, message: str) -> None:
        self._write(
            "INSERT INTO evaluations (release, evaluated_at, verdict, final, reason, payload, recorded_at)"
            " VALUES (?, ?, 'error', 0, ?, '{}', ?)",
            (release, int(at), message, time.time()),
        )

    def record_event(self, release: str, kind: str, detail: dict) -> None:
        self._write(
            "INSERT INTO events (release, kind, detail, recorded_at) VALUES (?, ?, ?, ?)",
            (release, kind, json.dumps(detail), time.time()),
        )

    def evaluations(self, release: str) -> list[dict]:
        rows = self._read(
            "SELECT evaluated_at, verdict, final, reason, payload, recorded_at FROM evaluations"
            " WHERE release = ? ORDER BY evaluated_at, id",
            (release,),
        )
        what = f"store {self.path}: an evaluation of {release!r}"
        return [
            {"evaluated_at": r["evaluated_at"], "verdict": r["verdict"], "final": bool(r["final"]),
             "reason": r["reason"], "payload": stored_json(r["payload"], what), "recorded_at": r["recorded_at"]}
            for r in rows
        ]

    def events(self, release: str) -> list[dict]:
        rows = self._read(
            "SELECT kind, detail, recorded_at FROM events WHERE release = ? ORDER BY id", (release,)
        )
        what = f"store {self.path}: an event of {release!r}"
        return [{"kind": r["kind"], "detail": stored_json(r["detail"], what), "recorded_at": r["recorded_at"]}
                for r in rows]

    # -- traffic steps (gate rollout): one row per weight change, in the order they were made
    def record_traffic(self, release: str, change: dict) -> None:
        self._write(
            "INSERT INTO traffic (release, step, set_at, detail, recorded_at) VALUES (?, ?, ?, ?, ?)",
            (release, int(change["step"]), int(change["set_at"]), json.dumps(change), time.time()),
        )

    def traffic(self, release: str) -> list[dict]:
        rows = self._read("SELECT id, detail FROM traffic WHERE release = ? ORDER BY id", (release,))
        return [traffic_record(f"store {self.path}, traffic row {r['id']}", release, r["detail"]) for r in rows]

