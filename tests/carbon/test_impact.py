"""Impact across runs and users: the log of decisions in the ledger, its totals, the counter
line, and who may see what (``flowcache carbon report --since``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from flowcache.accounts.ledger import Ledger, SQLiteBackend
from flowcache.carbon.decision import Job
from flowcache.carbon.impact import aggregate, counter_line, log_impact, read_impact
from flowcache.carbon.planner import Planner
from flowcache.carbon.records import record_outcome
from flowcache.carbon.series import IntensitySeries
from flowcache.identity import new_key

H = 3600.0
NOW = time.time()
T0 = NOW - 2 * 86400  # two days ago: inside "the past 7 days"
HOURLY = IntensitySeries(T0 - 12 * H, H, np.r_[[400.0] * 15, [100.0] * 3, [400.0] * 30],
                         region="home")


def record(*, wait: bool, known: bool = True, region: str = "home"):
    forecast = HOURLY.with_(kind="forecast")
    job = Job(duration=H, earliest=T0, home="home", power_w=1000.0,
              max_delay=6 * H if wait else 0.0, name="job")
    decision = Planner({"home": forecast}, clock=lambda: T0).plan(job)
    start = decision.start
    return record_outcome(decision, submitted=T0, actual_start=start, actual_end=start + H,
                          actual_region=region, history={"home": HOURLY} if known else {})


@pytest.fixture
def ledger(tmp_path):
    ledger = Ledger(SQLiteBackend(tmp_path / "ledger.sqlite3"))
    yield ledger
    ledger.close()


def test_the_log_totals_uptake_savings_and_unknowns(ledger):
    log_impact(ledger, user="ana", run="r1", flow="etl", records=[record(wait=True),
                                                                  record(wait=False)])
    log_impact(ledger, user="ben", run="r2", flow="train", records=[record(wait=True),
                                                                    record(wait=True,
                                                                           known=False)])
    events = read_impact(ledger, ["ana", "ben"], NOW - 7 * 86400)
    (everything,) = aggregate(events)
    assert everything["runs"] == 2
    assert everything["users"] == 2
    assert everything["tasks"] == 4
    assert everything["recommended"] == 3  # the three that could wait were told to
    assert everything["followed"] == 3
    assert everything["uptake"] == 1.0
    assert everything["unknown"] == 1  # counted as unknown, not as zero grams
    assert everything["accounted"] == 3
    assert everything["saved_vs_now_g"] == pytest.approx(2 * (400 - 100))  # 1 kWh each
    by_user = {row["group"]: row for row in aggregate(events, "user")}
    assert by_user["ben"]["saved_vs_now_g"] == pytest.approx(300.0)
    assert {row["group"] for row in aggregate(events, "flow")} == {"etl", "train"}
    line = counter_line(events, since_text="past 7 days", team=True)
    assert "2 runs of 2 users shifted 3 tasks and saved 600.0 g" in line
    assert "1 tasks' emissions unknown" in line
    assert read_impact(ledger, ["ana"], NOW + 86400) == []  # --since is honoured


def cli(*args, env):
    return subprocess.run([sys.executable, "-m", "flowcache", "carbon", "report", *args],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


def test_users_see_their_own_records_unless_the_operator_allows_the_team_view(tmp_path):
    ledger_path = tmp_path / "ledger.sqlite3"
    ledger = Ledger(SQLiteBackend(ledger_path))
    log_impact(ledger, user="ana", run="r1", flow="etl", records=[record(wait=True)])
    log_impact(ledger, user="ben", run="r2", flow="etl", records=[record(wait=True)] * 2)
    ledger.close()
    env = {"FLOWCACHE_STORE": f"memory+{tmp_path}/durable", "FLOWCACHE_USER": "ana",
           "FLOWCACHE_SIGNING_KEY": new_key().hex(), "FLOWCACHE_LEDGER": str(ledger_path),
           "FLOWCACHE_LOCK_DIR": str(tmp_path / "locks"),
           "FLOWCACHE_CONFIG": str(tmp_path / "none.toml")}
    (tmp_path / "none.toml").write_text("")
    own = cli("--since", "7d", "--by", "user", "--json", env=env)
    assert own.returncode == 0, own.stderr
    mine = json.loads(own.stdout)
    assert [row["group"] for row in mine["rows"]] == ["ana"]
    assert mine["team_view"] is False
    team = cli("--since", "7d", "--by", "user", "--json",
               env={**env, "FLOWCACHE_CARBON_TEAM_VIEW": "true"})
    assert team.returncode == 0, team.stderr
    everyone = json.loads(team.stdout)
    assert sorted(row["group"] for row in everyone["rows"]) == ["ana", "ben"]
    assert "2 runs of 2 users shifted 3 tasks" in everyone["counter"]
    table = cli("--since", "7d", env=env)
    assert "carbon impact over the past 7d" in table.stdout
    assert "1 of your runs shifted 1 tasks" in table.stdout
    neither = cli(env=env)
    assert neither.returncode == 2
    assert "--since" in neither.stderr
