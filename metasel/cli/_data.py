"""``metasel import``, ``show`` and ``export``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from metasel.cli import main
from metasel._format import number, table
from metasel.errors import InputDataError

FORMATS = ("auto", "metasel", "generic", "llm-inference-bench", "vllm-bench", "vllm-sweep", "guidellm", "aiperf", "llmperf")
#: formats whose files come from serving benchmarks (metasel.data.serving)
SERVING = FORMATS[4:]


def open_store(ctx: click.Context, *, create: bool = True, readonly: bool = False):
    """The ``--store`` (or default) store; ``readonly`` for commands that only read it (nothing is written,
    not even a schema upgrade)."""
    from metasel.data.store import Store

    return Store(ctx.obj.get("store_path"), create=create and not readonly, readonly=readonly)


def check_output_path(path: str | None, what: str, *, folder: bool = False) -> None:
    """Fail before any work when ``path`` (a file, or with ``folder`` a folder, made here if it is
    missing) cannot be written: a file is created in the place and removed again."""
    import os
    import tempfile

    if not path:
        return
    p = Path(path)
    if folder and p.exists() and not p.is_dir():
        raise InputDataError(f"{what} {path}: expected a folder, got a file")
    if not folder and p.is_dir():
        raise InputDataError(f"{what} {path}: expected a file name, got a folder")
    place = p if folder else p.parent
    try:
        if folder:
            place.mkdir(parents=True, exist_ok=True)
        elif not place.is_dir():
            raise InputDataError(f"{what} {path}: no folder {str(place)!r}")
        fd, tmp = tempfile.mkstemp(prefix=".metasel-check-", dir=place)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise InputDataError(f"{what} {path}: cannot write there ({exc.strerror or exc})") from None


def _detect_format(path: Path) -> str:
    from metasel.data.serving import SERVING_FORMATS, detect

    if path.is_dir():
        if (path / "manifest.json").is_file():
            return "metasel"
        # a folder of serving results (a vllm bench sweep, LLMPerf's results, …): read_serving sorts them
        return detect(path) or "serving"
    try:
        with path.open("rb") as fh:
            start = fh.read(4096).decode("utf-8-sig", errors="replace").lstrip()
    except OSError as exc:
        raise InputDataError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    head = start.split("\n", 1)[0].strip().lower()
    if head.startswith("{") or head.startswith("["):
        found = detect(path)
        if found is None:
            raise InputDataError(f"{path}: a JSON file, but not a result file of {', '.join(SERVING_FORMATS)}; "
                                 f"pass --format")
        return found
    cols = {c.strip() for c in head.split(",")}
    if {"framework", "batch_size_semantics"} <= cols:
        return "llm-inference-bench"
    if {"task", "method", "value"} <= cols:
        return "generic"
    raise InputDataError(
        f"{path}: cannot tell the format from its header (expected a metasel export folder, "
        f"a 'task,method,value[,status]' CSV, llm_inference_bench.csv, or a serving benchmark's JSON: "
        f"{', '.join(SERVING_FORMATS)}); pass --format"
    )


def hardware_option(value: str | None, *, threads: int | None = None):
    """``--hardware``: ``auto`` (probe this machine, with ``threads``) or a hardware YAML file, as a
    :class:`~metasel.spec.HardwareSpec`; None when the option was not given."""
    if value in (None, "", "any"):
        return None
    from metasel._check import Checker
    from metasel.spec import HardwareSpec, parse_hardware, read_yaml

    if value == "auto":
        return HardwareSpec(auto=True, threads=threads)
    if not Path(value).is_file():
        raise InputDataError(f"--hardware {value!r}: expected 'auto' or a hardware YAML file (name, device, "
                             f"count, memory_gb, …, as for suggest), got no such file")
    return parse_hardware(Checker(value), read_yaml(value), "hardware")


def serving_hardware(hardware: str | None) -> dict | None:
    """``--hardware`` for a serving benchmark's results as a hardware descriptor, or None (only
    files that name their GPUs can then be read)."""
    spec = hardware_option(hardware)
    if spec is None:
        return None
    from metasel.app.descriptors import hardware_descriptor

    return hardware_descriptor(spec)


def read_source(source: str, fmt: str, *, features=None, objective="min", hardware="any",
                extended=False, include_flagged=False, llamacpp_batched="mark", overrides=()):
    """Read any supported input into a validated PerfTable (nothing is written)."""
    from metasel.data import importers
    from metasel.data.store import read_export

    path = Path(source)
    if not path.exists():
        raise InputDataError(f"{path}: no such file or folder")
    if fmt == "auto":
        fmt = _detect_format(path)
    if fmt in SERVING or fmt == "serving":
        from metasel.data.serving import parse_overrides, read_serving

        return read_serving(path, None if fmt == "serving" else fmt, overrides=parse_overrides(overrides),
                            hardware=serving_hardware(hardware))
    if overrides:
        raise InputDataError(f"--set: only for a serving benchmark's results ({', '.join(SERVING)}), not {fmt}")
    if fmt == "metasel":
        return read_export(path)
    if fmt == "generic":
        return importers.read_generic_csv(path, features_csv=features, objective=objective, hardware=hardware)
    return importers.read_llm_inference_bench(path, extended=extended, include_flagged=include_flagged,
                                              llamacpp_batched=llamacpp_batched)


@main.command("import")
@click.argument("source", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True,
              help="Input format; auto looks at the folder or the CSV header.")
@click.option("--features", type=click.Path(dir_okay=False), help="generic: features CSV keyed by task.")
@click.option("--objective", type=click.Choice(["min", "max"]), default="min", show_default=True,
              help="generic: whether smaller or larger values are better.")
@click.option("--hardware", default="any", show_default=True,
              help="generic: hardware id for rows without one; serving results: 'auto' (this machine) or a "
                   "hardware YAML file (the machine that served the requests).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="serving results: what the file does not state (model, engine, method, or an engine setting "
                   "such as max_num_seqs=64, dtype=bfloat16); repeatable.")
@click.option("--extended", is_flag=True, help="llm-inference-bench: add quantisation rows (method = framework+precision).")
@click.option("--include-flagged", is_flag=True, help="llm-inference-bench: keep rows flagged for latency collapse.")
@click.option("--llamacpp-batched", type=click.Choice(["mark", "drop"]), default="mark", show_default=True,
              help="llm-inference-bench: llama.cpp rows at batch > 1 (one-sequence semantics).")
@click.pass_context
def import_cmd(ctx, source, fmt, features, objective, hardware, overrides, extended, include_flagged, llamacpp_batched):
    """Import a metasel export, a generic CSV, the LLM-Inference-Bench table, or the results of a
    serving benchmark (vllm bench serve / sweep, GuideLLM, AIPerf, LLMPerf) into the store.

    The input is read and validated completely before the store is opened, and the
    append is one transaction: a bad input leaves the store as it was. Observations
    already in the store are skipped, so importing twice adds nothing.
    """
    tbl = read_source(source, fmt, features=features, objective=objective, hardware=hardware,
                      extended=extended, include_flagged=include_flagged, llamacpp_batched=llamacpp_batched,
                      overrides=overrides)
    with open_store(ctx) as store:
        result = store.append(tbl)
        click.echo(f"imported {source}: {result.added} new observations, {result.skipped} already stored "
                   f"({len(tbl.tasks)} tasks, {len(tbl.methods)} methods, {len(tbl.hardware)} hardware) into {store.path}")


def _default_metric(tbl) -> str:
    from metasel._schema import METRIC_NAMES

    ok = tbl.observations[tbl.observations["status"] == "ok"]
    counts = {m: int(ok[m].notna().sum()) for m in METRIC_NAMES}
    return max(counts, key=lambda m: (counts[m], m == "throughput_tok_s"))


@main.command("show")
@click.option("--metric", default=None, help="Metric for best methods [default: the one measured most].")
@click.option("--hardware", "hardware_ids", multiple=True, help="Only this hardware id (repeatable).")
@click.option("--top", default=15, show_default=True, type=click.IntRange(0), help="Best-method rows to list.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def show_cmd(ctx, metric, hardware_ids, top, as_json):
    """Summarise the store: counts, coverage of the task × method × hardware cube, best methods."""
    from metasel._schema import METRICS, NOISY

    with open_store(ctx, readonly=True) as store:
        _known_hardware(store, hardware_ids)
        tbl = store.load(hardware=hardware_ids or None)
        path, schema, retracted = store.path, store.schema_version(), store.num_retracted()
    if len(tbl) == 0:
        click.echo(f"store: {path} (schema {schema}): empty")
        return
    metric = metric or _default_metric(tbl)
    if metric not in METRICS:
        raise InputDataError(f"--metric: expected one of {list(METRICS)}, got {metric!r}")
    cov = tbl.coverage()
    status = tbl.status_counts()
    best = tbl.best_methods(metric)
    dist = best["method"].value_counts()
    per_method = tbl.observations.groupby("method").size()
    per_hw = tbl.observations.groupby("hardware_id").size()
    names = dict(zip(tbl.tasks["task_id"], tbl.tasks["name"]))
    noisy = int(tbl.observations["flags"].str.contains(NOISY, regex=False).sum())
    if as_json:
        click.echo(json.dumps({
            "store": str(path), "schema_version": schema, "coverage": cov, "status": status,
            "noisy": noisy, "retracted": retracted,
            "metric": metric, "direction": tbl.direction(metric),
            "best_method_counts": {k: int(v) for k, v in dist.items()},
            "observations_per_method": {k: int(v) for k, v in per_method.items()},
            "observations_per_hardware": {k: int(v) for k, v in per_hw.items()},
            "best": [{"task_id": r.task_id, "task": names.get(r.task_id), "hardware_id": r.hardware_id,
                      "method": r.method, "value": float(r.value), "num_methods": int(r.num_methods)}
                     for r in best.itertuples()],
        }, indent=2))
        return
    click.echo(f"store: {path} (schema {schema})")
    click.echo(f"observations: {cov['observations']:,}  (" + ", ".join(f"{k} {v:,}" for k, v in status.items()) + ")")
    if noisy or retracted:
        click.echo(f"quality: {noisy:,} flagged noisy (a busy machine or disagreeing repeats; fits weigh them less), "
                   f"{retracted:,} retracted (kept in the log, left out of every read)")
    click.echo(f"cube: {cov['tasks']:,} tasks x {cov['methods']:,} methods x {cov['hardware']:,} hardware = {cov['cube']:,} cells; "
               f"observed {cov['cells_observed']:,} ({cov['fraction_observed']:.1%}), ok {cov['cells_ok']:,}")
    click.echo("")
    click.echo(table(["method", "observations"], [(m, f"{n:,}") for m, n in per_method.items()], align="lr"))
    click.echo("")
    hw_names = dict(zip(tbl.hardware["hardware_id"], tbl.hardware["name"]))
    click.echo(table(["hardware", "name", "observations"],
                     [(h, hw_names.get(h, h) if hw_names.get(h, h) != h else "", f"{n:,}") for h, n in per_hw.items()],
                     align="llr"))
    click.echo("")
    direction = tbl.direction(metric)
    click.echo(f"best method per (task, hardware) by {metric} ({direction}), over {len(best):,} pairs with >= 2 ok methods:")
    if len(best):
        click.echo(table(["method", "best in", "share"],
                         [(m, f"{n:,}", f"{n / len(best):.1%}") for m, n in dist.items()], align="lrr"))
    engines = _engine_of_methods(tbl)
    if len(best) and len(set(engines.values())) > 1:
        by_engine = best["method"].map(lambda m: engines.get(m, "transformers")).value_counts()
        click.echo("")
        click.echo(f"best engine per (task, hardware) by {metric}:")
        click.echo(table(["engine", "best in", "share"],
                         [(e, f"{n:,}", f"{n / len(best):.1%}") for e, n in by_engine.items()], align="lrr"))
    if top and len(best):
        click.echo("")
        rows = [(names.get(r.task_id, r.task_id), r.hardware_id, r.method, number(r.value), r.num_methods)
                for r in best.head(top).itertuples()]
        click.echo(table(["task", "hardware", "best", metric, "of"], rows, align="lllrr"))
        if len(best) > top:
            click.echo(f"... {len(best) - top:,} more (--top N, or --json for all)")


def _engine_of_methods(tbl) -> dict[str, str]:
    """method -> its serving engine (the ``engine_*`` technique it has), ``transformers`` for the others."""
    from metasel.data.table import descriptor_map
    from metasel.domain.techniques import engine_of

    return {name: engine_of(rec.get("techniques")) for name, rec in descriptor_map(tbl.methods, "method").items()}


@main.command("export")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True)
@click.option("--hardware", "hardware_ids", multiple=True, help="Only this hardware id (repeatable).")
@click.pass_context
def export_cmd(ctx, out, fmt, hardware_ids):
    """Export the store as a folder (4 tables + manifest.json) that 'metasel import' reads back."""
    from metasel.data.store import export_table

    check_output_path(out, "export", folder=True)
    with open_store(ctx, readonly=True) as store:
        _known_hardware(store, hardware_ids)
        tbl = store.load(hardware=hardware_ids or None)
    export_table(tbl, out, fmt=fmt)
    click.echo(f"exported {len(tbl):,} observations ({len(tbl.tasks)} tasks, {len(tbl.methods)} methods, "
               f"{len(tbl.hardware)} hardware) to {out} as {fmt}")


def _known_hardware(store, hardware_ids) -> None:
    """A ``--hardware`` id the store does not have is an error naming the ones it has."""
    if not hardware_ids:
        return
    known = store.hardware_ids()
    for h in hardware_ids:
        if h not in known:
            shown = ", ".join(known[:8]) + (f", … ({len(known)} in all)" if len(known) > 8 else "")
            raise InputDataError(f"--hardware: no hardware {h!r} in {store.path}; known: {shown or 'none (empty store)'}")


@main.command("retract")
@click.argument("obs_ids", nargs=-1)
@click.option("--noisy", "all_noisy", is_flag=True, help="Retract every observation flagged noisy.")
@click.option("--reason", required=True, help="What was wrong with the measurements (kept with the retraction).")
@click.pass_context
def retract_cmd(ctx, obs_ids, all_noisy, reason):
    """Retract bad observations: they stay in the store's append-only log, and fit, suggest,
    tune, show and export leave them out (collect measures their cells again).

    Observation ids are in the obs_id column of an export's observations file."""
    from metasel._schema import NOISY

    if not obs_ids and not all_noisy:
        raise InputDataError("retract: expected observation ids or --noisy, got neither")
    if not reason.strip():
        raise InputDataError("retract --reason: expected what was wrong with the measurements, got ''")
    with open_store(ctx, create=False) as store:
        ids = list(obs_ids)
        if all_noisy:
            obs = store.load().observations
            ids += obs.loc[obs["flags"].str.contains(NOISY, regex=False), "obs_id"].tolist()
        n = store.retract(ids, reason) if ids else 0
        click.echo(f"retracted {n} observation(s) ({len(ids) - n} already retracted) in {store.path}; "
                   f"{store.num_retracted()} retracted in all")


@main.command("validate")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the expanded tasks as JSON.")
def validate_cmd(spec, as_json):
    """Check a task spec or grid spec YAML and list the task(s) it defines."""
    from metasel.spec import parse_grid_spec, parse_task_spec, read_yaml

    raw = read_yaml(spec)
    is_grid = isinstance(raw, dict) and ("axes" in raw or "base" in raw)
    if is_grid:
        grid = parse_grid_spec(raw, source=spec)
        tasks = list(grid.tasks)
        if grid.methods:
            from metasel.bench.methods import resolve

            try:
                resolve(grid.methods)  # what collect would refuse
            except InputDataError as exc:
                raise InputDataError(f"{spec}: methods: {exc}") from None
    else:
        tasks = [parse_task_spec(raw, source=spec)]
    if as_json:
        click.echo(json.dumps([{"task_id": t.task_id, "name": t.name, **t.task_dict()} for t in tasks], indent=2))
        return
    kind = f"grid {grid.name!r} with {len(tasks)} tasks" if is_grid else "task spec"
    click.echo(f"{spec}: valid {kind}")
    rows = [(t.task_id, t.name, t.model.arch, f"{t.model.num_params() / 1e6:.1f}M",
             t.workload.prompt_len.upper(), t.workload.output_len, t.workload.batch_size,
             f"{t.workload.shared_prefix:.2f}") for t in tasks]
    click.echo(table(["task_id", "name", "arch", "params", "prompt", "output", "batch", "prefix"], rows,
                     align="lllrrrrr"))
