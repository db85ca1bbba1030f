from metasel.cli import run

run()
