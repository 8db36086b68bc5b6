"""`gate demo --rollout` and `gate rollout` on a demo policy: the real step machine (gate.rollout)
on a simulated load balancer (gate.simulated_alb), no AWS account or credentials."""

import json

import yaml

from gate.demo import DEMO_ROLLOUT
from gate.store import SqliteStore
from tests.conftest import ROOT, run_gate

NO_AWS = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "", "AWS_PROFILE": "",
          "AWS_DEFAULT_REGION": "", "AWS_REGION": "", "AWS_ENDPOINT_URL": "",
          "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}


def only_release(store) -> str:
    import sqlite3

    with sqlite3.connect(store) as db:
        (release,) = db.execute("SELECT release FROM releases").fetchone()
    return release


def test_the_rollout_demo_steps_5_25_50_and_rolls_back_when_the_fault_shows(tmp_path):
    store = tmp_path / "s.sqlite"
    result = run_gate("demo", "--rollout", "--pace", "0", "--store", store, env={**NO_AWS, "COLUMNS": "80"})
    assert result.returncode == 1, result.stdout + result.stderr  # rolled back: fail
    lines = result.stdout.splitlines()
    for said in ("started: step 1 of 3 (5%)", "step 1 (5%) passed, advanced to step 2 of 3 (25%)",
                 "step 2 (25%) passed, advanced to step 3 of 3 (50%)",
                 "step 3 (50%) failed, rolled back: the canary's traffic is 0"):
        assert any(said in line for line in lines), (said, result.stdout)
    release = only_release(store)
    changes = SqliteStore(store).traffic(release)
    assert [c["percent"] for c in changes] == [5, 25, 50, 0]
    assert [c["allowed_by"]["verdict"] for c in changes] == ["start", "pass", "pass", "fail"]
    assert "FAIL" in result.stdout and "Traceback" not in result.stderr


def test_a_healthy_rollout_demo_passes_every_step(tmp_path):
    store = tmp_path / "s.sqlite"
    result = run_gate("demo", "--rollout", "healthy", "--pace", "0", "--json", "--store", store, env=NO_AWS)
    assert result.returncode == 0, result.stdout + result.stderr
    look = json.loads(result.stdout)
    assert look["verdict"] == "pass" and look["rollout"]["status"] == "complete" and look["rollout"]["percent"] == 50
    assert [c["percent"] for c in SqliteStore(store).traffic(look["release"])] == [5, 25, 50]


def test_gate_rollout_on_a_demo_policy_steers_the_simulated_load_balancer_without_credentials(tmp_path):
    policy = yaml.safe_load((ROOT / "examples" / "simulate.yaml").read_text())
    path, store = tmp_path / "policy.yaml", tmp_path / "s.sqlite"
    path.write_text(yaml.safe_dump({**policy, "rollout": DEMO_ROLLOUT}))

    dry = run_gate("rollout", "rel", "--policy", path, "--store", store, "--simulated-alb", "--dry-run", "--json",
                   env=NO_AWS)
    assert dry.returncode == 3, dry.stdout + dry.stderr  # a dry run never says complete
    assert json.loads(dry.stdout)["rollout"]["notes"] == ["dry run: nothing changed"]
    assert SqliteStore(store).traffic("rel") == []
    first = run_gate("rollout", "rel", "--policy", path, "--store", store, "--simulated-alb", "--json", env=NO_AWS)
    assert first.returncode == 3, first.stdout + first.stderr
    assert [c["percent"] for c in SqliteStore(store).traffic("rel")] == [5]
    # The next run finds the simulated weights where the store left them: it judges, never "changed by someone else".
    again = run_gate("rollout", "rel", "--policy", path, "--store", store, "--simulated-alb", "--json", env=NO_AWS)
    assert again.returncode == 3, again.stdout + again.stderr
    assert json.loads(again.stdout)["rollout"]["status"] == "judging"


def test_the_simulated_load_balancer_is_refused_on_a_live_source(tmp_path):
    """A live canary's traffic is the ALB's: simulating it would record steps that never happened."""
    policy = yaml.safe_load((ROOT / "examples" / "cloudwatch.yaml").read_text())
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    result = run_gate("rollout", "rel", "--policy", path, "--store", tmp_path / "s.sqlite", "--simulated-alb",
                      env={**NO_AWS, "AWS_DEFAULT_REGION": "us-east-1"})
    assert result.returncode == 4, result.stdout + result.stderr
    assert "--simulated-alb: only on a demo source" in result.stderr and "Traceback" not in result.stderr
    assert SqliteStore(tmp_path / "s.sqlite").traffic("rel") == []
