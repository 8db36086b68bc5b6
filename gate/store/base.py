"""What every evaluation store is (the `Store` protocol), and the rules of registering and
restarting a release, written once for every store (SQLite, DynamoDB)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from gate.errors import StoreError
from gate.lifecycle import Deploy, belongs, redeploy_detail
from gate.verdict import Verdict


class Store(Protocol):
    def start_release(self, release: str, deployed_at: int, info: dict) -> int:
        """Register a release; returns its deploy time (the first one registered wins: a loser
        gets the winner's, which `gate.lifecycle.register_deploy` judges against its own)."""
        ...

    def restart_release(self, release: str, deployed_at: int, info: dict, previous: int) -> int:
        """A new deploy of a registered release: its deploy time becomes `deployed_at` if it is
        still `previous` (else another process restarted it first); the previous deploy is kept
        in a `redeploy` event. Returns the deploy time now registered."""
        ...

    def release(self, release: str) -> dict | None: ...

    def record(self, verdict: Verdict) -> None: ...

    def record_error(self, release: str, at: int, message: str) -> None: ...

    def record_event(self, release: str, kind: str, detail: dict) -> None:
        """Anything else that happened to a release: promote, rollback, notification."""
        ...

    def evaluations(self, release: str) -> list[dict]:
        """The release's evaluations by moment judged (`evaluated_at`), each with `recorded_at`
        (when it was written: the order gate.analysis reads final verdicts in)."""
        ...

    def events(self, release: str) -> list[dict]: ...

    def record_traffic(self, release: str, change: dict) -> None:
        """A change of the canary's traffic weight by `gate rollout` (gate.rollout.TrafficChange)."""
        ...

    def traffic(self, release: str) -> list[dict]:
        """The release's traffic changes, oldest first (checked: a damaged one is a StoreError)."""
        ...

    def deploy_traffic(self, deploy: Deploy) -> list[dict]:
        """The traffic changes of one deploy of the release, oldest first: those that name it."""
        ...


class Registry:
    """Registering and restarting a release, the same in every store: the first registration
    wins, a restart replaces only the deploy it saw (with a `redeploy` event keeping the previous
    one, in the same write), and both answer the deploy time registered once they are done.
    A store gives its `label` (how its errors name it), `release`, and the two atomic writes."""

    label: str

    def release(self, release: str) -> dict | None:
        raise NotImplementedError

    def _register(self, release: str, deployed_at: int, info: dict) -> None:
        """Register the release unless it is already: the first registration wins."""
        raise NotImplementedError

    def _replace_deploy(self, release: str, deployed_at: int, info: dict, previous: int, detail: dict) -> None:
        """In one write: the deploy time becomes `deployed_at` if it is still `previous`, and the
        redeploy event (`detail`) is recorded with it; nothing if another process came first."""
        raise NotImplementedError

    def start_release(self, release: str, deployed_at: int, info: dict) -> int:
        self._register(release, deployed_at, info)
        return self._registered(release, "after registration")

    def restart_release(self, release: str, deployed_at: int, info: dict, previous: int) -> int:
        self._replace_deploy(release, deployed_at, info, previous,
                             redeploy_detail(previous, deployed_at, self.release(release)))
        return self._registered(release, "while it was restarted")

    def traffic(self, release: str) -> list[dict]:
        raise NotImplementedError

    def deploy_traffic(self, deploy: Deploy) -> list[dict]:
        # By the deploy they name, never by time: a redeploy never inherits its predecessor's rollout.
        return [c for c in self.traffic(deploy.release) if belongs(c, deploy)]

    def _registered(self, release: str, when: str) -> int:
        current = self.release(release)
        if current is None:
            raise StoreError(f"{self.label}: release {release!r} vanished {when}")
        return current["deployed_at"]


class BestEffort:
    """The store of a safety action (`gate rollback`): the action never waits on it. A store that
    cannot be opened, read or written to (a damaged file, DynamoDB throttled or away) keeps its
    fault in `faults` instead of raising it; a read answers what an empty store would (no release
    registered, no traffic change: the change to 0 then names no deploy, and a rollout's next look
    finds the canary at 0 and records the rollback itself), a write is skipped. The caller says
    what was not recorded."""

    def __init__(self, opener: Callable[[], Store]):
        self.faults: list[str] = []
        self.store: Store | None = None
        try:
            self.store = opener()
        except StoreError as e:
            self.faults.append(f"the store could not be opened: {e}")

    def _try(self, what: str, call: Callable[[], Any], instead: Any = None) -> Any:
        if self.store is None:
            return instead
        try:
            return call()
        except StoreError as e:
            self.faults.append(f"{what}: {e}")
            return instead

    def release(self, release: str) -> dict | None:
        return self._try("the release could not be read", lambda: self.store.release(release))

    def deploy_traffic(self, deploy: Deploy) -> list[dict]:
        return self._try("the traffic changes could not be read", lambda: self.store.deploy_traffic(deploy), [])

    def record_traffic(self, release: str, change: dict) -> None:
        self._try("the traffic change could not be recorded", lambda: self.store.record_traffic(release, change))

    def record_event(self, release: str, kind: str, detail: dict) -> None:
        self._try(f"the {kind} could not be recorded", lambda: self.store.record_event(release, kind, detail))
