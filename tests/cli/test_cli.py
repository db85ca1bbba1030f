import json
import os
import subprocess
import sys

from click.testing import CliRunner

from metasel import __version__
from metasel.cli import main

HEAVY = ("torch", "jax", "transformers", "pandas", "flax", "numpyro", "ray")


def test_help_imports_no_heavy_backend():
    code = ("import sys; from metasel.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert "import" in out.stdout and "show" in out.stdout


def test_import_metasel_is_light():
    code = f"import sys, metasel; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_version():
    r = CliRunner().invoke(main, ["--version"])
    assert r.exit_code == 0 and __version__ in r.output


def test_usage_error_is_exit_2():
    r = CliRunner().invoke(main, ["import"])
    assert r.exit_code == 2


def test_show_empty_and_missing_store(tmp_path):
    r = CliRunner().invoke(main, ["--store", str(tmp_path / "none.sqlite"), "show"])
    assert r.exit_code == 1 and "no store here" in r.stderr


def test_real_subprocess_import_show_export(tmp_path, llm_bench_path):
    env = {**os.environ, "METASEL_STORE": str(tmp_path / "s.sqlite")}
    run = lambda *a: subprocess.run([sys.executable, "-m", "metasel", *a], capture_output=True, text=True, env=env)  # noqa: E731
    r = run("import", str(llm_bench_path))
    assert r.returncode == 0, r.stderr
    assert "4739 new observations" in r.stdout
    r = run("show", "--top", "3")
    assert r.returncode == 0, r.stderr
    assert "350 tasks x 6 methods x 23 hardware = 48,300 cells; observed 4,682 (9.7%)" in r.stdout
    assert "vLLM" in r.stdout and "843" in r.stdout
    r = run("show", "--json")
    summary = json.loads(r.stdout)
    assert summary["best_method_counts"]["TensorRT-LLM"] == 527 and len(summary["best"]) == 1392
    r = run("export", str(tmp_path / "exp"), "--format", "parquet")
    assert r.returncode == 0 and (tmp_path / "exp" / "observations.parquet").exists()
    r = run("import", str(tmp_path / "exp"))
    assert "0 new observations, 4739 already stored" in r.stdout
    r = run("validate", str(tmp_path / "missing.yaml"))
    assert r.returncode == 1 and r.stderr.startswith("metasel: error: ") and "Traceback" not in r.stderr
