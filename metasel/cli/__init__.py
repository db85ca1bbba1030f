"""The ``metasel`` command line.

Only click and the standard library are imported here; each command imports its
backend (pandas, torch, jax) inside its body, so ``metasel --help`` stays fast.
"""

from __future__ import annotations

import sys

import click

from metasel import __version__
from metasel.errors import MetaselError


class _Group(click.Group):
    """Turns a :class:`MetaselError` into one line on stderr and exit code 1, and a usage
    mistake (an unknown option, a missing or bad argument) into one line and exit code 2."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:  # a mistake in the top-level options (a subcommand's is caught in invoke)
            if "--debug" in args:
                raise
            click.echo(f"metasel: error: {exc.format_message()} (see 'metasel --help')", err=True)
            raise click.exceptions.Exit(2) from None

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            if (ctx.obj or {}).get("debug"):
                raise
            where = exc.ctx.command_path if exc.ctx is not None else "metasel"
            click.echo(f"metasel: error: {exc.format_message()} (see '{where} --help')", err=True)
            ctx.exit(2)
        except MetaselError as exc:
            if (ctx.obj or {}).get("debug"):
                raise
            click.echo(f"metasel: error: {exc}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("metasel: interrupted", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="metasel")
@click.option("--debug", is_flag=True, help="Show the full traceback of an error.")
@click.option("--store", "store_path", envvar="METASEL_STORE", type=click.Path(dir_okay=False),
              help="SQLite store file [env METASEL_STORE; default ~/.local/share/metasel/store.sqlite].")
@click.pass_context
def main(ctx: click.Context, debug: bool, store_path: str | None) -> None:
    """metasel: choose an inference-acceleration method for a workload on a machine.

    \b
    Typical use:
      metasel import datasets/cpu-v1          # load the shipped measurements
      metasel show                            # what the store holds
      metasel collect --grid grid.yaml        # measure methods on this machine
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    ctx.obj["store_path"] = store_path


def _register() -> None:
    from metasel.cli import _advise, _collect, _data, _engines, _evaluate, _model  # noqa: F401  (commands register themselves on import)


_register()


def run() -> None:  # pragma: no cover - console-script entry
    sys.exit(main(prog_name="metasel"))
