"""``metasel fit``."""

from __future__ import annotations

import time

import click

from metasel.cli import main
from metasel.cli._data import check_output_path, open_store


@main.command("fit")
@click.option("--metric", default="throughput_tok_s", show_default=True, help="Metric to model (its log is the target).")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Model file to write.")
@click.option("--hardware", "hardware_ids", multiple=True, help="Only this hardware id (repeatable).")
@click.option("--exclude-flag", "exclude_flags", multiple=True,
              help="Leave out observations with this flag, e.g. batch_semantics=prompt_batch.")
@click.option("--steps", type=click.IntRange(10), default=None, help="Optimiser steps [default: TrainConfig's, 1500].")
@click.option("--embed", type=click.Choice(["auto", "minilm", "hash", "none"]), default="hash", show_default=True,
              help="Text embeddings of the descriptions.")
@click.option("--members", type=click.IntRange(0), default=0, show_default=True,
              help="Fits in the ensemble; 0 = 3 up to 3,000 observations, else 1.")
@click.option("--calibrate-by", default="task", show_default=True,
              help="What the calibration's inner fit leaves out: task, hardware, or a task grouping such as "
                   "model.hf_id — the novelty the model will face.")
@click.option("--pair-terms/--no-pair-terms", default=True, show_default=True,
              help="Physics-shaped method x workload terms in the surrogate's mean.")
@click.option("--pair-slopes/--no-pair-slopes", default=True, show_default=True,
              help="Let each task have its own pair-term effects (methods sharing a technique move together).")
@click.option("--tree-mean/--no-tree-mean", default=None,
              help="Per-method regression forests give the prior mean; the towers and latent learn the residual "
                   "[default: TrainConfig's].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.pass_context
def fit_cmd(ctx, metric, out_path, hardware_ids, exclude_flags, steps, embed, members, calibrate_by, pair_terms,
            pair_slopes, tree_mean, seed):
    """Fit the Bayesian surrogate on the store and write a model file."""
    from dataclasses import replace

    from metasel.errors import require

    require("jax", feature="metasel fit", extra="surrogate")
    from metasel.surrogate import BayesianSurrogate, TrainConfig

    check_output_path(out_path, "--out")
    with open_store(ctx, readonly=True) as store:
        table = store.load(hardware=hardware_ids or None)
    if exclude_flags:
        table = table.filter(exclude_flags=exclude_flags)
    t0 = time.perf_counter()
    config = replace(TrainConfig(), members=members, pair_terms=pair_terms, pair_slopes=pair_slopes, tree_mean=tree_mean,
                     **({"steps": steps} if steps else {}))
    model = BayesianSurrogate(metric, config=config, embed=embed).fit(table, key=seed, calibrate_by=calibrate_by)
    model.save(out_path)
    info = model.info()
    click.echo(f"fitted {metric} ({info['direction']}) on {info['num_cells']:,} cells of {info['num_contexts']:,} "
               f"(task, hardware) pairs x {info['num_methods']} methods in {time.perf_counter() - t0:.1f}s; "
               f"noise std {info['noise_std_log']:.3f} (log), embeddings: {info['embedder']}; wrote {out_path}")
