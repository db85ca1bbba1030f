"""suggest/tune's model: a cached fit is reused and conditioned on what was added, refitted when it must be."""

import numpy as np

from metasel import Store
from metasel.app.models import REFIT_FRACTION, model_for
from metasel.testing.synthetic import low_rank_table


def _grow(table, n, seed=0):
    """``n`` new observations: repeats of existing cells with other values (new ids)."""
    obs = table.observations.sample(n, random_state=seed).copy()
    obs["value"] = obs["value"] * np.random.default_rng(seed).uniform(0.5, 2.0, n)
    obs["timestamp"] = "later"
    obs["obs_id"] = None
    return table.with_observations(obs)


def test_a_cached_fit_is_conditioned_on_additions_and_refitted_when_they_are_many(tmp_path):
    store_path = tmp_path / "s.sqlite"
    lines = []
    with Store(store_path) as s:
        s.append(low_rank_table(num_tasks=20, num_methods=4, num_hardware=1)[0])
        first = model_for(s.load(), "value", store_path=store_path, model_path=None, say=lines.append,
                          steps=30)
        assert any(line.startswith("model: fitting value") for line in lines)
        assert any("fit: done" in line for line in lines)  # the fit's stages are reported
        table = s.load()
        s.append(_grow(table, 3))
        lines.clear()
        grown = s.load()
        again = model_for(grown, "value", store_path=store_path, model_path=None, say=lines.append, steps=30)
        assert not any("fitting" in line for line in lines), lines
        assert any("conditioned on the 3 added since" in line for line in lines), lines
        # conditioning is what predictions see: the new evidence moves the cells it measured
        added = grown.observations[grown.observations["timestamp"] == "later"].iloc[0]
        cell = [(added["task_id"], added["method"], added["hardware_id"])]
        assert not np.allclose(again.predict(cell).mean, first.predict(cell).mean)
        lines.clear()
        model_for(grown, "value", store_path=store_path, model_path=None, say=lines.append, steps=30,
                  refit=True)
        assert any("fitting" in line and "asked to (--refit)" in line for line in lines), lines
        n = int(REFIT_FRACTION * len(grown)) + 2
        s.append(_grow(s.load(), n, seed=1))
        lines.clear()
        model_for(s.load(), "value", store_path=store_path, model_path=None, say=lines.append, steps=30)
        assert any("fitting" in line and "were added since its fit" in line for line in lines), lines
        # a retracted observation the fit used: refit without it
        s.retract([s.load().observations["obs_id"].iloc[0]], "bad run")
        lines.clear()
        model_for(s.load(), "value", store_path=store_path, model_path=None, say=lines.append, steps=30)
        assert any("no longer in the store" in line for line in lines), lines


def test_suggest_says_level_by_level_only_where_enough_units_were_held_out():
    """Four machines: every calibration split together holds out 4 < 8, so a new machine keeps one
    std factor and suggest says so; twelve machines reach 8 held out and get widths level by level."""
    from metasel.app.suggest import describe_intervals, intervals_for
    from metasel.surrogate import BayesianSurrogate, TrainConfig

    lines = {}
    for num_hardware in (4, 12):
        table, _ = low_rank_table(num_tasks=10, num_methods=4, num_hardware=num_hardware, rank=1, noise=0.05,
                                  density=0.9, seed=8)
        model = BayesianSurrogate("value", config=TrainConfig(steps=60, members=1), embed="none").fit(
            table, key=0, calibrate_by="hardware")
        lines[num_hardware] = describe_intervals(*intervals_for(model))
    assert lines[4] == ("intervals calibrated for new hardware: one std factor at 90% (too few held out for level by "
                        "level), on hardware groups held out of the training data")
    assert lines[12] == ("intervals calibrated for new hardware: split conformal, level by level, on hardware groups "
                         "held out of the training data")
