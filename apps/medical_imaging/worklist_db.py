"""The worklist's source of truth: one SQLite database per output folder.

``worklist.json``, ``worklist.csv`` and ``report.html`` are views regenerated from it;
this database is what survives a crash, a SIGINT and a second run into the same folder.

- WAL mode, ``synchronous=FULL``: a committed study is on disk before the next starts,
  and readers (view regeneration) never block writers.
- One ``BEGIN IMMEDIATE`` transaction per study: concurrent runs and ``--watch`` on the
  same ``--out`` serialise their writes through SQLite's lock (``busy_timeout`` waits).
- A study is never removed, and never demoted: when a later run triages a study that is
  already in the worklist (same study id), the stored row is replaced only by a strictly
  more urgent decision; otherwise it is kept as it is, with a note that it was seen again.
  The first arrival (time and sequence) is kept either way, so its waiting time counts
  from when it first came in.
"""
from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Iterator

from apps.medical_imaging.policy import PRIORITY_RANK
from apps.medical_imaging.worklist import Study
from sdk.closing import Closing

DB_NAME = "worklist.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS arrivals (seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS studies (
    study_id TEXT PRIMARY KEY,
    arrival_seq INTEGER NOT NULL,
    priority_rank INTEGER NOT NULL,
    updated TEXT NOT NULL,
    data TEXT NOT NULL
);
"""
MAX_SEEN_NOTES = 5


class WorklistDB(Closing):
    """Open (creating if needed) ``<out_dir>/worklist.sqlite``.

    SQLite failures (a damaged database file, a full disk, a lock held past the timeout)
    are raised as OSError naming the file, so the CLI reports them (exit 2) instead of a
    traceback.
    """

    def __init__(self, out_dir: str | Path, timeout_s: float = 60.0):
        self.path = Path(out_dir) / DB_NAME
        with self._guard("open"):
            self._con = sqlite3.connect(self.path, timeout=timeout_s, isolation_level=None,
                                        check_same_thread=False)
            self._con.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
            # two runs creating the folder's database at once: switching a new file to WAL takes an
            # exclusive lock, and SQLite answers the other one "locked" at once instead of waiting
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    mode = self._con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                    self._con.execute("PRAGMA synchronous = FULL")
                    with self._tx() as con:
                        for stmt in filter(str.strip, _SCHEMA.split(";")):
                            con.execute(stmt)
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            if str(mode).lower() != "wal":
                raise OSError(f"{self.path}: SQLite refused WAL mode (got {mode!r}); "
                              "is the output folder on a network file system?")

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise OSError(f"worklist database {self.path}: could not {what} ({type(exc).__name__}: {exc}); "
                          "if the file is damaged, move it away and run again (audit.jsonl keeps every "
                          "decision)") from exc

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: committed on success, rolled back on any exception."""
        self._con.execute("BEGIN IMMEDIATE")
        try:
            yield self._con
        except BaseException:
            self._con.execute("ROLLBACK")
            raise
        self._con.execute("COMMIT")

    # --- writes -------------------------------------------------------------------------
    def next_arrival(self, at: datetime) -> int:
        """A sequence number unique across every run into this folder (arrival order)."""
        with self._guard("record an arrival"), self._tx() as con:
            return int(con.execute("INSERT INTO arrivals(at) VALUES (?)", (at.isoformat(),)).lastrowid)

    def upsert(self, study: Study, now: datetime) -> Study:
        """Store ``study`` in one transaction; returns the row the worklist now holds for it.

        An existing row is replaced only by a strictly more urgent priority (keeping the
        first arrival); a same-or-lower one leaves the row as it is, plus a note.
        """
        rank = PRIORITY_RANK[study.priority]
        with self._guard(f"store study {study.study_id}"), self._tx() as con:
            row = con.execute("SELECT priority_rank, data FROM studies WHERE study_id = ?",
                              (study.study_id,)).fetchone()
            if row is None:
                con.execute("INSERT INTO studies(study_id, arrival_seq, priority_rank, updated, data) "
                            "VALUES (?, ?, ?, ?, ?)",
                            (study.study_id, study.arrival_seq, rank, now.isoformat(), _dump(study)))
                return study
            old = Study.model_validate_json(row[1])
            if rank < row[0]:
                kept = study.model_copy(update={
                    "arrival": old.arrival, "arrival_seq": old.arrival_seq,
                    "notes": study.notes + [f"raised from {old.priority} when seen again at {now.isoformat()}"]})
            else:
                seen = [n for n in old.notes if n.startswith("seen again")]
                note = (f"seen again at {now.isoformat()}: {study.status} {study.priority}"
                        f"{' (kept ' + old.priority + ', never demoted)' if rank > row[0] else ''}")
                notes = old.notes if len(seen) >= MAX_SEEN_NOTES else old.notes + [note]
                kept = old.model_copy(update={"notes": notes})
            con.execute("UPDATE studies SET priority_rank = ?, updated = ?, data = ? WHERE study_id = ?",
                        (PRIORITY_RANK[kept.priority], now.isoformat(), _dump(kept), study.study_id))
            return kept

    # --- reads --------------------------------------------------------------------------
    def studies(self) -> list[Study]:
        """Every study ever stored, in arrival order."""
        with self._guard("read the studies"):
            rows = self._con.execute("SELECT data FROM studies ORDER BY arrival_seq").fetchall()
        return [Study.model_validate_json(r[0]) for r in rows]

    def count(self) -> int:
        with self._guard("count the studies"):
            return int(self._con.execute("SELECT COUNT(*) FROM studies").fetchone()[0])

    def close(self) -> None:
        self._con.close()


def _dump(study: Study) -> str:
    return json.dumps(study.model_dump(mode="json", exclude_none=True), ensure_ascii=False)
