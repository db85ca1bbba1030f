import subprocess
import sys

import numpy as np
import pytest

from metasel import InputDataError, NotFittedError
from metasel.surrogate import Surrogate, TrainConfig
from metasel.surrogate.synthetic import low_rank_table
from tests.conformance import check_predictor

FAST = TrainConfig(hidden=32, k=3, rank=3, steps=600, lr=1e-2)


@pytest.fixture(scope="module")
def synthetic():
    table, truth = low_rank_table(num_tasks=80, num_methods=8, num_hardware=2, rank=2, noise=0.05, density=0.6, seed=0)
    return table, truth


def _split(table, frac=0.2, seed=0):
    rng = np.random.default_rng(seed)
    obs = table.observations
    test = rng.random(len(obs)) < frac
    return table.with_observations(obs[~test]), obs[test]


def test_conformance(synthetic, getkey):
    table, _ = synthetic
    train, test = _split(table)
    cells = test[["task_id", "method", "hardware_id"]]
    check_predictor(lambda t, k: Surrogate("value", config=FAST, embed="hash").fit(t, key=k), train, cells, getkey(), getkey())


def test_recovers_planted_structure_with_calibrated_intervals(synthetic):
    table, _ = synthetic
    train, test = _split(table, seed=1)
    model = Surrogate("value", config=FAST, embed="none").fit(train, key=0)
    pred = model.predict(test[["task_id", "method", "hardware_id"]])
    y = np.log(test["value"].to_numpy())
    err = pred.mean - y
    rmse = float(np.sqrt(np.mean(err ** 2)))
    baseline = float(np.std(y))  # predicting the overall mean
    assert rmse < 0.15, rmse  # noise is 0.05; a broken model is near the baseline (~1)
    assert rmse < 0.2 * baseline
    z = np.abs(err) / pred.std
    cover90, cover50 = float(np.mean(z < 1.645)), float(np.mean(z < 0.674))
    assert 0.8 <= cover90 <= 0.98, cover90
    assert 0.35 <= cover50 <= 0.7, cover50


def test_condition_updates_a_new_task_without_refit(synthetic):
    table, truth = synthetic
    new_task = "task0079"
    train = table.filter(tasks=[t for t in table.tasks["task_id"] if t != new_task])
    model = Surrogate("value", config=FAST, embed="none").fit(train, key=0)
    cells = truth[(truth.task_id == new_task) & (truth.hardware_id == "hw0")][["task_id", "method", "hardware_id"]]
    prior = model.predict(cells, table=table)
    obs = table.observations[(table.observations.task_id == new_task) & (table.observations.hardware_id == "hw0")]
    seen = obs.head(3)
    post_model = model.condition(table.with_observations(seen))
    post = post_model.predict(cells)
    y_true = truth[(truth.task_id == new_task) & (truth.hardware_id == "hw0")]["log_value"].to_numpy()
    # conditioning shrinks uncertainty and does not make the error worse on average
    assert np.mean(post.std) < np.mean(prior.std)
    assert np.mean((post.mean - y_true) ** 2) <= np.mean((prior.mean - y_true) ** 2) + 0.01
    # the measured cells are predicted near their measured values
    methods = cells["method"].tolist()
    at = [methods.index(m) for m in seen["method"]]
    assert np.allclose(post.mean[at], np.log(seen["value"].to_numpy()), atol=0.15)
    assert model.predict(cells, table=table).mean.tolist() == prior.mean.tolist()  # the original is untouched


def test_unknown_descriptor_and_unfitted_errors(synthetic):
    table, _ = synthetic
    with pytest.raises(NotFittedError):
        Surrogate("value").predict([("task0000", "m00", "hw0")])
    model = Surrogate("value", config=TrainConfig(steps=20), embed="none").fit(table, key=0)
    with pytest.raises(InputDataError, match="no descriptor for task 'nope'"):
        model.predict([("nope", "m00", "hw0")])
    with pytest.raises(InputDataError, match="metric"):
        Surrogate("speed")


def test_save_load_identical_in_fresh_process(tmp_path, synthetic):
    table, _ = synthetic
    model = Surrogate("value", config=TrainConfig(steps=50), embed="hash").fit(table, key=3)
    path = model.save(tmp_path / "m.metasel")
    cells = [("task0001", "m02", "hw1"), ("task0005", "m07", "hw0")]
    pred = model.predict(cells)
    code = (f"import sys, numpy as np; from metasel.surrogate import Surrogate; "
            f"p = Surrogate.load({str(path)!r}).predict({cells!r}); "
            f"print(repr(p.mean.tolist()), repr(p.std.tolist())); "
            f"print(sorted(m for m in ('jax', 'torch', 'flax', 'numpyro') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == f"{pred.mean.tolist()!r} {pred.std.tolist()!r}"
    assert out[1] == "[]"  # predicting needs no jax or torch


@pytest.mark.parametrize("content", [b"", b"garbage" * 10, None, "newer"])
def test_bad_model_files(tmp_path, synthetic, content):
    table, _ = synthetic
    path = tmp_path / "m.metasel"
    if content == "newer" or content is None:
        Surrogate("value", config=TrainConfig(steps=5), embed="none").fit(table, key=0).save(path)
        data = path.read_bytes()
        if content is None:
            path.write_bytes(data[: len(data) // 2])
        else:
            import io
            import json

            with np.load(io.BytesIO(data)) as z:
                arrays = {k: z[k] for k in z.files}
            meta = json.loads(arrays["meta.json"].tobytes())
            meta["format_version"] = 99
            arrays["meta.json"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
            with open(path, "wb") as fh:
                np.savez(fh, **arrays)
    else:
        path.write_bytes(content)
    with pytest.raises(InputDataError, match="newer" if content == "newer" else "not a metasel model|truncated|corrupt"):
        Surrogate.load(path)
