import os
from pathlib import Path

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
LLM_BENCH = SHARED / "data" / "llm_inference_bench" / "llm_inference_bench.csv"


@pytest.fixture(autouse=True)
def _isolated_store(tmp_path, monkeypatch):
    """No test touches the user's default store."""
    monkeypatch.setenv("METASEL_STORE", str(tmp_path / "default-store.sqlite"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


@pytest.fixture
def llm_bench_path():
    assert LLM_BENCH.exists(), f"the shared LLM-Inference-Bench table is expected at {LLM_BENCH}"
    return LLM_BENCH


@pytest.fixture
def getkey():
    """Fresh, deterministic JAX keys: getkey() -> key 0, 1, 2, ... of this test."""
    import jax

    counter = iter(range(10**6))
    base = jax.random.key(0)
    return lambda: jax.random.fold_in(base, next(counter))
