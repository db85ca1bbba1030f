"""Surrogates: models that predict every (task, method, hardware) cell with uncertainty.

- :class:`Surrogate` (protocol) and :class:`Posterior`: what every surrogate is and predicts;
- :class:`BayesianSurrogate`: the Bayesian matrix-completion model (Flax nnx + NumPyro, optax);
- :class:`GBMSurrogate`: gradient-boosted trees with a per-context random offset, a simple second;
- :mod:`metasel.surrogate.encoding`: named domain features → scaled arrays.

Importing this package loads neither jax nor scikit-learn; fitting does.
"""

from metasel.surrogate._train import TrainConfig
from metasel.surrogate.base import Posterior, Surrogate
from metasel.surrogate.bayes import BayesianSurrogate
from metasel.surrogate.gbm import GBMSurrogate

__all__ = ["BayesianSurrogate", "GBMSurrogate", "Posterior", "Surrogate", "TrainConfig", "load"]


def load(path) -> "BayesianSurrogate":
    """Read a saved model file (``metasel fit --out``); a file of another format is refused."""
    return BayesianSurrogate.load(path)
