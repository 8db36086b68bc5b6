"""A deploy's policy is recognised by its content, not by the order its keys were written in: a
pipeline that re-serialises an inline policy (a JSON round trip through a map that sorts, YAML
rewritten by a tool) asks about the same deploy with the same policy (gate.lifecycle)."""

from __future__ import annotations

import hashlib

import pytest

from gate.errors import ReleaseError
from gate.lifecycle import CANONICAL_DIGEST, POLICY_DIGEST, register_deploy, written_policy_digest
from gate.policy import parse_policy
from gate.store import SqliteStore
from gate.verdict import Verdict

DEPLOYED = 1_700_000_000
NOW = DEPLOYED + 900

POLICY = {
    "name": "web",
    "source": {"type": "simulate", "options": {"scenario": "healthy", "seed": 7}},
    "canary": {"scope": "canary"},
    "baseline": {"scope": "baseline"},
    "interval": "1m",
    "lifetime": "1h",
    "metrics": [{"name": "latency", "kind": "gauge", "queries": {"canary": "c", "baseline": "b"}}],
}


def reordered(value):
    """The same content with every mapping's keys in the reverse order."""
    if isinstance(value, dict):
        return {key: reordered(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [reordered(item) for item in value]
    return value


def register(store, policy):
    return register_deploy(store, "web-7", DEPLOYED, NOW, parse_policy(policy), {"policy": "web"},
                           clock=lambda: NOW)


def judged(store):
    """The deploy has acted: from now on only its own policy may judge it."""
    store.record(Verdict("web-7", "inconclusive", "x", DEPLOYED, DEPLOYED + 300, False, deploy=1))


def test_the_same_policy_with_its_keys_reordered_judges_the_same_deploy(tmp_path):
    store = SqliteStore(tmp_path / "gate.sqlite")
    assert register(store, POLICY) == DEPLOYED
    judged(store)
    assert register(store, reordered(POLICY)) == DEPLOYED  # was: "policy 'web' differs from the policy ..."
    # Content still counts: another tolerance is another policy.
    other = {**POLICY, "metrics": [{**POLICY["metrics"][0], "tolerance": 0.3}]}
    with pytest.raises(ReleaseError, match="policy 'web' differs from the policy release 'web-7'"):
        register(store, other)


def test_a_registration_still_keeps_the_digest_earlier_gates_compare(tmp_path):
    """A Lambda of an earlier version sharing the store compares POLICY_DIGEST, made as before."""
    store = SqliteStore(tmp_path / "gate.sqlite")
    register(store, POLICY)
    info = store.release("web-7")["info"]
    as_before = hashlib.sha256(parse_policy(POLICY).model_dump_json(exclude_defaults=True).encode()).hexdigest()
    assert info[POLICY_DIGEST] == as_before and CANONICAL_DIGEST in info


def test_a_deploy_registered_by_an_earlier_gate_is_recognised_by_its_policy_as_written(tmp_path):
    store = SqliteStore(tmp_path / "gate.sqlite")
    written = written_policy_digest(parse_policy(POLICY))
    store.start_release("web-7", DEPLOYED, {"policy": "web", POLICY_DIGEST: written, "lifetime": 3600, "deploy": 1})
    judged(store)
    assert register(store, POLICY) == DEPLOYED
    # Its digest depends on key order: reordered, it cannot be told from another policy. Refused
    # (fail closed), saying what to do, never a traceback.
    with pytest.raises(ReleaseError, match=r"registered by an earlier gate, whose policy digest depends on the "
                                           r"order of the policy's keys .* give the policy as it was written then"):
        register(store, reordered(POLICY))
