"""The Bayesian matrix-completion surrogate (Flax nnx + NumPyro, trained with optax)."""

from metasel.surrogate._train import TrainConfig
from metasel.surrogate.model import Prediction, Surrogate

__all__ = ["Prediction", "Surrogate", "TrainConfig"]
