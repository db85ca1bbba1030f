"""Every example script runs (with tiny arguments) and says what it should."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_api_tour_runs():
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "api_tour.py"), "--steps", "30"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith("zero-shot: best predicted ")
    assert lines[1].startswith("loop: benchmarked [") and "recommends" in lines[1]
    assert [line.split()[0] for line in lines[2:]] == ["single_best", "gbm", "metasel"]
