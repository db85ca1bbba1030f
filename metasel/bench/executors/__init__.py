"""Where cells are measured: a local worker process per hardware profile, or a Ray cluster.

Both take the cells to run, skip those the store already has for their hardware (unless
forced), and hand every result to ``on_result`` as it arrives.
"""
