"""The embedded store: one SQLite file in WAL mode, append-only observations.

Every append is one transaction: all of a table's new rows land, or none. An
observation's ``obs_id`` is its primary key, so appending the same observation twice
(from a re-imported export, or a store merged from another node) adds it once.
Observations are never updated or deleted (a trigger refuses it).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, NamedTuple

from metasel._schema import (
    HARDWARE_COLUMNS, METHOD_COLUMNS, METRIC_NAMES, NOISY, OBS_COLUMNS, TASK_COLUMNS,
)
from metasel.errors import InputDataError, StoreError

if TYPE_CHECKING:  # pragma: no cover
    from metasel.data.table import PerfTable

#: seconds a write waits for another process's lock before it fails with one line naming the holder
LOCK_TIMEOUT_S = 30.0
SCHEMA_VERSION = 3  # 2: serving percentiles, goodput and conversion time (SCHEMA2_METRICS);
#                    3: the machine's state per observation (``machine``) and retractions
APP_ID = 0x6D657461  # "meta": marks the file as a metasel store
ENV_VAR = "METASEL_STORE"

_SQL_TYPES = {"str": "TEXT", "float": "REAL", "int": "INTEGER"}

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS tasks (task_id TEXT PRIMARY KEY, name TEXT, spec TEXT NOT NULL, features TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS methods (method TEXT PRIMARY KEY, techniques TEXT NOT NULL, description TEXT)",
    "CREATE TABLE IF NOT EXISTS hardware (hardware_id TEXT PRIMARY KEY, name TEXT, specs TEXT NOT NULL, price_per_hour REAL)",
    "CREATE TABLE IF NOT EXISTS directions (metric TEXT PRIMARY KEY, direction TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS observations ("
    + ", ".join(
        f"{c} {_SQL_TYPES[k]}" + (" PRIMARY KEY" if c == "obs_id" else "")
        for c, k in OBS_COLUMNS.items()
    )
    + ")",
    # an observation retracted (a bad measurement) stays in the append-only log; reads leave it out
    "CREATE TABLE IF NOT EXISTS retractions (obs_id TEXT PRIMARY KEY, reason TEXT NOT NULL, timestamp TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS obs_cell ON observations (hardware_id, task_id, method)",
    "CREATE TRIGGER IF NOT EXISTS obs_no_update BEFORE UPDATE ON observations "
    "BEGIN SELECT RAISE(ABORT, 'observations are append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS obs_no_delete BEFORE DELETE ON observations "
    "BEGIN SELECT RAISE(ABORT, 'observations are append-only'); END",
]

#: the rounds of interleaved repeats (``collect --interleave``): each run of a cell is kept as it
#: arrives, so a killed collection resumes with the rounds it finished; the observation made from
#: a cell's rounds marks them ``consumed`` in the same transaction. Created on first use (stores
#: without it read as before).
_ROUNDS_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS rounds (hardware_id TEXT NOT NULL, task_id TEXT NOT NULL, method TEXT NOT NULL, "
    "seed INTEGER NOT NULL, round INTEGER NOT NULL, result TEXT NOT NULL, timestamp TEXT NOT NULL, "
    "consumed INTEGER NOT NULL DEFAULT 0)"
)
_ROUNDS_INDEX = "CREATE INDEX IF NOT EXISTS rounds_cell ON rounds (hardware_id, task_id, method, seed)"


def default_store_path() -> Path:
    """``$METASEL_STORE``, else ``$XDG_DATA_HOME/metasel/store.sqlite`` (``~/.local/share``)."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "metasel" / "store.sqlite"


class AppendResult(NamedTuple):
    added: int
    skipped: int


class Store:
    """A metasel store in one SQLite file.

    Args:
        path: the file; ``None`` means :func:`default_store_path`.
        create: create the file if it does not exist (else :class:`StoreError`).
        timeout: seconds to wait for another writer's lock.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, create: bool = True, timeout: float | None = None,
                 readonly: bool = False):
        self.path = Path(path) if path is not None else default_store_path()
        self.readonly = readonly
        self.timeout = float(os.environ.get("METASEL_STORE_TIMEOUT", LOCK_TIMEOUT_S)) if timeout is None else timeout
        exists = self.path.exists()
        if not exists and (not create or readonly):
            raise StoreError(f"{self.path}: no store here (run 'metasel import' or 'metasel collect' first)")
        if exists and self.path.is_dir():
            raise StoreError(f"{self.path}: expected a store file, got a directory")
        if not exists:
            parent = self.path.parent
            if path is None or (parent / "").exists():
                parent.mkdir(parents=True, exist_ok=True)  # the default store's folder is made on first use
            else:
                raise StoreError(f"{self.path}: no folder {str(parent)!r} to create the store in (a typo? create the "
                                 f"folder first)")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise StoreError(f"{self.path}: cannot create a store in {str(parent)!r} (no write permission)")
        elif readonly and self.path.stat().st_size == 0:
            raise StoreError(f"{self.path}: an empty file, not a metasel store")
        try:
            if readonly:
                self._con = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=self.timeout,
                                            isolation_level=None)
            else:
                self._con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            self._check_and_init(exists)
        except sqlite3.Error as exc:
            self._close_quietly()
            raise self._error(exc, "open") from None
        except StoreError:
            self._close_quietly()
            raise

    def _error(self, exc: sqlite3.Error, doing: str) -> StoreError:
        """One line for a failed SQLite operation: what is wrong with the file and what to do."""
        text = str(exc)
        low = text.lower()
        if "locked" in low or "busy" in low:
            holders = _lock_holders(self.path)
            who = f" (open in {holders})" if holders else ""
            return StoreError(f"{self.path}: another process holds the store's write lock{who} and did not release it "
                              f"within {self.timeout:g}s; try again when it has finished "
                              f"(METASEL_STORE_TIMEOUT sets the wait)")
        if "readonly" in low or "read-only" in low:
            return StoreError(f"{self.path}: the store is read-only here (file or folder permissions), so it cannot "
                              f"{doing}; a read-only command (show, export, suggest --no-landmarks) can still read it")
        if "not a database" in low or "file is encrypted" in low:
            return StoreError(f"{self.path}: not a metasel store: not an SQLite file ({text})")
        if "malformed" in low:
            return StoreError(f"{self.path}: the store file is damaged ({text}); restore it from a backup or "
                              f"re-import an export")
        if "no such table" in low or "no such column" in low:
            return StoreError(f"{self.path}: not a metasel store of a known schema ({text})")
        if "unable to open" in low or "disk i/o" in low or "permission" in low:
            return StoreError(f"{self.path}: cannot {doing} the store ({text}; check the path and its permissions)")
        return StoreError(f"{self.path}: cannot {doing} the store ({type(exc).__name__}: {text})")

    def _close_quietly(self) -> None:
        con = getattr(self, "_con", None)
        if con is not None:
            try:
                con.close()
            except sqlite3.Error:  # pragma: no cover
                pass
            self._con = None

    def _check_and_init(self, existed: bool) -> None:
        con = self._con
        con.execute("BEGIN")  # one snapshot: another process may be creating the store this very moment
        try:
            app_id = con.execute("PRAGMA application_id").fetchone()[0]
            version = con.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            columns = {r[1] for r in con.execute("PRAGMA table_info(observations)")}
        finally:
            con.execute("COMMIT")
        if existed and tables and app_id != APP_ID:
            raise StoreError(f"{self.path}: an SQLite file that is not a metasel store (tables: {sorted(tables)[:4]})")
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: written by a newer metasel (store schema {version}, this metasel reads up to "
                f"{SCHEMA_VERSION}); upgrade metasel to read it"
            )
        if existed and tables and not {"observations", "tasks", "methods", "hardware", "directions"} <= tables:
            raise StoreError(f"{self.path}: a metasel store with tables missing (has {sorted(tables)[:6]}); "
                             f"restore it from a backup or re-import an export")
        self._columns = columns if tables else set(OBS_COLUMNS)
        self._has_retractions = "retractions" in tables or not tables
        if self.readonly:  # read as it is: an older schema's missing columns read as empty, nothing is written
            if not tables:
                raise StoreError(f"{self.path}: an empty SQLite file, not a metasel store")
            return
        if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            con.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a committed append survives a killed process (not a power cut).
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute("PRAGMA foreign_keys=ON")
        if version < SCHEMA_VERSION or not tables:
            with self._transaction():
                if "observations" in tables:  # an older store: add the columns it lacks, in one transaction
                    have = {r[1] for r in con.execute("PRAGMA table_info(observations)")}
                    for col, kind in OBS_COLUMNS.items():
                        if col not in have:
                            con.execute(f"ALTER TABLE observations ADD COLUMN {col} {_SQL_TYPES[kind]}")
                for stmt in _SCHEMA:
                    con.execute(stmt)
                con.execute(f"PRAGMA application_id={APP_ID}")
                con.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                con.execute("INSERT OR IGNORE INTO meta VALUES ('created', ?)", (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),))
            self._columns, self._has_retractions = set(OBS_COLUMNS), True

    @contextmanager
    def _transaction(self, doing: str = "write to"):
        con = self._con
        if con is None:
            raise StoreError(f"{self.path}: the store is closed")
        if self.readonly:
            raise StoreError(f"{self.path}: opened read-only; cannot {doing} it")
        try:
            con.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._error(exc, doing) from None
        try:
            yield con
        except sqlite3.Error as exc:
            con.execute("ROLLBACK")
            raise self._error(exc, doing) from None
        except BaseException:
            con.execute("ROLLBACK")
            raise
        else:
            try:
                con.execute("COMMIT")
            except sqlite3.Error as exc:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise self._error(exc, doing) from None

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        self._close_quietly()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # ------------------------------------------------------------------ writing

    def append(self, table: "PerfTable", *, consume_rounds: tuple[str, str, str, int] | None = None) -> AppendResult:
        """Append a table's observations and descriptors in one transaction.

        An observation already in the store (same ``obs_id``) is skipped. A descriptor
        that contradicts the stored one for the same id is an :class:`InputDataError`,
        and then nothing is written. ``consume_rounds`` (hardware_id, task_id, method, seed):
        the stored rounds the observation was made from, marked consumed in the same transaction.
        """
        if self._con is None:
            raise StoreError(f"{self.path}: the store is closed")
        obs_rows = [tuple(_sql_value(v) for v in row) for row in
                    table.observations[list(OBS_COLUMNS)].itertuples(index=False, name=None)]
        with self._transaction() as con:
            for metric, direction in table.directions.items():
                row = con.execute("SELECT direction FROM directions WHERE metric=?", (metric,)).fetchone()
                if row is None:
                    con.execute("INSERT INTO directions VALUES (?, ?)", (metric, direction))
                elif row[0] != direction:
                    raise InputDataError(
                        f"{self.path}: metric {metric!r} is stored as {row[0]!r}, the new data says {direction!r}; "
                        f"use another store for it"
                    )
            self._merge_descriptors(con, "tasks", TASK_COLUMNS, table.tasks, "spec")
            self._merge_descriptors(con, "methods", METHOD_COLUMNS, table.methods, "techniques")
            self._merge_descriptors(con, "hardware", HARDWARE_COLUMNS, table.hardware, "specs")
            before = con.total_changes
            con.executemany(
                f"INSERT OR IGNORE INTO observations ({', '.join(OBS_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(OBS_COLUMNS))})",
                obs_rows,
            )
            added = con.total_changes - before
            if consume_rounds is not None and self._has_rounds(con):
                con.execute("UPDATE rounds SET consumed=1 WHERE hardware_id=? AND task_id=? AND method=? AND seed=?",
                            tuple(consume_rounds))
        return AppendResult(added=added, skipped=len(obs_rows) - added)

    def add_round(self, hardware_id: str, task_id: str, method: str, seed: int, round_: int, result: dict) -> None:
        """Keep one round of an interleaved cell (its measured fields, as JSON) until the cell's
        observation is made from its rounds."""
        text = json.dumps(result, default=_json_default, allow_nan=True)
        with self._transaction("keep a round in") as con:
            con.execute(_ROUNDS_SCHEMA)
            con.execute(_ROUNDS_INDEX)
            con.execute("INSERT INTO rounds VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
                        (hardware_id, task_id, method, int(seed), int(round_), text,
                         time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))

    def open_rounds(self, hardware_id: str) -> dict[tuple[str, str, int], dict[int, dict]]:
        """The rounds kept on ``hardware_id`` whose cell has no observation made from them yet:
        {(task_id, method, seed): {round: result}} (a later copy of a round replaces an earlier)."""
        if self._con is None:
            raise StoreError(f"{self.path}: the store is closed")
        if not self._has_rounds(self._con):
            return {}
        out: dict[tuple[str, str, int], dict[int, dict]] = {}
        for t, m, seed, r, text in self._query("SELECT task_id, method, seed, round, result FROM rounds "
                                               "WHERE hardware_id=? AND consumed=0 ORDER BY rowid", (hardware_id,)):
            out.setdefault((t, m, int(seed)), {})[int(r)] = json.loads(text)
        return out

    @staticmethod
    def _has_rounds(con) -> bool:
        return con.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='rounds'").fetchone() is not None

    def _merge_descriptors(self, con, name, columns, frame, json_col) -> None:
        """Insert new descriptors. An id already stored keeps its row (labels such as
        ``name`` stay as first written); only a different JSON payload is a conflict,
        except that a real descriptor replaces an empty placeholder."""
        key = columns[0]
        compared = [c for c in columns if c in ("spec", "features", "techniques", "specs")]
        for row in frame[list(columns)].itertuples(index=False, name=None):
            row = tuple(_sql_value(v) for v in row)
            old = con.execute(f"SELECT {', '.join(columns)} FROM {name} WHERE {key}=?", (row[0],)).fetchone()
            if old is None:
                con.execute(f"INSERT INTO {name} VALUES ({', '.join('?' * len(columns))})", row)
                continue
            old_d, new_d = dict(zip(columns, old)), dict(zip(columns, row))
            if all(old_d[c] == new_d[c] for c in compared):
                continue
            if name == "tasks" and old_d["spec"] == new_d["spec"]:
                merged = _union_features(old_d["features"], new_d["features"])
                if merged is not None:  # one side knows more features (landmarks) of the same task
                    if merged != old_d["features"]:
                        con.execute("UPDATE tasks SET features=? WHERE task_id=?", (merged, row[0]))
                    continue
            if new_d[json_col] == "{}" and all(new_d[c] in ("{}", None) for c in compared):
                continue  # a placeholder never replaces a real descriptor
            if all(old_d[c] in ("{}", None) for c in compared):
                con.execute(f"DELETE FROM {name} WHERE {key}=?", (row[0],))
                con.execute(f"INSERT INTO {name} VALUES ({', '.join('?' * len(columns))})", row)
                continue
            diff = [c for c in compared if old_d[c] != new_d[c]]
            raise InputDataError(
                f"{self.path}: {name} {key} {row[0]!r} is stored with another descriptor "
                f"(differs in {diff}); nothing was written"
            )

    def set_task_features(self, task_id: str, features: dict[str, Any], *, replace: bool = False) -> None:
        """Add features (landmarks) to a stored task. A feature it already has with another
        value is an :class:`InputDataError` (then nothing is written), unless ``replace``."""
        blob = json.dumps(features, sort_keys=True, separators=(",", ":"))
        with self._transaction() as con:
            row = con.execute("SELECT features FROM tasks WHERE task_id=?", (task_id,)).fetchone()
            if row is None:
                raise InputDataError(f"{self.path}: no task {task_id!r} is stored")
            old = row[0]
            if replace:
                old = json.dumps({k: v for k, v in json.loads(old or "{}").items() if k not in features})
            merged = _union_features(old, blob)
            if merged is None:
                raise InputDataError(f"{self.path}: task {task_id!r} already has other values of "
                                     f"{sorted(k for k in features if k in json.loads(row[0] or '{}'))}; nothing was written")
            con.execute("UPDATE tasks SET features=? WHERE task_id=?", (merged, task_id))

    # ------------------------------------------------------------------ reading

    def _frames(self, where: str = "", params: tuple = (), retracted: str = "exclude"):
        import pandas as pd

        if self._con is None:
            raise StoreError(f"{self.path}: the store is closed")
        con = self._con
        kept = "" if retracted == "include" or not self._has_retractions else \
            "obs_id NOT IN (SELECT obs_id FROM retractions)" if retracted == "exclude" else \
            "obs_id IN (SELECT obs_id FROM retractions)"
        if retracted == "only" and not self._has_retractions:
            kept = "0"
        where = " AND ".join(w for w in (where, kept) if w)
        cols = ", ".join(c if c in self._columns else f"NULL AS {c}" for c in OBS_COLUMNS)  # an older read-only store
        try:
            con.execute("BEGIN")  # one consistent snapshot for the four reads
            try:
                obs = pd.read_sql_query(f"SELECT {cols} FROM observations "
                                        f"{'WHERE ' + where if where else ''} ORDER BY rowid", con, params=params)
                tasks = pd.read_sql_query("SELECT * FROM tasks", con)
                methods = pd.read_sql_query("SELECT * FROM methods", con)
                hardware = pd.read_sql_query("SELECT * FROM hardware", con)
                directions = dict(con.execute("SELECT metric, direction FROM directions").fetchall())
            finally:
                if con.in_transaction:
                    con.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._error(exc, "read") from None
        except pd.errors.DatabaseError as exc:  # pandas wraps the sqlite error
            cause = exc.__cause__ if isinstance(exc.__cause__, sqlite3.Error) else sqlite3.DatabaseError(str(exc))
            raise self._error(cause, "read") from None
        for m in METRIC_NAMES + ("spread",):
            obs[m] = pd.to_numeric(obs[m], errors="coerce").astype(float)
        hardware["price_per_hour"] = pd.to_numeric(hardware["price_per_hour"], errors="coerce").astype(float)
        return obs, tasks, methods, hardware, directions

    def load(self, *, hardware: Iterable[str] | None = None, retracted: str = "exclude") -> "PerfTable":
        """The stored performance table (optionally only some hardware).

        Args:
            retracted: ``exclude`` (default: what fits and suggestions use), ``include``, or
                ``only`` the retracted observations (:meth:`retract`).
        """
        from metasel.data.table import PerfTable

        if retracted not in ("exclude", "include", "only"):
            raise InputDataError(f"retracted: expected 'exclude', 'include' or 'only', got {retracted!r}")
        where, params = "", ()
        if hardware is not None:
            hw = list(hardware)
            where, params = f"hardware_id IN ({', '.join('?' * len(hw))})", tuple(hw)
        obs, tasks, methods, hardware_f, directions = self._frames(where, params, retracted)
        table = PerfTable(obs, tasks, methods, hardware_f, directions=directions, source=str(self.path))
        if hardware is not None:
            table = table.filter(hardware=hw)
        return table

    def _query(self, sql: str, params: tuple = ()) -> list:
        if self._con is None:
            raise StoreError(f"{self.path}: the store is closed")
        try:
            return self._con.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc, "read") from None

    def _not_retracted(self) -> str:
        return " AND obs_id NOT IN (SELECT obs_id FROM retractions)" if self._has_retractions else ""

    def count(self) -> int:
        """Observations in the log, retracted ones included."""
        return self._query("SELECT COUNT(*) FROM observations")[0][0]

    def measured_cells(self, hardware_id: str, *, clean_only: bool = False) -> set[tuple[str, str]]:
        """(task_id, method) pairs with an observation on ``hardware_id`` that is not retracted
        (with ``clean_only``: one not flagged ``noisy``, so noisy cells are measured again)."""
        noisy = f" AND instr(flags, '{NOISY}') = 0" if clean_only else ""
        rows = self._query(f"SELECT DISTINCT task_id, method FROM observations WHERE hardware_id=?"
                           f"{self._not_retracted()}{noisy}", (hardware_id,))
        return {(t, m) for t, m in rows}

    def retract(self, obs_ids: Iterable[str], reason: str) -> int:
        """Retract observations: they stay in the append-only log, and reads (:meth:`load`, so
        ``fit``, ``suggest``, ``export``) leave them out. All ids must be stored, else nothing is
        written. Returns how many were newly retracted."""
        ids = list(dict.fromkeys(obs_ids))
        if not reason.strip():
            raise InputDataError("retract: expected a reason (what was wrong with the measurement), got ''")
        with self._transaction("retract observations in") as con:
            for i in ids:
                if con.execute("SELECT 1 FROM observations WHERE obs_id=?", (i,)).fetchone() is None:
                    raise InputDataError(f"{self.path}: no observation {i!r}; nothing was retracted")
            before = con.total_changes
            con.executemany("INSERT OR IGNORE INTO retractions VALUES (?, ?, ?)",
                            [(i, reason, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())) for i in ids])
            return con.total_changes - before

    def hardware_ids(self) -> list[str]:
        """The hardware ids the store has observations of (retracted ones aside)."""
        return [r[0] for r in self._query(
            f"SELECT DISTINCT hardware_id FROM observations WHERE 1{self._not_retracted()} ORDER BY hardware_id")]

    def num_retracted(self) -> int:
        return self._query("SELECT COUNT(*) FROM retractions")[0][0] if self._has_retractions else 0

    def schema_version(self) -> int:
        return self._query("PRAGMA user_version")[0][0]


def _json_default(v):
    """numpy scalars (and anything else with ``item``) in a round's result, as plain numbers."""
    if hasattr(v, "item"):
        return v.item()
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


def _lock_holders(path: Path) -> str:
    """Which other processes have the store open ("pid 123: metasel collect …"), as far as /proc shows."""
    import glob

    targets = {str(path.resolve()), str(path.resolve()) + "-wal", str(path.resolve()) + "-shm"}
    found = []
    for fd in glob.glob("/proc/[0-9]*/fd/*"):
        try:
            if os.readlink(fd) not in targets:
                continue
            pid = int(fd.split("/")[2])
        except (OSError, ValueError):
            continue
        if pid == os.getpid() or any(p == pid for p, _ in found):
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            cmd = "?"
        found.append((pid, " ".join(cmd.split())[:80]))
    return ", ".join(f"pid {p}: {c}" for p, c in found[:3])


def _union_features(old: str | None, new: str | None) -> str | None:
    """The JSON of both feature sets when they agree on every feature they share, else None."""
    try:
        a, b = json.loads(old or "{}"), json.loads(new or "{}")
    except json.JSONDecodeError:
        return None
    if not isinstance(a, dict) or not isinstance(b, dict) or any(a[k] != b[k] for k in a.keys() & b.keys()):
        return None
    return json.dumps({**a, **b}, sort_keys=True, separators=(",", ":"))


def _sql_value(v):
    if v is None:
        return None
    try:
        import pandas as pd

        if v is pd.NA:
            return None
    except ImportError:  # pragma: no cover
        pass
    if isinstance(v, float) and v != v:
        return None
    if hasattr(v, "item"):
        return v.item()
    return v


# ---------------------------------------------------------------------- export / import

EXPORT_FORMAT = "metasel-export"
_FRAMES = ("observations", "tasks", "methods", "hardware")


def export_table(table: "PerfTable", out_dir: str | os.PathLike, *, fmt: str = "csv") -> Path:
    """Write a table as a folder: four CSV or Parquet files and ``manifest.json``.

    Files are written under temporary names and renamed into place, so a killed export
    leaves no half-written file under a final name.
    """
    from metasel import __version__

    if fmt not in ("csv", "parquet"):
        raise InputDataError(f"export format: expected 'csv' or 'parquet', got {fmt!r}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputDataError(f"{out}: expected a folder to export into, got a file")
    out.mkdir(parents=True, exist_ok=True)
    frames = {name: getattr(table, name) for name in _FRAMES}
    for name, frame in frames.items():
        final = out / f"{name}.{fmt}"
        tmp = out / f".{name}.{fmt}.tmp"
        if fmt == "csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
        os.replace(tmp, final)
    manifest = {
        "format": EXPORT_FORMAT, "schema_version": SCHEMA_VERSION, "file_format": fmt,
        "metasel_version": __version__, "directions": table.directions,
        "counts": {name: int(len(f)) for name, f in frames.items()},
    }
    tmp = out / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, out / "manifest.json")
    return out


def read_export(path: str | os.PathLike) -> "PerfTable":
    """Read a folder written by :func:`export_table` (or ``metasel export``)."""
    import pandas as pd

    from metasel.data.table import PerfTable

    path = Path(path)
    manifest_path = path / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputDataError(f"{path}: expected a metasel export folder with manifest.json") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputDataError(f"{manifest_path}: expected JSON, got unreadable text ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT:
        raise InputDataError(f"{manifest_path}: expected format {EXPORT_FORMAT!r}, got {manifest.get('format') if isinstance(manifest, dict) else manifest!r}")
    version = manifest.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise InputDataError(f"{manifest_path}: schema_version {version!r} is newer than this metasel reads ({SCHEMA_VERSION}); upgrade metasel")
    fmt = manifest.get("file_format", "csv")
    frames = {}
    for name in _FRAMES:
        f = path / f"{name}.{fmt}"
        try:
            if fmt == "csv":
                frames[name] = pd.read_csv(f, dtype={c: str for c in ("obs_id", "task_id", "method", "hardware_id", "name",
                                                                        "spec", "features", "techniques", "description", "specs",
                                                                        "message", "timestamp", "versions", "source", "flags", "machine", "status")},
                                           keep_default_na=False, na_values={m: [""] for m in (*METRIC_NAMES, "spread", "seed", "repeats", "price_per_hour")})
            else:
                frames[name] = pd.read_parquet(f)
        except FileNotFoundError as exc:
            raise InputDataError(f"{f}: missing from the export") from exc
        except Exception as exc:  # pandas/pyarrow raise many kinds for a corrupt file
            raise InputDataError(f"{f}: cannot read it as {fmt} ({type(exc).__name__}: {exc})") from exc
    directions = manifest.get("directions") or {}
    return PerfTable(frames["observations"], frames["tasks"], frames["methods"], frames["hardware"],
                     directions=directions, source=str(path))
