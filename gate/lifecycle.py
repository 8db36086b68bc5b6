"""The release lifecycle: which deploy of a release is judged, registered once in the store.

One set of rules for every front door (the CLI, the Lambda, Jenkins through either) and every
store: a store only offers atomic primitives (`start_release`: the first registration wins;
`restart_release`: replace the deploy time if it is still the one seen), and `register_deploy`
judges what it asked for against what the store holds, whoever wrote it, so that two first
checks at once decide exactly as one after the other would. How a store's record of a release
reads back (checked: a damaged record is a StoreError) and what its `redeploy` event keeps are
here too, once for SQLite and DynamoDB.

Every registration is a deploy with an identity (`Deploy`: the release and its deploy number, 1
for the first, one more at each restart), and every record of it names it: evaluations (the
verdict's `deploy`), traffic changes (`deploy`), the Lambda's idempotency key, the report, Slack
and JUnit. What was registered decides for the deploy (its lifetime, its policy's digest), never
the policy of the call that asks. A record that names no deploy (kept before deploys were
numbered) belongs to no numbered deploy: read, shown, never adopted (`belongs`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gate.errors import ReleaseError, StoreError
from gate.policy import Policy
from gate.release import LAST_MOMENT, iso

FUTURE_SKEW = 60  # seconds a moment may be ahead of this clock (clocks differ a little)
POLICY_DIGEST = "policy_sha256"  # the policy's digest as first kept: its JSON in the order it was written
CANONICAL_DIGEST = "policy_canonical_sha256"  # the policy's digest with its keys sorted: what identifies it
ATTEMPTS = 4  # registrations raced by other processes before giving up (each race is a write)
REDEPLOY_EVENT = "redeploy"  # the event that keeps a restarted release's previous deploy
DEPLOY = "deploy"  # the deploy number, in a registration's info and in every record of the deploy
LIFETIME = "lifetime"  # the registered policy's lifetime (seconds), in a registration's info
LEGACY_DEPLOY = 0  # the number of a deploy registered before deploys were numbered


@dataclass(frozen=True)
class Deploy:
    """One deploy of a release, as registered: what every record of it hangs from."""

    release: str
    number: int  # 1 for the first deploy of the release, one more at each restart
    deployed_at: int
    lifetime: int | None  # the registered policy's lifetime; None: registered before it was kept

    @property
    def id(self) -> str:
        return f"{self.release}#{self.number}"


def deploy_of(registered: dict) -> Deploy:
    """The deploy a store's (checked) release record holds."""
    info = registered["info"]
    number, lifetime = info.get(DEPLOY), info.get(LIFETIME)
    return Deploy(registered["release"], number if _whole(number) else LEGACY_DEPLOY, registered["deployed_at"],
                  lifetime if _whole(lifetime) else None)


def named_deploy(record: dict) -> int | None:
    """The deploy number a record (a traffic change, a verdict's payload) names; None: none (a
    record older than deploy numbers, which is no deploy's: never adopted)."""
    number = record.get(DEPLOY)
    return number if _whole(number) else None


def belongs(record: dict, deploy: Deploy) -> bool:
    """Whether a record is the deploy's own: it names that deploy."""
    return named_deploy(record) == deploy.number


def highest_deploy(store: Any, release: str) -> int:
    """The highest deploy number any record of the release names (its evaluations, traffic
    changes and events, a redeploy's previous deploy included); 0 when none does. A new deploy is
    numbered after it, so that no record left by an earlier deploy ever names the new one."""
    named = [e["payload"] for e in store.evaluations(release)]
    named += store.traffic(release)
    for event in store.events(release):
        detail = event["detail"]
        named += [detail, detail.get("previous_info")] if isinstance(detail, dict) else []
    numbers = [named_deploy(r) for r in named if isinstance(r, dict)]
    return max((n for n in numbers if n is not None), default=LEGACY_DEPLOY)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclass(frozen=True)
class Names:
    """What a front door calls the settings, so that a refusal names the one to change."""

    deployed_at: str
    now: str
    examine_past: str


CLI = Names("--deployed-at", "now", "--examine-past")
LAMBDA = Names("deployed_at", "now", "examine_past")


def policy_digest(policy: Policy) -> str:
    """What identifies a policy's content: its validated fields with every key sorted (the same
    policy written with its keys in another order, e.g. re-serialised by a pipeline, is the same
    policy), defaults left out, so that a new optional field in a later version of the gate does
    not make every running canary's policy look different."""
    fields = policy.model_dump(mode="json", exclude_defaults=True)
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def written_policy_digest(policy: Policy) -> str:
    """The digest registrations kept before `policy_digest` (POLICY_DIGEST): the keys of its
    mappings (a metric's queries, the source's options, the links) in the order they were written.
    Still written beside the canonical one, so that a gate of an earlier version sharing the store
    (a Lambda not yet updated) still recognises the policy of a deploy this one registered."""
    return hashlib.sha256(policy.model_dump_json(exclude_defaults=True).encode()).hexdigest()


def policy_digests(policy: Policy) -> dict[str, str]:
    """The digests a registration keeps of its policy (see `is_registered_policy`)."""
    return {POLICY_DIGEST: written_policy_digest(policy), CANONICAL_DIGEST: policy_digest(policy)}


def is_registered_policy(info: dict, policy: Policy) -> bool | None:
    """Whether a registration's info names `policy`: by the canonical digest if it keeps one, else
    (a record registered before it was kept) by the written-order digest, which recognises the
    policy as it was written then; None if it keeps no digest at all (older still)."""
    if CANONICAL_DIGEST in info:
        return info[CANONICAL_DIGEST] == policy_digest(policy)
    if POLICY_DIGEST in info:
        return info[POLICY_DIGEST] == written_policy_digest(policy)
    return None


def register_deploy(store: Any, release: str, requested: int | None, now: int, policy: Policy, info: dict,
                    **options: Any) -> int:
    """`register`, for who needs only the deploy time."""
    return register(store, release, requested, now, policy, info, **options).deployed_at


def register(
    store: Any,
    release: str,
    requested: int | None,
    now: int,
    policy: Policy,
    info: dict,
    *,
    examine_past: bool = False,
    names: Names = CLI,
    clock: Callable[[], float] = time.time,
) -> Deploy:
    """The deploy of `release` to judge at `now`, registered in the store.

    * not registered: register it (`requested`, or `now`), with the policy's digest;
    * `requested` is the registered deploy time (within FUTURE_SKEW): the same canary, judged
      again, and only with the policy it was registered with (another policy replaces it only
      while nothing was judged yet, e.g. after a first evaluation that could not read metrics);
    * `requested` after the registered lifetime ended (the lifetime registered with the deploy,
      not the asking policy's): a new deploy of the same release, which restarts it with the next
      deploy number (the previous deploy stays in its `redeploy` event);
    * `requested` inside the registered lifetime but different: refused (two canaries at once?);
    * nothing requested and the registered lifetime ended more than one interval before `now`:
      refused, the window is over (a new deploy must say when it started).

    Refused as well: a moment ahead of this clock (`requested`, `now`, or a registered deploy
    time), and a new deploy whose lifetime ended before this clock, unless `examine_past` (the
    caller judges a past canary on purpose). Never judges an old window for a new canary.
    """
    moment = clock()
    for value, name in ((requested, names.deployed_at), (now, names.now)):
        if value is not None and value > moment + FUTURE_SKEW:
            raise ReleaseError(f"{name}: {_when(value)} is in the future (now {iso(moment)})")
    info = {**info, **policy_digests(policy), LIFETIME: policy.lifetime}
    writes = 0
    while True:
        # Judge what is asked against what the store holds, write only what the rules allow, and
        # judge again: a concurrent registration that won is judged exactly as if it came first.
        registered = store.release(release)
        start = None
        if registered is not None:
            deploy = deploy_of(registered)
            start = _registered(deploy, registered, requested, now, policy, moment, names)
            if start is not None and _judged_by(policy, info, store, deploy, registered, names):
                return deploy
        if writes == ATTEMPTS:
            raise StoreError(f"release {release!r} kept being registered by other processes at the same time; "
                             "try again")
        writes += 1
        if registered is None:
            asked = requested if requested is not None else now
            said = names.deployed_at if requested is not None else names.now
            _new_deploy(asked, said, policy, moment, None if examine_past else names.examine_past)
            # Numbered after every deploy the release's records name: a release record removed (as
            # a damaged one's error advises) or expired leaves its deploys' records behind, and a
            # new deploy numbered as one of them would adopt its finished rollout and verdicts.
            store.start_release(release, asked, {**info, DEPLOY: highest_deploy(store, release) + 1})
        elif start is None:  # a new deploy: only a requested deploy time after the registered window
            _new_deploy(requested, names.deployed_at, policy, moment, None if examine_past else names.examine_past)
            number = max(deploy.number, highest_deploy(store, release)) + 1
            store.restart_release(release, requested, {**info, DEPLOY: number}, previous=registered["deployed_at"])
        else:  # the same deploy, its policy corrected before anything was judged by the old one
            store.restart_release(release, start, {**info, DEPLOY: deploy.number}, previous=start)


def registered_end(deploy: Deploy, registered: dict, policy: Policy) -> int | None:
    """The end of the deploy's registered canary window: from the lifetime it was registered with.
    A record older than that keeps the policy's digest: the asking policy's lifetime is the
    registered one only if it is the same policy; otherwise the end is unknown (None). A record
    older than digests is judged as `_judged_by` judges it: by the asking policy."""
    if deploy.lifetime is not None:
        return deploy.deployed_at + deploy.lifetime
    same_policy = is_registered_policy(registered["info"], policy) is not False
    return deploy.deployed_at + policy.lifetime if same_policy else None


def _registered(deploy: Deploy, registered: dict, requested: int | None, now: int, policy: Policy,
                moment: float, names: Names) -> int | None:
    """The registered deploy time if the request is that deploy; None if it is a new deploy
    (a restart); ReleaseError if it contradicts the registered one. The registered deploy's own
    window decides: a shorter lifetime asked now does not end it early."""
    release, start = deploy.release, deploy.deployed_at
    end = registered_end(deploy, registered, policy)
    if start > moment + FUTURE_SKEW:
        raise ReleaseError(
            f"release {release!r} is registered as deployed at {_when(start)}, in the future of this clock "
            f"({iso(moment)}): its canary would wait for years. The store is wrong: remove that record, or use "
            "another release name")
    if requested is not None and abs(requested - start) > FUTURE_SKEW:  # clocks a little apart: same deploy
        if end is None:
            raise ReleaseError(
                f"release {release!r} was registered (deployed at {iso(start)}) before its lifetime was kept, with "
                f"another policy than {policy.name!r}: this gate cannot tell when its canary window ends. Judge "
                f"that deploy with its own policy, or use another release name")
        if requested >= end:
            return None
        raise ReleaseError(
            f"{names.deployed_at} {iso(requested)} contradicts release {release!r}, registered as deployed at "
            f"{iso(start)} with a canary window until {iso(end)}: judge that deploy ({names.deployed_at} "
            f"{iso(start)}), or a new deploy starting after {iso(end)}, or use another release name")
    if requested is None and end is not None and now > end + policy.interval:
        raise ReleaseError(
            f"release {release!r} was deployed at {iso(start)} and its canary window ended at {iso(end)}: "
            f"nothing is left to judge. To judge a new deploy of it, give its start ({names.deployed_at})")
    return start


def _judged_by(policy: Policy, info: dict, store: Any, deploy: Deploy, registered: dict, names: Names) -> bool:
    """Whether the registered deploy is judged by `policy` on the groups `info` names: True if it
    was registered with them (or before digests were kept), False if others were registered but
    the deploy has not acted yet (a policy or a scope corrected after a failed first evaluation),
    else ReleaseError. Acted (`_acted`): a verdict or a traffic change of this deploy."""
    release, start = deploy.release, deploy.deployed_at
    kept = registered["info"]
    same_policy = is_registered_policy(kept, policy) is not False
    # Older records name no groups: nothing to compare.
    moved = [g for g in ("canary", "baseline") if g in kept and kept[g] != info.get(g)]
    if same_policy and not moved:
        return True
    if not _acted(store, deploy):
        return False
    end = registered_end(deploy, registered, policy) or start + policy.lifetime
    elsewhere = (f"on a new deploy ({names.deployed_at} after {iso(end)}) or under another release name")
    if not same_policy:
        # A policy edited under a running canary (a shorter lifetime, a wider tolerance) would judge
        # minutes already judged by other rules: one deploy, one policy.
        raise ReleaseError(
            f"policy {policy.name!r} differs from the policy release {release!r} was registered with at "
            f"{iso(start)} ({kept.get('policy')!r}), which has judged it or set its traffic: judge that deploy "
            f"with its own policy, or the new policy {elsewhere}{_written_order_hint(kept)}")
    # Another group under the same release would mix two canaries' verdicts in one history.
    group = moved[0]
    raise ReleaseError(
        f"{group} scope {info.get(group)!r} differs from the one release {release!r} was registered with at "
        f"{iso(start)} ({kept[group]!r}), which has judged it or set its traffic: judge that deploy on its own "
        f"groups, or these groups {elsewhere}")


def _written_order_hint(kept: dict) -> str:
    """For a deploy registered before digests sorted keys: the same content written in another key
    order reads as another policy there, which the operator can repair by writing it as before."""
    if CANONICAL_DIGEST in kept or POLICY_DIGEST not in kept:
        return ""
    return (". That deploy was registered by an earlier gate, whose policy digest depends on the order of "
            "the policy's keys (a metric's queries, the source's options, the links): if only that order "
            "changed, give the policy as it was written then")


def _acted(store: Any, deploy: Deploy) -> bool:
    """Whether the deploy has acted under its registered policy: a verdict, or a traffic change
    (a rollout's step 1 at 5% is the registered steps' first: another policy's steps would judge
    and move a canary they did not set). Records naming no deploy count in its window (older
    records: counted, so that an edit is refused rather than allowed)."""
    judged = any(e["verdict"] != "error" and _judged_in(e, deploy) for e in store.evaluations(deploy.release))
    return judged or any(_in_deploy(c, c["set_at"], deploy) for c in store.traffic(deploy.release))


def _judged_in(evaluation: dict, deploy: Deploy) -> bool:
    payload = evaluation["payload"] if isinstance(evaluation["payload"], dict) else {}
    return _in_deploy(payload, evaluation["evaluated_at"], deploy)


def _in_deploy(record: dict, at: int, deploy: Deploy) -> bool:
    """A record of the deploy: it names it, or names no deploy and was made in its window."""
    return belongs(record, deploy) if DEPLOY in record else at >= deploy.deployed_at


def _new_deploy(asked: int, name: str, policy: Policy, moment: float, past_flag: str | None) -> None:
    """A deploy about to be registered: refused if its whole lifetime is already over (a time in
    the wrong zone reads hours of another canary's minutes as this one's), unless the caller
    examines the past (`past_flag` None; else the flag that would say so)."""
    end = asked + policy.lifetime
    if past_flag is None or moment <= end + policy.interval + FUTURE_SKEW:
        return
    raise ReleaseError(
        f"{name} {iso(asked)}: the canary window of a deploy then ended at {iso(end)}, before now "
        f"({iso(moment)}): there is nothing left to watch (is the time in the right zone?). To judge a "
        f"past deploy on purpose, add {past_flag}")


def _when(t: int) -> str:
    try:
        return iso(t)
    except (ValueError, OverflowError, OSError):
        return f"{t} (epoch seconds)"


# -- what a store keeps of a release: one reading for every store ------------------------------


def release_record(where: str, release: str, deployed_at: object, info: object) -> dict:
    """A release as a store holds it, checked: a damaged record (a deploy time that is not epoch
    seconds, info that is not a JSON object) is a StoreError naming what is wrong, never a crash."""
    seconds = None
    if isinstance(deployed_at, int) and not isinstance(deployed_at, bool):
        seconds = deployed_at
    elif isinstance(deployed_at, str) and deployed_at.isascii() and deployed_at.lstrip("-").isdigit():
        seconds = int(deployed_at)
    if seconds is None or not 0 <= seconds <= LAST_MOMENT:
        shown = "missing" if deployed_at is None else f"{str(deployed_at)[:60]!r}"
        raise StoreError(f"{where}: release {release!r} is damaged: its deploy time (deployed_at) is {shown}, "
                         "not epoch seconds; repair or remove that record")
    details = stored_json(info, f"{where}: release {release!r} is damaged: its info")
    if not isinstance(details, dict):
        raise StoreError(f"{where}: release {release!r} is damaged: its info is not a JSON object")
    return {"release": release, "deployed_at": seconds, "info": details}


def stored_json(text: object, what: str) -> object:
    """A JSON value a store kept, read back; garbage is a StoreError starting with `what`."""
    try:
        return json.loads(text)  # type: ignore[arg-type]
    except (TypeError, ValueError) as e:
        raise StoreError(f"{what} is not JSON ({type(e).__name__}: {str(e)[:100]}); repair or remove that record") \
            from None


def redeploy_detail(previous: int, deployed_at: int, registered: dict | None) -> dict:
    """The `redeploy` event of a restart: the deploy it replaces, kept."""
    return {"previous_deployed_at": int(previous), "deployed_at": int(deployed_at),
            "previous_info": registered["info"] if registered else None}


def traffic_record(where: str, release: str, detail: object) -> dict:
    """A traffic change as a store kept it (gate.rollout), checked: a damaged one (not an object,
    a step or moment that is not a whole number, weights that are not numbers by target group) is
    a StoreError naming the record and what is wrong, never a crash further on."""
    change = stored_json(detail, f"{where}: {release!r}'s traffic change")
    what = f"{where}: {release!r}'s traffic change is damaged"
    if not isinstance(change, dict):
        raise StoreError(f"{what}: it is not a JSON object; repair or remove that record")
    for key in ("step", "set_at"):
        if not _whole(change.get(key)):
            raise StoreError(f"{what}: its {key} is {str(change.get(key))[:60]!r}, not a whole number; "
                             "repair or remove that record")
    weights = change.get("weights")
    if not isinstance(weights, dict) or not all(isinstance(a, str) and _whole(w) for a, w in weights.items()):
        raise StoreError(f"{what}: its weights are {str(weights)[:80]!r}, not whole numbers by target group; "
                         "repair or remove that record")
    if DEPLOY in change and not _whole(change[DEPLOY]):
        raise StoreError(f"{what}: its deploy is {str(change[DEPLOY])[:60]!r}, not a deploy number; "
                         "repair or remove that record")
    return change
