"""``metasel suggest`` and ``metasel tune``."""

from __future__ import annotations

import json
import math

import click

from metasel.cli import main
from metasel.cli._data import check_output_path, open_store
from metasel._format import number, table


def _hardware_spec(spec, hardware_path):
    """The spec's hardware, or one from ``--hardware`` (``auto``: probe this machine; else a YAML file)."""
    from metasel.cli._data import hardware_option

    return hardware_option(hardware_path, threads=spec.hardware.threads) or spec.hardware


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
@click.option("--choose", "choose", default="mean", show_default=True,
              help="Rank by: mean (expected value, failures included), quantile:Q (the value reached with "
                   "probability Q on the bad side) or p_best.")
@click.option("--risk", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="Shorthand for --choose quantile:RISK (e.g. 0.9).")
@click.option("--refit", is_flag=True, help="Fit the model again even if a cached fit of this store can be conditioned "
              "on what was added since.")
@click.option("--pareto", "pareto_metrics", default=None, metavar="X,Y",
              help="Also show the Pareto front of two metrics, e.g. throughput_tok_s,e2e_p99_ms (each its own model).")
@click.option("--pareto-plot", "pareto_plot", type=click.Path(dir_okay=False), help="PNG of the --pareto front.")
@click.option("--slo", "slo_text", default=None, metavar="METRIC=MS,...",
              help="Also rank by predicted goodput under this SLO, e.g. ttft_p99_ms=500,tpot_p99_ms=50.")
@click.pass_context
def suggest_cmd(ctx, task_path, model_path, hardware_path, device, as_json, plot_path, landmarks, choose, risk, refit,
                pareto_metrics, pareto_plot, slo_text):
    """Rank every method for a task on a machine, and name the next one worth benchmarking.

    Zero-shot when the store has no measurement of this task on this hardware; uses
    them when it has. Without --model it loads a model fitted earlier on the store's
    data, conditioned on observations added since (milliseconds), or fits one (and says which).
    """
    from metasel.app.suggest import describe_intervals, suggest
    from metasel.select.choice import Choice
    from metasel.spec import load_task_spec

    choice = Choice("quantile", risk) if risk is not None else Choice.parse(choose)
    say = (lambda m: click.echo(m, err=True)) if as_json else click.echo
    check_output_path(plot_path, "--plot")
    check_output_path(pareto_plot, "--pareto-plot")
    from metasel.app import pareto as P

    xy = _pareto_metrics(pareto_metrics or ("throughput_tok_s,latency_ms" if pareto_plot else None))
    slo = P.parse_slo(slo_text) if slo_text else None
    spec = load_task_spec(task_path)
    hardware_spec = _hardware_spec(spec, hardware_path)
    front = slo_rows = None
    with open_store(ctx, create=False) as store:
        result = suggest(spec, store, hardware_spec=hardware_spec, device=device, model_path=model_path,
                         landmarks=landmarks, say=say, choice=choice, refit=refit)
        if xy or slo:
            wanted = [*(xy or ()), *((["throughput_tok_s", *slo]) if slo else [])]
            views = P.views_for(spec, store, wanted, hardware=result.hardware, model_path=model_path, say=say)
            front = P.pareto(views, *xy) if xy else None
            slo_rows = P.slo_goodput(views, slo, spec.workload.output_len,
                                     arrival_rate=spec.workload.arrival.get("rate")) if slo else None
    task, hardware = result.task, result.hardware
    if as_json:
        click.echo(json.dumps({"task_id": task["task_id"], "task": task["name"], "hardware_id": hardware["hardware_id"],
                               "hardware": hardware["name"], "metric": result.metric, "direction": result.direction,
                               "recommended": result.recommended["method"], "reason": result.reason,
                               "ranked_by": result.ranked_by,
                               "intervals_calibrated_for": result.intervals_for,
                               "intervals_level_by_level": result.intervals_by_level,
                               "methods": result.rows, "next": result.next_method,
                               "next_reason": result.next_reason,
                               **({"pareto": {"x": front.x, "y": front.y, "methods": front.rows}} if front else {}),
                               **({"slo": {"bounds": slo, "methods": slo_rows}} if slo_rows else {})},
                              indent=2))
    else:
        measured = sum(r["measured"] is not None for r in result.rows)
        click.echo(f"task {task['name']} ({task['task_id']}) on {hardware['name']} ({hardware['hardware_id']})")
        click.echo(f"{result.metric} ({'higher' if result.direction == 'max' else 'lower'} is better); "
                   + ("zero-shot: nothing measured here yet" if measured == 0 else f"{measured} method(s) measured here")
                   + f"; ranked by {result.ranked_by}")
        headers = ["method", f"predicted {result.metric}", "90% interval", "P(best)", "P(feasible)", "measured"]
        has_cost = any("usd_per_mtok" in r for r in result.rows)
        if has_cost:
            headers.append("$/1M tok")
        rows = []
        for r in result.rows:
            shown = (number(r["predicted"]), f"{number(r['low90'])}-{number(r['high90'])}") if r["feasible"] else \
                ("infeasible", r["reason"][:40])  # no throughput for a method unlikely to run here
            row = [r["method"] + (f" (= {r['same_as']})" if r.get("same_as") else ""), *shown,
                   f"{r['p_best']:.2f}", f"{r['p_feasible']:.2f}",
                   number(r["measured"]) if r["measured"] is not None else (r["status"] or "-")]
            if has_cost:
                row.append(f"{r['usd_per_mtok']:.3f}" if "usd_per_mtok" in r else "-")
            rows.append(row)
        click.echo(table(headers, rows, align="lrrrrr" + "r" * has_cost))
        click.echo(describe_intervals(result.intervals_for, result.intervals_by_level))
        if any(r.get("same_as") for r in result.rows):
            click.echo("(= X): runs the same computation as X on this task (static batching of one request is plain "
                       "generation; a prefix cache with no shared prefix caches nothing)")
        best = result.rows[0]
        click.echo(f"recommended: {best['method']}" + (" (measured)" if best["measured"] is not None else " (predicted)")
                   + f": {result.reason}")
        infeasible = [r for r in result.rows if not r["feasible"]]
        if infeasible:
            click.echo(f"infeasible here ({len(infeasible)}, ranked last): "
                       + "; ".join(f"{r['method']}: {r['reason']}" for r in infeasible[:3])
                       + (f"; … ({len(infeasible) - 3} more in --json)" if len(infeasible) > 3 else ""))
        click.echo(f"next benchmark: {result.next_method} ({result.next_reason})" if result.next_method
                   else f"next benchmark: none ({result.next_reason})")
        if front is not None:
            _echo_pareto(front)
        if slo_rows is not None:
            _echo_slo(slo_rows, slo)
    if pareto_plot and front is not None:
        from metasel.plots import plot_pareto

        plot_pareto(front, task["name"], hardware["name"], pareto_plot)
        say(f"wrote {pareto_plot}")
    if plot_path:
        from metasel.plots import plot_suggest

        plot_suggest(result, task["name"], hardware["name"], plot_path)
        say(f"wrote {plot_path}")


def _pareto_metrics(text: str | None) -> tuple[str, str] | None:
    from metasel._schema import METRICS
    from metasel.errors import InputDataError

    if not text:
        return None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or any(p not in METRICS or p == "value" for p in parts) or parts[0] == parts[1]:
        raise InputDataError(f"--pareto {text!r}: expected two different metrics X,Y, e.g. throughput_tok_s,e2e_p99_ms "
                             f"(metrics: {', '.join(m for m in METRICS if m != 'value')})")
    return parts[0], parts[1]


def _echo_pareto(front) -> None:
    x, y = front.x, front.y
    click.echo(f"Pareto front of {x} against {y} ({len(front.front)} of {len(front.rows)} methods; "
               f"predicted median [90% interval], or measured (m)):")
    rows = []
    for r in front.rows:
        if not r["feasible"]:
            continue
        cells = []
        for k in (x, y):
            cells.append(f"{number(r[k])} (m)" if r[f"{k}_measured"] else
                         f"{number(r[k])} [{number(r[f'{k}_low90'])}-{number(r[f'{k}_high90'])}]")
        rows.append([r["method"], "*" if r["on_front"] else "", *cells])
    click.echo(table(["method", "front", x, y], rows, align="lcrr"))


def _echo_slo(rows, slo) -> None:
    bounds = ", ".join(f"{k} <= {v:g}" for k, v in slo.items())
    click.echo(f"goodput under the SLO ({bounds}): predicted requests/s meeting every bound, best first:")
    out = [[r["method"], f"{r['goodput_req_s']:.3g}", f"{r['req_s']:.3g}", f"{r['p_meet_slo']:.2f}",
            *(number(r[k]) for k in slo), "yes" if r["measured"] else ""] for r in rows if r["feasible"]]
    click.echo(table(["method", "goodput req/s", "req/s", "P(meets SLO)", *slo, "measured"], out,
                     align="lrrr" + "r" * len(slo) + "l"))


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
@click.option("--refit", is_flag=True, help="Fit the model again even if a cached fit of this store can be conditioned "
              "on what was added since.")
@click.pass_context
def tune_cmd(ctx, task_path, budget, budget_seconds, model_path, repeats, min_gain, timeout_s, plot_path, landmarks,
             refit):
    """Run the active loop for real: ask → benchmark on this machine → store → tell → … → recommend.

    Resumable: measurements already in the store for this task and machine are told
    to the loop first, and only new ones are run.
    """
    from metasel.app.tune import tune
    from metasel.spec import load_task_spec

    check_output_path(plot_path, "--plot")
    spec = load_task_spec(task_path)
    metric = spec.objective.metric
    with open_store(ctx) as store:
        result = tune(spec, store, budget=budget, budget_seconds=budget_seconds, model_path=model_path, repeats=repeats,
                      min_gain=min_gain, timeout_s=timeout_s, landmarks=landmarks, say=click.echo, refit=refit)
    best = result.best
    click.echo(f"recommendation: {best.method} — "
               + (f"measured {number(best.value)} {metric}" if best.measured else f"predicted {number(best.value)}")
               + f" after {len(result.history)} benchmark(s) in {result.seconds:.0f}s")
    rows = [(m, number(result.predicted.get(m, math.nan)), number(v) if v is not None else st)
            for m, st, v in result.history]
    if rows:
        click.echo(table(["method", "predicted", "measured"], rows, align="lrr"))
    curve = result.curve
    if plot_path and curve:
        from metasel.plots import plot_curve

        plot_curve({"metasel": curve}, f"tune: {spec.name}", metric, plot_path)
        click.echo(f"wrote {plot_path}")
