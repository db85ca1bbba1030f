"""``metasel evaluate``."""

from __future__ import annotations

from pathlib import Path

import click

from metasel.cli import main


@main.command("evaluate")
@click.option("--data", "data", required=True, help="A store file, a metasel export folder, or a perf CSV (task,method,value[,status]).")
@click.option("--features", type=click.Path(dir_okay=False), help="Features CSV keyed by task (generic CSV data).")
@click.option("--folds", "folds_path", type=click.Path(dir_okay=False), help="Official folds: task,fold[,repetition].")
@click.option("--objective", type=click.Choice(["min", "max"]), default=None, help="Generic CSV: min or max [default: min].")
@click.option("--metric", default=None, help="Metric [default: throughput_tok_s, or value for generic data].")
@click.option("--protocol", default="loto", show_default=True,
              help="loto | loho | group:<spec path or feature>[:K] (grouped K-fold) | folds (with --folds).")
@click.option("--exclude-flag", "exclude_flags", multiple=True, help="Leave out observations with this flag.")
@click.option("--hardware", "hardware_ids", multiple=True, help="Only this hardware id (repeatable).")
@click.option("--baselines", default="all", show_default=True, help="Comma-separated baseline names, or 'all' / 'none'.")
@click.option("--steps", type=click.IntRange(10), default=None, help="Surrogate training steps per fold [default: TrainConfig's].")
@click.option("--embed", type=click.Choice(["hash", "minilm", "auto", "none"]), default="hash", show_default=True)
@click.option("--members", type=click.IntRange(0), default=0, show_default=True,
              help="Fits in the ensemble; 0 = 3 up to 3,000 observations, else 1.")
@click.option("--tree-mean/--no-tree-mean", default=None,
              help="Per-method regression forests give the surrogate's prior mean; its towers and latent learn the "
                   "residual [default: TrainConfig's].")
@click.option("--anytime", "anytime_k", type=click.IntRange(1, 20), default=5, show_default=True)
@click.option("--skip-repeats/--no-skip-repeats", default=True, show_default=True,
              help="metasel's loop never benchmarks a method that runs the same computation as one it measured.")
@click.option("--ensemble", is_flag=True,
              help="Also evaluate metasel_ensemble: metasel's surrogate ranked together with a survival forest, "
                   "pairwise classification, per-method forests and SUNNY (equal-weight mean of ranks).")
@click.option("--stack", is_flag=True,
              help="Also evaluate metasel_stack: the pick of whichever of those five, or their rank ensemble, "
                   "picks best by inner cross-validation on each fold's training contexts.")
@click.option("--choose", "choose", default="mean", show_default=True,
              help="What metasel's zero-shot pick maximises: mean (expected value), quantile:Q or p_best.")
@click.option("--pareto", "pareto_metrics", default=None, metavar="X,Y",
              help="Also score each strategy's predicted two-metric front on the held-out contexts against the measured "
                   "one, e.g. throughput_tok_s,e2e_p99_ms (results.md section, pareto-N.png).")
@click.option("--max-folds", type=click.IntRange(1), default=None, help="Evaluate only the first N folds (quick looks).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--jobs", type=click.IntRange(1), default=1, show_default=True, help="Processes to spread the folds over.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for results.md/.json and plots.")
@click.option("--title", default=None, help="Title of the results table.")
def evaluate_cmd(data, features, folds_path, objective, metric, protocol, exclude_flags, hardware_ids, baselines, steps,
                 embed, members, tree_mean, anytime_k, skip_repeats, ensemble, stack, choose, pareto_metrics, max_folds, seed, jobs, out_dir, title):
    """Replay held-out tasks offline: metasel against the algorithm-selection baselines.

    Same folds and seeds for every strategy; each fold fits its encoder, baselines
    and surrogate on its training part only. Writes results.md, results.json and PNG plots.
    """
    from metasel.cli._data import read_source
    from metasel.errors import require
    from metasel.evaluation.harness import default_strategies, evaluate
    from metasel.evaluation.report import write_report
    from metasel.select.choice import Choice

    require("sklearn", feature="metasel evaluate", extra="eval")
    from metasel.cli._advise import _pareto_metrics

    choice = Choice.parse(choose)  # a usage mistake is reported before the data are read
    xy = _pareto_metrics(pareto_metrics)
    from metasel.cli._data import check_output_path

    check_output_path(out_dir, "--out", folder=True)
    path = Path(data)
    if path.is_file() and path.suffix in (".sqlite", ".db"):
        from metasel.data.store import Store

        with Store(path, readonly=True) as s:
            table = s.load()
    else:
        table = read_source(data, "auto", features=features, objective=objective or "min")
    if hardware_ids:
        table = table.filter(hardware=hardware_ids)
    if exclude_flags:
        table = table.filter(exclude_flags=exclude_flags)
    metric = metric or ("value" if "value" in table.directions else "throughput_tok_s")
    _check_metric(table, metric, data)
    for m in xy or ():
        _check_metric(table, m, data)
    folds, calibrate_by = _folds(table, metric, protocol, folds_path, seed)
    if max_folds:
        folds = folds[:max_folds]
    from metasel.evaluation.baselines import named_baselines

    chosen = named_baselines(baselines)
    strategies = default_strategies(metric, baselines=chosen, steps=steps, embed=embed, members=members,
                                    calibrate_by=calibrate_by, skip_repeats=skip_repeats, ensemble=ensemble, stack=stack,
                                    choice=choice, tree_mean=tree_mean)
    result = evaluate(table, metric, folds, strategies=strategies, embed=embed, anytime_k=anytime_k, seed=seed,
                      progress=lambda m: click.echo(m, err=True), jobs=jobs)
    result.protocol = protocol
    write_report(result, out_dir, title=title or f"{path.name}, {protocol}, {metric}", anytime_k=anytime_k)
    pngs = []
    if xy:
        pngs = _pareto(table, xy, protocol, folds_path, seed, max_folds, chosen, out_dir, title or f"{path.name}, {protocol}",
                       embed=embed, steps=steps, members=members, skip_repeats=skip_repeats, tree_mean=tree_mean)
    click.echo((Path(out_dir) / "results.md").read_text())
    click.echo(f"wrote {out_dir}/results.md, results.json, anytime.png, per_task_regret.png"
               + "".join(f", {p}" for p in pngs))


def _pareto(table, xy, protocol, folds_path, seed, max_folds, chosen, out_dir, title, *, embed, **metasel_kwargs):
    """``--pareto``: each strategy's predicted front against the measured one, on the same folds."""
    from metasel.evaluation.harness import metasel_strategy
    from metasel.evaluation.pareto import PARETO_BASELINES, evaluate_pareto, write_pareto

    folds, calibrate_by = _folds(table, xy[0], protocol, folds_path, seed)
    if max_folds:
        folds = folds[:max_folds]
    baselines = [b for b in chosen if b.name in PARETO_BASELINES]

    def make(metric):  # evaluate_pareto fits a copy of each baseline per fold
        return [*baselines, metasel_strategy(metric, embed=embed, calibrate_by=calibrate_by, **metasel_kwargs)]

    pe = evaluate_pareto(table, *xy, folds, make_strategies=make, embed=embed, seed=seed,
                         progress=lambda m: click.echo(m, err=True))
    return write_pareto(pe, out_dir, title=title)


def _folds(table, metric: str, protocol: str, folds_path: str | None, seed: int):
    """The folds of ``--protocol`` and what metasel's calibration should leave out to match them."""
    from metasel.errors import InputDataError
    from metasel.evaluation import folds as ev

    if protocol == "loto":
        return ev.leave_one_task_out(table, metric), "task"
    if protocol == "loho":
        return ev.leave_one_hardware_out(table, metric), "hardware"
    if protocol.startswith("group:"):
        parts = protocol.split(":")
        if len(parts) > 3 or not parts[1] or (len(parts) == 3 and not (parts[2].isdigit() and int(parts[2]) >= 2)):
            raise InputDataError(f"--protocol: expected group:<spec path or feature>[:K] with K >= 2, got {protocol!r}")
        k = int(parts[2]) if len(parts) == 3 else 5
        return ev.grouped_k_fold(table, metric, parts[1], k, seed=seed), parts[1]
    if protocol == "folds":
        if not folds_path:
            raise InputDataError("--protocol folds needs --folds FILE")
        return ev.folds_from_csv(table, metric, folds_path), "task"
    raise InputDataError(f"--protocol: expected loto, loho, group:<key>[:K] or folds, got {protocol!r}")


def _check_metric(table, metric: str, data: str) -> None:
    from metasel._schema import METRICS
    from metasel.errors import InputDataError

    if metric not in METRICS:
        raise InputDataError(f"--metric: expected one of {list(METRICS)}, got {metric!r}")
    if table.long(metric).empty:
        measured = [m for m in METRICS if not table.long(m).empty]
        raise InputDataError(f"--metric {metric}: {data} has no 'ok' observation of it; it has {measured}")
