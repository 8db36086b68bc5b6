"""Cache of what the judge learned from a release's history, across processes.

The seasonal model is learned once per release; `gate check` runs once per interval in a new
process (Jenkins, cron, Lambda), so the reference is kept on disk under a key made of the
release, its deploy time and the policy: a changed policy learns again. Files are pickles
written by the gate itself into its own folder (`GATE_CACHE_DIR`, default `.gate/cache`,
`/tmp` in Lambda); a cache that cannot be read or written is only slower, never wrong.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Cache(Protocol):
    """Where an evaluation keeps what the judge learned (`ReferenceCache` on disk); a miss is None."""

    def key(self, release: str, deployed_at: int, policy_json: str, scopes: tuple) -> str: ...

    def load(self, key: str) -> Any | None: ...

    def save(self, key: str, reference: Any) -> None: ...


class ReferenceCache:
    def __init__(self, folder: str | Path | None = None):
        self.folder = Path(folder or os.environ.get("GATE_CACHE_DIR") or ".gate/cache")

    @staticmethod
    def key(release: str, deployed_at: int, policy_json: str, scopes: tuple) -> str:
        text = "\n".join([release, str(deployed_at), policy_json, repr(scopes)])
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def load(self, key: str) -> Any | None:
        path = self.folder / f"{key}.pickle"
        try:
            with path.open("rb") as f:
                return pickle.load(f)
        except FileNotFoundError:
            return None
        except Exception as e:  # noqa: BLE001 - a broken cache entry is relearned, not fatal
            log.warning("ignoring unreadable cached reference %s: %s", path, e)
            return None

    def save(self, key: str, reference: Any) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            # Write then rename: a process killed mid-write never leaves half a pickle behind.
            with tempfile.NamedTemporaryFile("wb", dir=self.folder, delete=False, suffix=".tmp") as f:
                pickle.dump(reference, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(f.name, self.folder / f"{key}.pickle")
        except Exception as e:  # noqa: BLE001
            log.warning("could not cache the reference in %s: %s", self.folder, e)
