"""Conformance suites, as Optuna's ``SamplerTestCase``: what every surrogate, baseline and backend must do.

Call them from your own tests on your own implementation::

    from metasel.testing.conformance import check_surrogate
    check_surrogate(lambda: MySurrogate("value"), table, cells)

Each raises ``AssertionError`` with what failed.
"""

from __future__ import annotations

import copy
from typing import Callable, Sequence

import numpy as np

from metasel._schema import STATUSES
from metasel.data.measurement import Measurement
from metasel.surrogate.base import Posterior, Surrogate


def _frames(table):
    return tuple(f.copy() for f in (table.observations, table.tasks, table.methods, table.hardware))


def _assert_frames_equal(table, before, what: str) -> None:
    import pandas as pd

    for frame, old in zip((table.observations, table.tasks, table.methods, table.hardware), before):
        try:
            pd.testing.assert_frame_equal(frame, old)
        except AssertionError as exc:
            raise AssertionError(f"{what} changed the input table: {exc}") from None


def check_posterior(post: Posterior, num_cells: int, *, joint: bool = False) -> None:
    """Shapes, finite values, positive std; a joint posterior's blocks are symmetric, PSD, and match the std."""
    assert isinstance(post, Posterior), f"predict must return a Posterior, got {type(post).__name__}"
    assert post.mean.shape == (num_cells,) and post.std.shape == (num_cells,), (post.mean.shape, post.std.shape)
    assert np.isfinite(post.mean).all() and np.isfinite(post.std).all(), "non-finite predictions"
    assert (post.std > 0).all(), "a predictive std is not positive"
    if post.widths is not None:
        from metasel.surrogate.base import LEVELS

        assert post.widths.shape == (num_cells, len(LEVELS)), f"widths: expected {(num_cells, len(LEVELS))}, got {post.widths.shape}"
        assert np.isfinite(post.widths).all() and (post.widths > 0).all(), "interval widths must be positive"
        halves = np.stack([post.interval(lv)[1] - post.mean for lv in LEVELS], axis=1)
        assert (np.diff(halves, axis=1) >= -1e-9).all(), "a wider level gave a narrower interval"
    if not joint:
        return
    assert post.is_joint, "predict(joint=True) returned no covariance blocks"
    covered = np.concatenate([idx for idx, _ in post.blocks])
    assert sorted(covered.tolist()) == list(range(num_cells)), "the joint blocks do not cover every cell once"
    for idx, cov in post.blocks:
        assert cov.shape == (len(idx), len(idx))
        np.testing.assert_allclose(cov, cov.T, atol=1e-9, err_msg="a covariance block is not symmetric")
        assert np.linalg.eigvalsh(cov).min() > -1e-8, "a covariance block is not positive semi-definite"
        np.testing.assert_allclose(np.sqrt(np.diag(cov)), post.std[idx], rtol=1e-6,
                                   err_msg="a covariance block's diagonal is not the marginal variance")


def check_surrogate(make: Callable[[], Surrogate], table, cells, *, keys: Sequence = (0, 1)) -> Surrogate:
    """The :class:`~metasel.surrogate.base.Surrogate` contract on ``table`` and query ``cells``
    (``(task_id, method, hardware_id)`` tuples of cells with descriptors in ``table``, at least
    one of which is measured ``ok`` in ``table``).

    Checks: the protocol's members; ``fit`` returns a new fitted object and leaves the table
    untouched; the posterior's shapes and values; the same key gives the same fit and
    another key a different one; the joint posterior agrees with the marginal one;
    ``condition`` returns a new object (the original's predictions unchanged) that moves a
    told cell towards its value and narrows it; ``p_fail`` and ``same_computation``.
    Returns the fitted surrogate.
    """
    cells = [tuple(c) for c in cells]
    template = make()
    before = _frames(table)
    model = template.fit(table, key=keys[0])
    _assert_frames_equal(table, before, "fit")
    assert model is not template, "fit must return a new object"
    assert isinstance(model, Surrogate), "missing members of the Surrogate protocol"
    assert model.direction in ("max", "min") and all(isinstance(m, str) for m in model.methods)
    post = model.predict(cells)
    check_posterior(post, len(cells))
    again = template.fit(table, key=keys[0]).predict(cells)
    np.testing.assert_array_equal(post.mean, again.mean, err_msg="the same key gave another fit")
    np.testing.assert_array_equal(post.std, again.std, err_msg="the same key gave another fit")
    other = make().fit(table, key=keys[1]).predict(cells)
    assert not np.array_equal(post.mean, other.mean), "another key gave the very same fit"
    joint = model.predict(cells, joint=True)
    check_posterior(joint, len(cells), joint=True)
    np.testing.assert_allclose(joint.mean, post.mean, rtol=1e-12, err_msg="joint and marginal means differ")
    _check_condition(model, table, cells, post)
    p = np.asarray(model.p_fail(cells))
    assert p.shape == (len(cells),) and ((p >= 0) & (p <= 1)).all(), "p_fail must be probabilities, one per cell"
    task, _, _ = cells[0]
    same = model.same_computation(task, model.methods)
    assert set(same) == set(model.methods) and set(same.values()) <= set(model.methods)
    return model


def _check_condition(model: Surrogate, table, cells, post: Posterior) -> None:
    metric = model.metric
    long = table.long(metric)
    measured = {(t, m, h): v for t, m, h, v in long[["task_id", "method", "hardware_id", "value"]].itertuples(index=False)}
    told = next((i for i, c in enumerate(cells) if c in measured), None)
    assert told is not None, "check_surrogate needs a query cell that the table measures"
    t, m, h = cells[told]
    target = float(np.log(measured[cells[told]])) + 1.0  # one log unit above its record: news to the model
    from metasel.data.table import PerfTable

    obs = PerfTable([{"task_id": t, "method": m, "hardware_id": h, metric: float(np.exp(target))}], source="conformance")
    frozen = copy.deepcopy(post)
    cond = model.condition(obs)
    assert cond is not model, "condition must return a new object"
    after = model.predict(cells)
    np.testing.assert_array_equal(after.mean, frozen.mean, err_msg="condition changed the original model")
    moved = cond.predict(cells)
    check_posterior(moved, len(cells))
    assert abs(moved.mean[told] - target) < abs(post.mean[told] - target), "conditioning did not move the told cell towards its value"


def check_strategy(strategy, train, test, *, seed: int = 0, backend=None) -> np.ndarray:
    """The :class:`~metasel.evaluation.strategies.Strategy` contract on a training and a test problem:
    scores of the right shape with no NaN, the same seed the same scores, the problems untouched,
    and an order of distinct candidates (all of them, unless the strategy stops early, as an
    active loop on twins does). ``backend`` answers an active strategy's benchmarks (a
    :class:`~metasel.evaluation.replay.ReplayBackend` of the full table). Returns the scores."""
    from metasel.evaluation.strategies import Strategy

    assert isinstance(strategy, Strategy), "missing members of the Strategy protocol"
    arrays = [copy.deepcopy(getattr(p, a)) for p in (train, test) for a in ("score", "failed", "x", "method_x")]
    scores = np.asarray(strategy.fit(train, seed=seed).scores(test), dtype=float)
    assert scores.shape == (len(test.contexts), len(test.methods)), scores.shape
    assert not np.isnan(scores).any(), "NaN scores (an unknown method scores -inf, never NaN)"
    again = np.asarray(strategy.fit(train, seed=seed).scores(test), dtype=float)
    np.testing.assert_array_equal(scores, again, err_msg="the same seed gave other scores")
    now = [getattr(p, a) for p in (train, test) for a in ("score", "failed", "x", "method_x")]
    for a, b in zip(arrays, now):
        np.testing.assert_array_equal(a, b, err_msg="the strategy changed its problem")
    for i in range(len(test.contexts)):
        cand = test.candidates(i)
        if len(cand):
            order = strategy.order(test, i, scores=scores, candidates=cand, rng=np.random.default_rng(i), backend=backend)
            assert len(set(order)) == len(order) and set(order) <= set(cand.tolist()) and order, \
                "order must be distinct candidates"
    return scores


def mean_zero_shot_regret(scores: np.ndarray, test) -> float:
    """Mean relative regret of picking each test context's best-scored candidate (maximised scores)."""
    out = []
    for i in range(len(test.contexts)):
        cand = test.candidates(i)
        true = test.score[i]
        if not len(cand) or not np.isfinite(true).any():
            continue
        pick = int(cand[np.argmax(scores[i, cand])])
        got = true[pick] if np.isfinite(true[pick]) else np.nanmin(true) - 1.0
        out.append(1.0 - np.exp(got - np.nanmax(true)))
    return float(np.mean(out))


def check_backend(backend, task_id: str, hardware_id: str, *, ok_method: str, metric: str,
                  failing_method: str | None = None) -> Measurement:
    """The :class:`~metasel.select.loop.Backend` contract: ``measure`` gives a Measurement with a known
    status; an ``ok`` one a positive finite value of ``metric`` and a cost; a failing one a failure
    status and no metrics. Returns the ``ok`` measurement."""
    from metasel.select.loop import Backend

    assert isinstance(backend, Backend), "missing the Backend protocol's measure"
    got = backend.measure(task_id, ok_method, hardware_id)
    assert isinstance(got, Measurement), f"measure must return a Measurement, got {type(got).__name__}"
    assert got.status == "ok", f"{ok_method}: expected ok, got {got.status} ({got.message})"
    value = got.value(metric)
    assert value is not None and np.isfinite(value) and value > 0, f"{metric}: expected a positive value, got {value!r}"
    assert got.seconds >= 0
    if failing_method is not None:
        bad = backend.measure(task_id, failing_method, hardware_id)
        assert bad.status != "ok" and bad.status in STATUSES, bad.status
        assert bad.value(metric) is None and not bad.metrics
    return got
