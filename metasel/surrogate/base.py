"""What every surrogate is: the :class:`Surrogate` protocol and the :class:`Posterior` it predicts.

A surrogate learns, for one metric, a predictive distribution of its natural log for every
(task, method, hardware) cell, seen or not. The selector, the active loop, ``suggest`` and
the evaluation harness use only this protocol, so any object that has these members can
be plugged in (``metasel.surrogate.BayesianSurrogate``, ``metasel.surrogate.GBMSurrogate``,
or a researcher's own; :mod:`metasel.testing.conformance` checks one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, NamedTuple, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from metasel.data.table import PerfTable


LEVELS = (0.5, 0.8, 0.9, 0.95)  # interval levels a surrogate may calibrate one by one (Posterior.widths)


class Posterior(NamedTuple):
    """Predictive distribution of log(metric) over cells.

    Attributes:
        mean, std: (num_cells,) marginal mean and standard deviation (noise included).
        blocks: per (task, hardware) context among the cells, when the joint was asked for:
            ``(cell indices, covariance)``, the (n, n) joint covariance of those cells; cells of
            different contexts are independent. Empty: marginals only.
        widths: None, or (num_cells, len(LEVELS)): each cell's central interval at
            ``LEVELS[i]`` is ``mean ± widths[:, i] · z · std`` (z the Gaussian quantile), so a
            surrogate can calibrate each level on its own (split conformal) where errors are
            not Gaussian; the std (what acquisitions use) is unchanged.
    """

    mean: np.ndarray
    std: np.ndarray
    blocks: tuple[tuple[np.ndarray, np.ndarray], ...] = ()
    widths: np.ndarray | None = None

    @property
    def is_joint(self) -> bool:
        return bool(self.blocks)

    def interval(self, level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        """Central interval of log(metric) with probability ``level`` (calibrated at ``LEVELS``
        when the surrogate gave ``widths``; Gaussian otherwise)."""
        from scipy.stats import norm

        z = norm.ppf(0.5 + level / 2.0) * self.std
        i = next((i for i, lv in enumerate(LEVELS) if abs(lv - level) < 1e-9), None)
        if self.widths is not None and i is not None:
            z = z * self.widths[:, i]
        return self.mean - z, self.mean + z

    def median(self) -> np.ndarray:
        """The predictive median on the metric's own scale."""
        return np.exp(self.mean)

    def joint_covariance(self) -> np.ndarray | None:
        """The (num_cells, num_cells) joint covariance when the posterior has one, else None."""
        return self.covariance() if self.is_joint else None

    def covariance(self) -> np.ndarray:
        """(num_cells, num_cells) covariance: the joint blocks, else the diagonal of variances."""
        n = len(self.mean)
        cov = np.diag(np.asarray(self.std, dtype=float) ** 2)
        for idx, block in self.blocks:
            cov[np.ix_(idx, idx)] = block
        return cov if n else np.zeros((0, 0))


@runtime_checkable
class Surrogate(Protocol):
    """A model of one metric over (task, method, hardware) cells.

    ``fit`` and ``condition`` return new objects; the fitted model is immutable.
    """

    metric: str

    @property
    def direction(self) -> str:
        """``max`` or ``min``: which way the metric is better."""

    @property
    def methods(self) -> list[str]:
        """Methods it can predict without being told about more."""

    @property
    def uses_landmarks(self) -> bool:
        """Whether a task's landmarks change its predictions (worth measuring for a new task)."""

    def fit(self, table: "PerfTable", *, key) -> "Surrogate":
        """A new surrogate fitted on ``table`` (left unchanged); deterministic given ``key``."""

    def predict(self, cells, *, table: "PerfTable | None" = None, joint: bool = False) -> Posterior:
        """The posterior of each cell (``task_id, method, hardware_id``) given what the model holds;
        ``table`` describes tasks, methods or hardware it has not seen; ``joint`` adds the
        per-context covariance."""

    def condition(self, observations: "PerfTable") -> "Surrogate":
        """A new surrogate that also holds ``observations`` (no refit; their descriptors join)."""

    def p_fail(self, cells, *, table: "PerfTable | None" = None) -> np.ndarray:
        """P(each cell's benchmark fails: ``oom``, ``unsupported``, ...), (num_cells,)."""

    def same_computation(self, task_id: str, methods: Iterable[str], *,
                         table: "PerfTable | None" = None) -> dict[str, str]:
        """``method -> representative``: methods that run the same computation on this task share one."""
