"""What is true of LLM inference whatever learns from it.

Model arithmetic (parameters, KV bytes, FLOPs), the roofline, the technique vocabulary
that methods are described in, which techniques are idle on a workload (so two methods
run the same computation there), the physics-shaped pair terms, and the named numeric
features of tasks, hardware and methods. Plain Python and numpy; nothing here knows
about a learner, a store or a benchmark backend.
"""
