"""The malformed-input corpus (tests/data/corpus): every bad input is one clean line, the right exit
code, no traceback, no hang, and no store changed — the store it was pointed at, and a store
file a read-only command was given."""

import hashlib
import json
import shutil
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from metasel.cli import main

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"
CASES = json.loads((CORPUS / "cases.json").read_text())
DATA = "task,method,value\ni0,a,1\ni0,b,2\ni1,a,3\ni1,b,1\ni2,a,2\ni2,b,2\n"
SPEC = "model: {preset: llama-5m}\nworkload: {prompt_len: 16, output_len: 4}\n"
#: seconds any one case may take (a hang, or work done before the check, fails it)
CASE_BUDGET_S = 20.0


def _digest(path: Path) -> str:
    if path.is_dir():
        return hashlib.sha256(b"".join(_digest(p).encode() for p in sorted(path.rglob("*")) if p.is_file())).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    base = tmp_path_factory.mktemp("corpus")
    data = base / "data.csv"
    data.write_text(DATA)
    store = base / "store.sqlite"
    r = CliRunner().invoke(main, ["--store", str(store), "import", str(data), "--objective", "min"])
    assert r.exit_code == 0, r.output
    return store


def test_the_corpus_is_large_and_every_file_is_used():
    assert len(CASES) >= 150
    used = {c["file"] for c in CASES if c["file"]}
    on_disk = {p.name for p in (CORPUS / "files").iterdir()}
    assert used == on_disk


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_a_bad_input_is_one_line_the_right_exit_code_and_changes_no_store(tmp_path, template, case):
    store = tmp_path / "store.sqlite"
    shutil.copy(template, store)
    (tmp_path / "data.csv").write_text(DATA)
    (tmp_path / "spec.yaml").write_text(SPEC)
    target = None
    if case["file"]:
        target = tmp_path / case["file"]
        src = CORPUS / "files" / case["file"]
        shutil.copytree(src, target) if src.is_dir() else shutil.copy(src, target)
    subs = {"{FILE}": str(target), "{STORE}": str(store), "{TMP}": str(tmp_path), "{DATA}": str(tmp_path / "data.csv"),
            "{SPEC}": str(tmp_path / "spec.yaml")}
    args = []
    for a in case["args"]:
        for k, v in subs.items():
            a = a.replace(k, v)
        args.append(a)
    before = _digest(store), (_digest(target) if target is not None else None)
    t0 = time.monotonic()
    r = CliRunner().invoke(main, args)
    took = time.monotonic() - t0
    assert r.exit_code == case["exit"], (r.output, r.exception)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("metasel: error: "), r.stderr[:2000]
    assert len(lines[0]) < 1000, lines[0][:300]  # a bounded message, whatever the input's size
    assert "Traceback" not in r.output
    assert took < CASE_BUDGET_S, f"{took:.1f}s"
    assert (_digest(store), _digest(target) if target is not None else None) == before
