import numpy as np
import pytest

from metasel.surrogate import GBMSurrogate
from metasel.surrogate.gbm import _variance_components
from metasel.testing.conformance import check_surrogate
from metasel.testing.synthetic import low_rank_table


@pytest.fixture(scope="module")
def synthetic():
    return low_rank_table(num_tasks=60, num_methods=6, num_hardware=2, rank=2, noise=0.05, density=0.7, seed=1)


def test_conformance(synthetic):
    table, _ = synthetic
    cells = list(table.observations[["task_id", "method", "hardware_id"]].itertuples(index=False))[:40]
    check_surrogate(lambda: GBMSurrogate("value"), table, cells, keys=(0, 1))


def test_predicts_held_out_tasks_better_than_the_mean_and_conditioning_helps(synthetic):
    table, truth = synthetic
    held = [f"task{t:04d}" for t in range(50, 60)]
    train = table.filter(tasks=[t for t in table.tasks["task_id"] if t not in held])
    model = GBMSurrogate("value").fit(train, key=0)
    cells = truth[truth.task_id.isin(held)]
    pred = model.predict(cells[["task_id", "method", "hardware_id"]], table=table)
    y = cells["log_value"].to_numpy()
    rmse = float(np.sqrt(np.mean((pred.mean - y) ** 2)))
    assert rmse < 0.7 * float(np.std(y)), (rmse, np.std(y))
    # telling two methods of each held-out context moves its offset: errors shrink on the rest
    obs = table.observations[table.observations.task_id.isin(held)]
    told = obs.groupby(["task_id", "hardware_id"]).head(2)
    cond = model.condition(table.with_observations(told)).predict(cells[["task_id", "method", "hardware_id"]], table=table)
    assert np.mean((cond.mean - y) ** 2) < np.mean((pred.mean - y) ** 2)
    assert np.mean(cond.std) < np.mean(pred.std)


def test_conditioning_matches_the_random_offset_by_hand(synthetic):
    """One told value v of a fresh context shifts every method of that context by the shrunk
    residual n s²/(n s² + σ²) · (v − f), and leaves the offset variance s²σ²/(n s² + σ²)."""
    table, _ = synthetic
    held = "task0059"
    model = GBMSurrogate("value").fit(table.filter(tasks=[t for t in table.tasks["task_id"] if t != held]), key=0)
    cells = [(held, f"m{m:02d}", "hw0") for m in range(6)]
    zero = model.predict(cells, table=table, joint=True)
    cov = zero.covariance()
    s2, noise = model.info()["offset_var"], model.info()["noise_var"]
    np.testing.assert_allclose(cov[np.triu_indices(6, 1)], s2)  # methods of one context share only the offset
    from metasel.data.table import PerfTable

    v = float(zero.mean[0] + 0.5)
    after = model.condition(PerfTable([{"task_id": held, "method": "m00", "hardware_id": "hw0", "value": float(np.exp(v))}],
                                      source="test")).predict(cells, table=table)
    shrink = s2 / (s2 + noise)
    np.testing.assert_allclose(after.mean - zero.mean, shrink * 0.5, rtol=1e-9)
    np.testing.assert_allclose(after.std ** 2 - (zero.std ** 2 - s2), s2 * noise / (s2 + noise), rtol=1e-9)


def test_variance_components_recover_a_planted_split():
    rng = np.random.default_rng(0)
    ctx = np.repeat(np.arange(400), 5)
    resid = rng.normal(scale=0.5, size=400)[ctx] + rng.normal(scale=0.2, size=len(ctx))
    within, between = _variance_components(resid, ctx)
    assert within == pytest.approx(0.04, rel=0.1) and between == pytest.approx(0.25, rel=0.15)
