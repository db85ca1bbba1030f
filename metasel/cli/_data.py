"""``metasel import``, ``show`` and ``export``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from metasel.cli import main
from metasel._format import number, table
from metasel.errors import InputDataError

FORMATS = ("auto", "metasel", "generic", "llm-inference-bench")


def open_store(ctx: click.Context, *, create: bool = True):
    from metasel.data.store import Store

    return Store(ctx.obj.get("store_path"), create=create)


def _detect_format(path: Path) -> str:
    if path.is_dir():
        return "metasel"
    try:
        with path.open("rb") as fh:
            head = fh.readline(4096).decode("utf-8-sig", errors="replace").strip().lower()
    except OSError as exc:
        raise InputDataError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    cols = {c.strip() for c in head.split(",")}
    if {"framework", "batch_size_semantics"} <= cols:
        return "llm-inference-bench"
    if {"task", "method", "value"} <= cols:
        return "generic"
    raise InputDataError(
        f"{path}: cannot tell the format from its header (expected a metasel export folder, "
        f"a 'task,method,value[,status]' CSV, or llm_inference_bench.csv); pass --format"
    )


def read_source(source: str, fmt: str, *, features=None, objective="min", hardware="any",
                extended=False, include_flagged=False, llamacpp_batched="mark"):
    """Read any supported input into a validated PerfTable (nothing is written)."""
    from metasel.data import importers
    from metasel.data.store import read_export

    path = Path(source)
    if not path.exists():
        raise InputDataError(f"{path}: no such file or folder")
    if fmt == "auto":
        fmt = _detect_format(path)
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
@click.option("--hardware", default="any", show_default=True, help="generic: hardware id for rows without one.")
@click.option("--extended", is_flag=True, help="llm-inference-bench: add quantisation rows (method = framework+precision).")
@click.option("--include-flagged", is_flag=True, help="llm-inference-bench: keep rows flagged for latency collapse.")
@click.option("--llamacpp-batched", type=click.Choice(["mark", "drop"]), default="mark", show_default=True,
              help="llm-inference-bench: llama.cpp rows at batch > 1 (one-sequence semantics).")
@click.pass_context
def import_cmd(ctx, source, fmt, features, objective, hardware, extended, include_flagged, llamacpp_batched):
    """Import a metasel export, a generic CSV or the LLM-Inference-Bench table into the store.

    The input is read and validated completely before the store is opened, and the
    append is one transaction: a bad input leaves the store as it was. Observations
    already in the store are skipped, so importing twice adds nothing.
    """
    tbl = read_source(source, fmt, features=features, objective=objective, hardware=hardware,
                      extended=extended, include_flagged=include_flagged, llamacpp_batched=llamacpp_batched)
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
    from metasel._schema import METRICS

    with open_store(ctx, create=False) as store:
        tbl = store.load(hardware=hardware_ids or None)
        path, schema = store.path, store.schema_version()
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
    if as_json:
        click.echo(json.dumps({
            "store": str(path), "schema_version": schema, "coverage": cov, "status": status,
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

    with open_store(ctx, create=False) as store:
        tbl = store.load(hardware=hardware_ids or None)
    export_table(tbl, out, fmt=fmt)
    click.echo(f"exported {len(tbl):,} observations ({len(tbl.tasks)} tasks, {len(tbl.methods)} methods, "
               f"{len(tbl.hardware)} hardware) to {out} as {fmt}")


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
