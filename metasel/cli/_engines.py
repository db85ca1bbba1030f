"""``metasel engines list|install|uninstall``: the serving engines' own environments."""

from __future__ import annotations

import click

from metasel.cli import main


@main.group("engines")
def engines_group() -> None:
    """The serving engines metasel measures, each in its own pinned environment
    (under $METASEL_ENGINES_DIR, default ~/.cache/metasel/engines)."""


@engines_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON rows instead of a table.")
def list_cmd(as_json: bool) -> None:
    """Show each engine: installed or not, its version and size, and how to install it."""
    import json

    from metasel.bench.engines.envs import listing
    from metasel.bench.methods import REGISTRY

    rows = listing()
    for r in rows:
        r["methods"] = sum(1 for m in REGISTRY.values() if m.engine == r["engine"])
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    click.echo(f"{'engine':<12} {'installed':<9} {'version':<12} {'size':>8} {'methods':>7}  where / how")
    for r in rows:
        size = f"{r['size_mb']:,.0f} MB" if r["size_mb"] is not None else ""
        how = r["path"] if r["installed"] else f"{r['install']}  ({r['note']})"
        click.echo(f"{r['engine']:<12} {'yes' if r['installed'] else 'no':<9} {r['version']:<12} {size:>8} "
                   f"{r['methods']:>7}  {how}")


@engines_group.command("install")
@click.argument("names", nargs=-1, required=True)
@click.option("--force", is_flag=True, help="Re-create the environment even if it is installed.")
def install_cmd(names: tuple[str, ...], force: bool) -> None:
    """Create the environment of each engine NAME (or `all`), with pip and pinned versions."""
    from metasel.bench.engines.envs import ENGINES, get_spec, install

    chosen = list(ENGINES) if names == ("all",) else list(names)
    for n in chosen:
        get_spec(n)  # an unknown name fails before anything is installed
    for n in chosen:
        install(n, force=force)


@engines_group.command("uninstall")
@click.argument("names", nargs=-1, required=True)
def uninstall_cmd(names: tuple[str, ...]) -> None:
    """Remove the environment of each engine NAME."""
    from metasel.bench.engines.envs import get_spec, uninstall

    for n in names:
        get_spec(n)
        click.echo(f"{n}: {'removed' if uninstall(n) else 'was not installed'}")
