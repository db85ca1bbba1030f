"""A conformance suite every surrogate (and every baseline that predicts) must pass."""

import numpy as np
import pandas as pd


def check_predictor(fit, table, cells, key_a, key_b):
    """``fit(table, key) -> model`` with ``.predict(cells) -> Prediction``.

    Checks shapes, finite outputs, std > 0, same key -> same result, and that the
    input table is not changed.
    """
    before = table.observations.copy(), table.tasks.copy(), table.methods.copy(), table.hardware.copy()
    model = fit(table, key_a)
    pred = model.predict(cells)
    assert pred.mean.shape == (len(cells),) and pred.std.shape == (len(cells),)
    assert np.isfinite(pred.mean).all() and np.isfinite(pred.std).all()
    assert (pred.std > 0).all()
    again = fit(table, key_a).predict(cells)
    np.testing.assert_array_equal(pred.mean, again.mean)
    np.testing.assert_array_equal(pred.std, again.std)
    for frame, old in zip((table.observations, table.tasks, table.methods, table.hardware), before):
        pd.testing.assert_frame_equal(frame, old)
    other = fit(table, key_b).predict(cells)
    assert other.mean.shape == pred.mean.shape
    return model, pred
