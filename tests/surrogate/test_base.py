"""Posterior intervals: Gaussian, or calibrated level by level."""

import numpy as np
import pytest
from scipy.stats import norm

from metasel.surrogate.base import LEVELS, Posterior


def test_interval_uses_calibrated_widths_at_their_levels_and_the_gaussian_elsewhere():
    mean, std = np.array([0.0, 1.0]), np.array([1.0, 2.0])
    widths = np.tile(np.linspace(0.5, 1.25, len(LEVELS)), (2, 1))
    plain, calibrated = Posterior(mean, std), Posterior(mean, std, widths=widths)
    for i, level in enumerate(LEVELS):
        lo, hi = calibrated.interval(level)
        np.testing.assert_allclose(hi - mean, norm.ppf(0.5 + level / 2) * std * widths[:, i])
        np.testing.assert_allclose(mean - lo, hi - mean)
        np.testing.assert_allclose(plain.interval(level)[1] - mean, norm.ppf(0.5 + level / 2) * std)
    np.testing.assert_allclose(calibrated.interval(0.7)[1], plain.interval(0.7)[1])  # not a calibrated level
    assert calibrated.interval(0.5)[1][0] == pytest.approx(0.5 * norm.ppf(0.75))
