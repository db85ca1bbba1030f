"""``metasel suggest`` and ``metasel tune``."""

from __future__ import annotations

import json
import math
import time

import click

from metasel.cli import main
from metasel.cli._data import open_store
from metasel.cli._format import number, table


def _load(ctx, task_path, hardware_path, device):
    from metasel.meta.advise import hardware_descriptor, task_descriptor
    from metasel.spec import _parse_hardware, load_task_spec, read_yaml
    from metasel._check import Checker

    spec = load_task_spec(task_path)
    hw_spec = spec.hardware
    if hardware_path and hardware_path != "auto":
        hw_spec = _parse_hardware(Checker(hardware_path), read_yaml(hardware_path), "hardware")
    elif hardware_path == "auto":
        from metasel.spec import HardwareSpec

        hw_spec = HardwareSpec(auto=True, threads=spec.hardware.threads)
    return spec, task_descriptor(spec), hardware_descriptor(hw_spec, device=device), hw_spec.price_per_hour


def _models(ctx, store, tbl, spec, model_path, say):
    from metasel.meta.advise import model_for

    model = model_for(tbl, spec.objective.metric, store_path=store.path, model_path=model_path, say=say)
    extra = {}
    for metric, limit in (("peak_mem_mb", spec.objective.max_memory_mb), ("latency_ms", spec.objective.latency_slo_ms)):
        if limit is not None and metric != spec.objective.metric:
            extra[metric] = model_for(tbl, metric, store_path=store.path, model_path=None, say=say)
    return model, extra


@main.command("suggest")
@click.option("--task", "task_path", required=True, type=click.Path(dir_okay=False), help="Task spec YAML.")
@click.option("--model", "model_path", type=click.Path(dir_okay=False), help="Model file from 'metasel fit'.")
@click.option("--hardware", "hardware_path", default=None, help="'auto' (probe this machine) or a hardware YAML file "
              "[default: the spec's hardware].")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Write a PNG of predictions with intervals.")
@click.option("--landmarks/--no-landmarks", default=True, show_default=True,
              help="Measure the task's landmarks (seconds, with torch) when the store has none, and store them.")
@click.pass_context
def suggest_cmd(ctx, task_path, model_path, hardware_path, device, as_json, plot_path, landmarks):
    """Rank every method for a task on a machine, and name the next one worth benchmarking.

    Zero-shot when the store has no measurement of this task on this hardware; uses
    them when it has. Without --model it loads a model fitted earlier on the store's
    data, or fits one (and says which).
    """
    from metasel.meta.advise import rank, with_landmarks

    say = (lambda m: click.echo(m, err=True)) if as_json else click.echo
    spec, task, hardware, price = _load(ctx, task_path, hardware_path, device)
    with open_store(ctx, create=False) as store:
        tbl = store.load()
        model, extra = _models(ctx, store, tbl, spec, model_path, say)
        if model.uses_landmarks:
            task = with_landmarks(task, tbl, measure=landmarks, say=say, store=store)
    result = rank(model, task, hardware, tbl, objective=spec.objective, price_per_hour=price, extra_models=extra)
    if as_json:
        click.echo(json.dumps({"task_id": task["task_id"], "task": task["name"], "hardware_id": hardware["hardware_id"],
                               "hardware": hardware["name"], "metric": result.metric, "direction": result.direction,
                               "methods": result.rows, "next": result.next_method, "next_reason": result.next_reason},
                              indent=2))
    else:
        measured = sum(r["measured"] is not None for r in result.rows)
        click.echo(f"task {task['name']} ({task['task_id']}) on {hardware['name']} ({hardware['hardware_id']})")
        click.echo(f"{result.metric} ({'higher' if result.direction == 'max' else 'lower'} is better); "
                   + ("zero-shot: nothing measured here yet" if measured == 0 else f"{measured} method(s) measured here"))
        headers = ["method", f"predicted {result.metric}", "90% interval", "P(best)", "P(feasible)", "measured"]
        has_cost = any("usd_per_mtok" in r for r in result.rows)
        if has_cost:
            headers.append("$/1M tok")
        rows = []
        for r in result.rows:
            row = [r["method"] + (f" (= {r['same_as']})" if r.get("same_as") else ""), number(r["predicted"]), f"{number(r['low90'])}-{number(r['high90'])}",
                   f"{r['p_best']:.2f}", f"{r['p_feasible']:.2f}",
                   number(r["measured"]) if r["measured"] is not None else (r["status"] or "-")]
            if has_cost:
                row.append(f"{r['usd_per_mtok']:.3f}" if "usd_per_mtok" in r else "-")
            rows.append(row)
        click.echo(table(headers, rows, align="lrrrrr" + "r" * has_cost))
        if any(r.get("same_as") for r in result.rows):
            click.echo("(= X): runs the same computation as X on this task (static batching of one request is plain "
                       "generation; a prefix cache with no shared prefix caches nothing)")
        best = result.rows[0]
        click.echo(f"recommended: {best['method']}" + (" (measured)" if best["measured"] is not None else " (predicted)"))
        click.echo(f"next benchmark: {result.next_method} ({result.next_reason})" if result.next_method
                   else f"next benchmark: none ({result.next_reason})")
    if plot_path:
        from metasel.meta.plots import plot_suggest

        plot_suggest(result, task["name"], hardware["name"], plot_path)
        say(f"wrote {plot_path}")


@main.command("tune")
@click.option("--task", "task_path", required=True, type=click.Path(dir_okay=False), help="Task spec YAML.")
@click.option("--budget", type=click.IntRange(1), default=None, help="Benchmarks at most [default: spec's budget, else 5].")
@click.option("--seconds", "budget_seconds", type=click.FloatRange(min=0), default=None, help="Benchmarking seconds at most.")
@click.option("--model", "model_path", type=click.Path(dir_okay=False), help="Model file from 'metasel fit'.")
@click.option("--repeats", type=click.IntRange(1), default=3, show_default=True)
@click.option("--min-gain", type=click.FloatRange(min=0), default=0.005, show_default=True,
              help="Stop when one more benchmark is expected to gain less than this (relative).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=1), default=600, show_default=True)
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="PNG of best-so-far against benchmarks.")
@click.option("--landmarks/--no-landmarks", default=True, show_default=True,
              help="Measure the task's landmarks (seconds) when the store has none, and store them.")
@click.pass_context
def tune_cmd(ctx, task_path, budget, budget_seconds, model_path, repeats, min_gain, timeout_s, plot_path, landmarks):
    """Run the active loop for real: ask → benchmark on this machine → store → tell → … → recommend.

    Resumable: measurements already in the store for this task and machine are told
    to the loop first, and only new ones are run.
    """
    from metasel.bench.runner import Cell, LocalWorker, cell_seed, observation_table
    from metasel.meta.advise import descriptor_table, with_landmarks
    from metasel.meta.selector import Selector, StopRule
    from metasel.spec import load_task_spec

    spec = load_task_spec(task_path)
    metric = spec.objective.metric
    worker = LocalWorker(threads=spec.hardware.threads, device="cpu")
    click.echo("starting the measuring process…")
    worker.start()
    try:
        hardware = worker.hardware
        spec_task = {"task_id": spec.task_id, "name": spec.name, "spec": spec.task_dict(), "features": {}}
        with open_store(ctx) as store:
            tbl = store.load()
            model, _ = _models(ctx, store, tbl, spec, model_path, click.echo)
            if model.uses_landmarks:
                spec_task = with_landmarks(spec_task, tbl, measure=landmarks, say=click.echo, store=store)
            desc = descriptor_table(spec_task, hardware)
            max_b = budget or spec.budget.benchmarks or 5
            rule = StopRule(min_gain=min_gain, max_benchmarks=max_b, max_seconds=budget_seconds or spec.budget.seconds)
            sel = Selector(model, spec.task_id, hardware["hardware_id"], table=desc, rule=rule)
            own = tbl.filter(tasks=[spec.task_id], hardware=[hardware["hardware_id"]]) if len(tbl) else None
            prior = sel.surrogate.predict([(spec.task_id, m, hardware["hardware_id"]) for m in sel.state.candidates])
            predicted = {m: math.exp(mu) for m, mu in zip(sel.state.candidates, prior.mean)}
            if own is not None and len(own):
                o = own.observations
                for m, st, v in o[["method", "status", metric]].itertuples(index=False):
                    if m in sel.state.measured or m in sel.state.failed:
                        continue
                    sel.tell(m, v if st == "ok" else None, status=st)
                click.echo(f"resuming: {len(sel.history)} benchmark(s) of this task already in the store")
            t0 = time.monotonic()
            curve = []
            while True:
                ask = sel.ask()
                if ask.method is None:
                    click.echo(f"stop: {ask.reason}")
                    break
                click.echo(f"[{sel.state.num_benchmarks + 1}] benchmarking {ask.method} ({ask.reason}; predicted "
                           f"{number(predicted.get(ask.method, math.nan))})")
                cell = Cell(spec.task_id, spec.name, spec.task_dict(), ask.method, repeats, cell_seed(0, spec.task_id))
                t1 = time.monotonic()
                result = worker.measure(cell, timeout_s)
                store.append(observation_table(cell, result, hardware, worker.versions or {}))
                value = result.get(metric) if result["status"] == "ok" else None
                sel.tell(ask.method, value, status=result["status"], seconds=time.monotonic() - t1)
                click.echo(f"    {result['status']}" + (f": {number(value)} {metric}" if value is not None
                                                         else f": {result.get('message', '')[:80]}"))
                if sel.state.measured:
                    curve.append(sel.best().value)
            best = sel.best()
            click.echo(f"recommendation: {best.method} — "
                       + (f"measured {number(best.value)} {metric}" if best.measured else f"predicted {number(best.value)}")
                       + f" after {sel.state.num_benchmarks} benchmark(s) in {time.monotonic() - t0:.0f}s")
            rows = [(m, number(predicted.get(m, math.nan)), number(v) if v is not None else st)
                    for m, st, v in sel.history]
            if rows:
                click.echo(table(["method", "predicted", "measured"], rows, align="lrr"))
    finally:
        worker.stop()
    if plot_path and curve:
        from metasel.meta.plots import plot_curve

        plot_curve({"metasel": curve}, f"tune: {spec.name}", metric, plot_path)
        click.echo(f"wrote {plot_path}")
