"""``suggest`` and ``tune`` as library functions; the CLI only parses arguments and prints.

- :func:`metasel.app.suggest.suggest`: rank every method for a task on a machine;
- :func:`metasel.app.tune.tune`: the active loop against the real collector;
- :mod:`metasel.app.descriptors` and :mod:`metasel.app.models`: what both need.
"""
