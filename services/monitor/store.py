"""What the monitor must not forget across restarts, in SQLite: scored requests (feedback) and every routing policy.

Model accuracy and calibration are recomputed from the scored requests on start, so they come
back with them. The database is written on each feedback and policy change (WAL journal, one
connection, the monitor's event loop the only writer).
"""

from __future__ import annotations

import json
import pathlib
import sqlite3
from dataclasses import asdict

from services.monitor.aggregates import ScoredModelStep, ScoredRequest
from services.monitor.policy_book import PolicyRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS scored_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task TEXT NOT NULL,
    steps TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS policies (
    version INTEGER PRIMARY KEY,
    record TEXT NOT NULL
);
"""


class MonitorStore:
    """The monitor's database at ``path`` (":memory:" keeps nothing across restarts)."""

    def __init__(self, path: str, max_scored_requests: int) -> None:
        if path != ":memory:":
            pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._max_scored = max_scored_requests

    def add_scored(self, scored: ScoredRequest) -> None:
        """Keeps a scored request; the oldest beyond the limit are pruned now and then."""
        with self._db:
            cursor = self._db.execute(
                "INSERT INTO scored_requests (task, steps) VALUES (?, ?)",
                (scored.task, json.dumps([asdict(step) for step in scored.steps])),
            )
            if cursor.lastrowid and cursor.lastrowid % 1000 == 0:
                self._db.execute("DELETE FROM scored_requests WHERE id <= ?", (cursor.lastrowid - self._max_scored,))

    def scored_requests(self) -> list[ScoredRequest]:
        """The most recent scored requests, oldest first."""
        rows = self._db.execute(
            "SELECT task, steps FROM (SELECT id, task, steps FROM scored_requests ORDER BY id DESC LIMIT ?) ORDER BY id",
            (self._max_scored,),
        ).fetchall()
        return [ScoredRequest(task, tuple(ScoredModelStep(**step) for step in json.loads(steps))) for task, steps in rows]

    def save_policy(self, record: PolicyRecord) -> None:
        """Writes a policy as it stands now."""
        data = asdict(record)
        data["thresholds"] = {str(tier): threshold for tier, threshold in record.thresholds.items()}
        data["weights"] = {str(tier): weight for tier, weight in record.weights.items()}
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO policies (version, record) VALUES (?, ?)", (record.version, json.dumps(data)))

    def policies(self) -> list[PolicyRecord]:
        """Every policy ever proposed, by version."""
        records = []
        for (text,) in self._db.execute("SELECT record FROM policies ORDER BY version"):
            data = json.loads(text)
            data["thresholds"] = {int(tier): threshold for tier, threshold in data["thresholds"].items()}
            data["weights"] = {int(tier): weight for tier, weight in data.get("weights", {}).items()}
            data["tiers"] = tuple(data["tiers"])
            records.append(PolicyRecord(**data))
        return records

    def close(self) -> None:
        """Closes the database."""
        self._db.close()
