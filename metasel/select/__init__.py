"""Selection: acquisition functions, the ask/tell selector and the one active loop.

- :mod:`metasel.select.acquisition`: pure functions of a joint posterior (EI, UCB, Thompson,
  P(best), feasibility, cost-aware forms) and the named registry;
- :class:`Selector` (``ask``/``tell``/``best``) over any :class:`~metasel.surrogate.Surrogate`;
- :func:`run`: the loop over a :class:`Backend` that ``tune``, ``evaluate`` and the API share.
"""

from metasel.select.loop import Backend, LoopResult, Step, run
from metasel.select.selector import Ask, Recommendation, Selector, SelectorState, StopRule, step

__all__ = ["Ask", "Backend", "LoopResult", "Recommendation", "Selector", "SelectorState", "Step", "StopRule", "run",
           "step"]
