"""Evaluation history: every evaluation, error and action of every release.

SQLite by default (`gate.store.sqlite`); DynamoDB in AWS (`gate.store.dynamodb`). Both implement
`gate.store.base.Store`, and share its rules of registering and restarting a release.
"""

from __future__ import annotations

from pathlib import Path

from gate.settings import current_settings
from gate.store.base import BestEffort, Store
from gate.store.sqlite import DEFAULT_PATH, SqliteStore

__all__ = ["DEFAULT_PATH", "BestEffort", "SqliteStore", "Store", "open_store"]


def open_store(path: str | Path | None = None) -> Store:
    """The store for this environment: DynamoDB when `GATE_STORE_TABLE` names a table, else SQLite."""
    table = current_settings().store_table
    if table and path is None:
        from gate.store.dynamodb import DynamoStore  # only in AWS

        return DynamoStore(table)
    return SqliteStore(path)
