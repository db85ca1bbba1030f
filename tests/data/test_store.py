import sqlite3
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from metasel import InputDataError, PerfTable, Store, StoreError, export_table, read_export
from metasel.data.store import SCHEMA_VERSION


def small_table(n=3, hw="h", **extra):
    return PerfTable(
        [{"task_id": f"t{i}", "method": "m", "hardware_id": hw, "throughput_tok_s": float(i + 1), **extra} for i in range(n)],
        tasks=[{"task_id": f"t{i}", "name": f"task {i}", "spec": {"i": i}} for i in range(n)],
        methods=[{"method": "m", "techniques": {"sdpa": 1}}],
        hardware=[{"hardware_id": hw, "specs": {"cores": 2}, "price_per_hour": 0.5}],
    )


def test_append_load_roundtrip_and_idempotent(tmp_path):
    path = tmp_path / "s.sqlite"
    t = small_table()
    with Store(path) as s:
        assert s.append(t) == (3, 0)
        assert s.append(t) == (0, 3)
        back = s.load()
    assert len(back) == 3
    cols = ["obs_id", "task_id", "throughput_tok_s"]
    pd.testing.assert_frame_equal(back.observations[cols].sort_values("obs_id").reset_index(drop=True),
                                  t.observations[cols].sort_values("obs_id").reset_index(drop=True))
    assert back.hardware["price_per_hour"].item() == 0.5
    assert back.tasks.set_index("task_id").loc["t1", "spec"] == '{"i":1}'
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_observations_are_append_only(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as s:
        s.append(small_table())
    con = sqlite3.connect(path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("UPDATE observations SET throughput_tok_s = 0")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("DELETE FROM observations")
    con.close()


def test_conflicting_descriptor_writes_nothing(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as s:
        s.append(small_table())
    before = path.read_bytes()
    other = PerfTable([{"task_id": "t9", "method": "m", "hardware_id": "h", "throughput_tok_s": 1.0}],
                      methods=[{"method": "m", "techniques": {"sdpa": 0}}])
    with Store(path) as s:
        with pytest.raises(InputDataError, match="stored with another descriptor"):
            s.append(other)
        assert s.count() == 3
    assert path.read_bytes() == before


def test_direction_conflict(tmp_path):
    with Store(tmp_path / "s.sqlite") as s:
        s.append(PerfTable([{"task_id": "a", "method": "m", "hardware_id": "h", "value": 1.0}], directions={"value": "min"}))
        with pytest.raises(InputDataError, match="stored as 'min'"):
            s.append(PerfTable([{"task_id": "b", "method": "m", "hardware_id": "h", "value": 1.0}], directions={"value": "max"}))


def test_refuses_newer_schema_and_foreign_files(tmp_path):
    newer = tmp_path / "newer.sqlite"
    Store(newer).close()
    with sqlite3.connect(newer) as con:
        con.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer metasel"):
        Store(newer)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="not a metasel store"):
        Store(junk)
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as con:
        con.execute("CREATE TABLE x (a)")
    with pytest.raises(StoreError, match="not a metasel store"):
        Store(foreign)
    with pytest.raises(StoreError, match="no store here"):
        Store(tmp_path / "missing.sqlite", create=False)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_import_roundtrip_merges_without_duplicates(tmp_path, fmt):
    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    with Store(a) as s:
        s.append(small_table(3, hw="node-a"))
    with Store(b) as s:
        s.append(small_table(2, hw="node-b", seed=7))
        export_table(s.load(), tmp_path / "exp", fmt=fmt)
    imported = read_export(tmp_path / "exp")
    with Store(a) as s:
        assert s.append(imported) == (2, 0)
        assert s.append(read_export(tmp_path / "exp")) == (0, 2)
        merged = s.load()
    assert len(merged) == 5 and set(merged.hardware["hardware_id"]) == {"node-a", "node-b"}
    assert merged.observations["seed"].dropna().tolist() == [7, 7]


def test_newer_export_refused(tmp_path):
    export_table(small_table(), tmp_path / "e")
    m = tmp_path / "e" / "manifest.json"
    m.write_text(m.read_text().replace(f'"schema_version": {SCHEMA_VERSION}', '"schema_version": 99'))
    with pytest.raises(InputDataError, match="newer"):
        read_export(tmp_path / "e")


WRITER = textwrap.dedent("""
    import sys
    from metasel import PerfTable, Store
    path, who, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = Store(path)
    for i in range(n):
        store.append(PerfTable([{"task_id": f"{who}-{i}", "method": "m", "hardware_id": "h",
                                 "throughput_tok_s": float(i), "source": who}]))
    store.close()
""")


@pytest.mark.reliability
def test_two_processes_appending_and_a_reader_lose_nothing(tmp_path):
    path = tmp_path / "shared.sqlite"
    Store(path).close()
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), who, "1000"]) for who in ("p1", "p2")]
    seen = []
    with Store(path, readonly=True) as reader:  # reads all along: every snapshot is whole and counts only grow
        while any(p.poll() is None for p in procs):
            t = reader.load()
            seen.append(len(t))
            assert t.observations["obs_id"].is_unique
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    assert seen == sorted(seen) and len(seen) >= 2
    with Store(path) as s:
        t = s.load()
    assert len(t) == 2000
    assert t.observations["obs_id"].nunique() == 2000
    assert t.observations.groupby("source").size().to_dict() == {"p1": 1000, "p2": 1000}


def test_a_schema_1_store_gains_the_serving_columns_and_keeps_its_observations(tmp_path):
    from metasel._schema import SCHEMA2_METRICS

    path = tmp_path / "old.sqlite"
    with Store(path) as s:
        s.append(small_table())
        before = s.load().observations.sort_values("obs_id").reset_index(drop=True)
    con = sqlite3.connect(path)  # make it the schema-1 file an older metasel wrote: no schema-2 columns
    con.execute("DROP TRIGGER obs_no_update")
    con.execute("DROP TRIGGER obs_no_delete")
    for col in (*SCHEMA2_METRICS, "machine"):
        con.execute(f"ALTER TABLE observations DROP COLUMN {col}")
    con.execute("DROP TABLE retractions")
    con.execute("PRAGMA user_version=1")
    con.commit()
    con.close()
    with Store(path) as s:
        assert s.schema_version() == SCHEMA_VERSION
        after = s.load().observations.sort_values("obs_id").reset_index(drop=True)
        assert s.append(small_table()) == (0, 3)  # the same observations hash to the same ids
    pd.testing.assert_frame_equal(after, before)
    with sqlite3.connect(path) as con:
        cols = {r[1] for r in con.execute("PRAGMA table_info(observations)")}
        assert {*SCHEMA2_METRICS, "machine"} <= cols
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            con.execute("DELETE FROM observations")


def test_retracted_observations_stay_in_the_log_and_leave_every_read(tmp_path):
    with Store(tmp_path / "s.sqlite") as s:
        s.append(small_table())
        ids = sorted(s.load().observations["obs_id"])
        with pytest.raises(InputDataError, match="no observation 'o-nosuch'; nothing was retracted"):
            s.retract([ids[0], "o-nosuch"], "busy machine")
        assert s.num_retracted() == 0
        with pytest.raises(InputDataError, match="expected a reason"):
            s.retract([ids[0]], " ")
        assert s.retract([ids[0], ids[0]], "busy machine") == 1
        assert s.retract([ids[0]], "again") == 0  # already retracted
        assert sorted(s.load().observations["obs_id"]) == ids[1:]
        assert sorted(s.load(retracted="only").observations["obs_id"]) == ids[:1]
        assert len(s.load(retracted="include")) == 3 and s.count() == 3
        retracted_cell = s.load(retracted="only").observations[["task_id", "method"]].iloc[0]
        assert tuple(retracted_cell) not in s.measured_cells("h")  # collect measures it again
        assert s.append(small_table()) == (0, 3)  # re-appending does not bring it back
        assert len(s.load()) == 2
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            s._con.execute("DELETE FROM observations")


def test_noisy_cells_are_measured_again_on_request(tmp_path):
    with Store(tmp_path / "s.sqlite") as s:
        s.append(small_table(2))
        s.append(small_table(3, flags="noisy").filter(tasks=["t2"]))
        assert s.measured_cells("h") == {("t0", "m"), ("t1", "m"), ("t2", "m")}
        assert s.measured_cells("h", clean_only=True) == {("t0", "m"), ("t1", "m")}


def test_a_locked_store_fails_after_a_bounded_wait_naming_the_holder(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as s:
        s.append(small_table())
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sqlite3, sys, time
        con = sqlite3.connect({str(path)!r}, isolation_level=None)
        con.execute("BEGIN IMMEDIATE")
        con.execute("INSERT INTO meta VALUES ('lock', 'held')")
        print("locked", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with Store(path, timeout=1.0) as s:
            with pytest.raises(StoreError, match=rf"another process holds the store's write lock \(open in pid {holder.pid}"):
                s.append(small_table(4))
            assert len(s.load()) == 3  # readers are not blocked (WAL)
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    with Store(path) as s:
        assert s.append(small_table(4)) == (1, 3)


def test_a_damaged_store_is_one_clear_error(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as s:
        s.append(small_table(300))
    with open(path, "r+b") as f:  # overwrite pages in the middle of the file
        f.seek(4096 * 2)
        f.write(b"\xff" * 8192)
    with pytest.raises(StoreError, match="the store file is damaged .*malformed"):
        with Store(path, readonly=True) as s:
            s.load()


def test_a_read_only_open_never_writes_not_even_a_schema_upgrade(tmp_path):
    import hashlib

    path = tmp_path / "old.sqlite"
    with Store(path) as s:
        s.append(small_table())
    con = sqlite3.connect(path)  # an older store: no machine column, no retractions
    con.execute("ALTER TABLE observations DROP COLUMN machine")
    con.execute("DROP TABLE retractions")
    con.execute("PRAGMA user_version=2")
    con.commit()
    con.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with Store(path, readonly=True) as s:
        t = s.load()
        assert len(t) == 3 and (t.observations["machine"] == "").all() and s.num_retracted() == 0
        with pytest.raises(StoreError, match="opened read-only"):
            s.append(small_table(4))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    with pytest.raises(StoreError, match="an empty file, not a metasel store"):
        Store(empty, readonly=True)
    assert empty.read_bytes() == b""
    with pytest.raises(StoreError, match="no folder"):
        Store(tmp_path / "typo" / "s.sqlite")
    assert not (tmp_path / "typo").exists()
