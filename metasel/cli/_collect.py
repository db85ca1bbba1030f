"""``metasel collect``."""

from __future__ import annotations

from pathlib import Path

import click

from metasel.cli import main
from metasel.cli._data import open_store


def _threads(text: str) -> list[int | None]:
    out: list[int | None] = []
    for part in text.split(","):
        part = part.strip()
        if part in ("", "all"):
            out.append(None)
            continue
        if not part.isdigit() or int(part) < 1:
            raise click.BadParameter(f"expected positive integers separated by commas, got {text!r}")
        out.append(int(part))
    return out


@main.command("collect")
@click.option("--grid", "grid_path", default=None, type=click.Path(dir_okay=False), help="Grid spec YAML (or one task spec).")
@click.option("--endpoint", default=None, metavar="URL",
              help="Measure a running OpenAI-compatible server instead (with --task and --method-name).")
@click.option("--task", "task_path", default=None, type=click.Path(dir_okay=False),
              help="endpoint: the task spec YAML whose workload is sent.")
@click.option("--method-name", default=None, help="endpoint: the method the measurement is stored as.")
@click.option("--served-model", default=None, help="endpoint: the model name to request [default: the server's first].")
@click.option("--hardware", "hardware_path", default="auto", show_default=True,
              help="endpoint: the machine that serves: 'auto' (this one) or a hardware YAML file.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="endpoint: its engine and settings (engine=vllm, max_num_seqs=64, ...), for the technique vector.")
@click.option("--methods", default=None, help="Comma-separated method names [default: the grid's, else all but compiled].")
@click.option("--repeats", type=click.IntRange(1), default=None, help="Measured runs per cell after a warm-up [default: grid's, else 3].")
@click.option("--interleave/--no-interleave", default=None,
              help="Measure each task in rounds: every method once per round, in a shuffled order, so drift does not "
                   "decide near-ties; each round pays a method's set-up again [default: grid's, else no].")
@click.option("--threads", default="all", show_default=True,
              help="Hardware profiles by torch thread count, e.g. '1,2' (each is its own hardware id).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--ray", "ray_address", default=None, help="Fan out over Ray: an address, 'auto' or 'local'.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=1), default=None,
              help="Seconds per cell before it is recorded as a timeout [default: grid's, else 600].")
@click.option("--seed", type=int, default=0, show_default=True, help="Run seed; each cell's seed derives from it.")
@click.option("--force", is_flag=True, help="Measure cells again even if this hardware has them.")
@click.option("--remeasure-noisy", is_flag=True,
              help="Measure again cells whose every observation here is flagged noisy (a busy machine, unstable repeats).")
@click.option("--list", "list_only", is_flag=True, help="List the methods and exit.")
@click.option("--quiet", is_flag=True, help="No per-cell progress lines.")
@click.option("--landmarks/--no-landmarks", default=True, show_default=True,
              help="Then measure the landmarks of the grid's tasks that have none (see 'metasel landmarks').")
@click.pass_context
def collect_cmd(ctx, grid_path, endpoint, task_path, method_name, served_model, hardware_path, overrides, methods,
                repeats, interleave, threads, device, ray_address, timeout_s, seed, force, remeasure_noisy, list_only,
                quiet, landmarks):
    """Measure (task, method) cells on this machine (or a Ray cluster) and append them to the store.

    Resumable: cells this hardware already has are skipped unless --force. Each
    observation is stored in its own transaction as soon as it is measured.

    With --endpoint URL --task spec.yaml --method-name NAME it measures a server the user
    already runs (any OpenAI-compatible one, here or on another node) with the same load
    generator and prompts, and stores it as method NAME of that task on --hardware.
    """
    from metasel.bench import methods as registry
    from metasel.spec import parse_grid_spec, parse_task_spec, read_yaml

    if list_only:
        for m in registry.REGISTRY.values():
            click.echo(f"{m.name:32s} {m.describe()}")
        return
    if endpoint is not None:
        _collect_endpoint(ctx, endpoint, task_path, method_name, served_model, hardware_path, overrides,
                          repeats=repeats or 3, seed=seed, grid_path=grid_path)
        return
    if grid_path is None:
        raise click.UsageError("expected --grid FILE (or --endpoint URL with --task and --method-name)")
    raw = read_yaml(grid_path)
    if isinstance(raw, dict) and ("axes" in raw or "base" in raw):
        grid = parse_grid_spec(raw, source=grid_path)
        tasks, g_methods, g_repeats, g_timeout = grid.tasks, grid.methods, grid.repeats, grid.timeout_s
        g_interleave = grid.interleave
    else:
        tasks, g_methods, g_repeats, g_timeout = [parse_task_spec(raw, source=grid_path)], None, None, None
        g_interleave = False
    interleave = g_interleave if interleave is None else interleave
    names = [m.strip() for m in methods.split(",") if m.strip()] if methods else g_methods
    registry.resolve(names)  # unknown names fail here, before anything runs
    import os

    from metasel.bench.executors import netns_launch

    if ray_address == "local" and os.environ.get(netns_launch.ENV_FLAG) != "1":
        # the local cluster's servers listen on every interface: run this command in a private network namespace
        from metasel.bench.executors.ray import run_isolated
        from metasel.data.store import default_store_path

        store_path = ctx.obj.get("store_path") or str(default_store_path())
        argv = [*(["--debug"] if ctx.obj.get("debug") else []), "--store", str(Path(store_path).resolve()), "collect",
                "--grid", str(Path(grid_path).resolve()), "--threads", threads, "--device", device, "--ray", "local",
                "--seed", str(seed), *(["--methods", methods] if methods else []),
                *(["--repeats", str(repeats)] if repeats else []), *(["--timeout", str(timeout_s)] if timeout_s else []),
                "--interleave" if interleave else "--no-interleave",
                *(["--force"] if force else []), *(["--remeasure-noisy"] if remeasure_noisy else []),
                *(["--quiet"] if quiet else []), "--landmarks" if landmarks else "--no-landmarks"]
        code = run_isolated(argv)
        ctx.exit(1 if code == netns_launch.CANNOT_ISOLATE else code)  # the child said why, in one line
    from metasel.bench.collect import collect

    with open_store(ctx) as store:
        summary = collect(tasks, store, methods=names, repeats=repeats or g_repeats or 3, threads=_threads(threads),
                          device=device, ray=ray_address, force=force, timeout_s=timeout_s or g_timeout or 600.0,
                          seed=seed, progress=not quiet, remeasure_noisy=remeasure_noisy, interleave=interleave)
        click.echo(summary.line())
        if landmarks:
            from metasel.bench.landmarks import fill_store

            click.echo("landmarks of the grid's tasks:")
            got = fill_store(store, run_seed=seed, tasks={t.task_id for t in tasks}, say=click.echo)
            click.echo(f"landmarks: {len(got)} task(s) measured")


@main.command("landmarks")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Run seed the tasks were collected with (it sets each task's weights and prompts).")
@click.option("--force", is_flag=True, help="Measure again tasks that have landmarks.")
@click.pass_context
def landmarks_cmd(ctx, seed, force):
    """Measure the landmarks of the stored tasks that have none.

    A landmark replays prompt lookup and assisted decoding on the tokens the task's
    model generates greedily (its weights and prompts as the collector builds them),
    and stores the tokens per target forward pass of each as task features: how much
    speculative decoding can pay on this task. Seconds per task; tasks whose model the
    collector cannot build (foreign tables) are skipped.
    """
    from metasel.bench.landmarks import fill_store

    with open_store(ctx, create=False) as store:
        got = fill_store(store, run_seed=seed, force=force, say=click.echo)
    click.echo(f"landmarks: {len(got)} task(s) measured")


def _collect_endpoint(ctx, endpoint, task_path, method_name, served_model, hardware_path, overrides, *, repeats, seed,
                      grid_path):
    from metasel.errors import InputDataError

    if grid_path is not None:
        raise click.UsageError("--endpoint measures one task: pass --task spec.yaml, not --grid")
    if not task_path or not method_name:
        raise click.UsageError("--endpoint needs --task spec.yaml and --method-name NAME")
    from metasel.bench.endpoint import collect_endpoint, endpoint_method
    from metasel.cli._data import serving_hardware
    from metasel.data.serving import parse_overrides
    from metasel.spec import parse_task_spec, read_yaml

    spec = parse_task_spec(read_yaml(task_path), source=task_path)
    settings = parse_overrides(overrides)
    engine = settings.pop("engine", None)
    unknown = [k for k in settings if k in ("model", "method")]
    if unknown:
        raise InputDataError(f"--set {unknown[0]}: not for --endpoint (use --served-model / --method-name)")
    method = endpoint_method(method_name, endpoint, engine=engine, settings=settings)
    hardware = serving_hardware(hardware_path)
    if hardware is None:
        raise InputDataError(f"--hardware {hardware_path!r}: expected 'auto' or a hardware YAML file")
    with open_store(ctx) as store:
        result = collect_endpoint(endpoint, spec, store, method=method, hardware=hardware, model=served_model,
                                  repeats=repeats, seed=seed, say=click.echo)
    if result["status"] == "ok":
        click.echo(f"{method_name}: ok {result['throughput_tok_s']:,.1f} tok/s, TTFT p50/p99 "
                   f"{result['ttft_p50_ms']:.1f}/{result['ttft_p99_ms']:.1f} ms, TPOT p50/p99 "
                   f"{result['tpot_p50_ms']:.2f}/{result['tpot_p99_ms']:.2f} ms, e2e p99 {result['e2e_p99_ms']:.1f} ms "
                   f"(stored on {hardware['name']})")
    else:
        click.echo(f"{method_name}: {result['status']}: {result['message']} (stored on {hardware['name']})")
