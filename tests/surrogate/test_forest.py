"""Forests as arrays: the same predictions as scikit-learn's, and stored node arrays are checked."""

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from metasel.surrogate._forest import Forest


@pytest.mark.parametrize("classify", [True, False])
def test_forest_predicts_what_scikit_learn_predicts(classify):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 12))
    y = (x[:, 0] + 0.3 * rng.normal(size=300) > 0).astype(int) if classify else x[:, 0] ** 2 + rng.normal(size=300)
    forest = Forest.fit(x, y, classify=classify, seed=4, trees=20)
    kind = RandomForestClassifier if classify else RandomForestRegressor
    ref = kind(n_estimators=20, min_samples_leaf=2, max_features="sqrt", random_state=4, n_jobs=1).fit(x, y)
    xt = rng.normal(size=(80, 12))
    want = ref.predict_proba(xt)[:, 1] if classify else ref.predict(xt)
    np.testing.assert_allclose(forest.predict(xt), want, atol=1e-12)
    again = Forest.from_arrays(forest.arrays("f"), "f")
    np.testing.assert_array_equal(again.predict(xt), forest.predict(xt))


def test_a_classifier_of_one_class_predicts_that_class():
    x = np.random.default_rng(1).normal(size=(20, 3))
    assert np.all(Forest.fit(x, np.zeros(20, int), classify=True, seed=0, trees=3).predict(x) == 0.0)
    assert np.all(Forest.fit(x, np.ones(20, int), classify=True, seed=0, trees=3).predict(x) == 1.0)


def test_inconsistent_node_arrays_are_refused():
    x = np.random.default_rng(2).normal(size=(50, 4))
    arrays = Forest.fit(x, x[:, 0], classify=False, seed=0, trees=2).arrays("f")
    bad = dict(arrays)
    bad["f.left"] = np.where(bad["f.left"] >= 0, len(bad["f.left"]) + 5, -1).astype(np.int32)
    with pytest.raises(ValueError, match="inconsistent"):
        Forest.from_arrays(bad, "f")
    short = dict(arrays)
    short["f.value"] = short["f.value"][:-1]
    with pytest.raises(ValueError, match="inconsistent"):
        Forest.from_arrays(short, "f")


def test_a_prior_smooths_pure_leaves():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 1))
    y = (x[:, 0] > 0).astype(int)
    plain = Forest.fit(x, y, classify=True, seed=0, trees=10)
    smooth = Forest.fit(x, y, classify=True, seed=0, trees=10, prior=0.5)
    far = np.array([[5.0], [-5.0]])
    assert plain.predict(far).tolist() == [1.0, 0.0]  # pure leaves: "certain"
    p = smooth.predict(far)
    assert 0.9 < p[0] < 1.0 and 0.0 < p[1] < 0.1


def test_a_regressor_gives_out_of_bag_predictions():
    from sklearn.ensemble import RandomForestRegressor

    rng = np.random.default_rng(5)
    x = rng.normal(size=(120, 4))
    y = np.sign(x[:, 0]) + 0.1 * rng.normal(size=120)
    forest, oob = Forest.fit_oob(x, y, seed=2, trees=30, classify=False, max_features=1.0)
    ref = RandomForestRegressor(n_estimators=30, min_samples_leaf=2, max_features=1.0, random_state=2, n_jobs=1,
                                oob_score=True).fit(x, y)
    np.testing.assert_allclose(oob, ref.oob_prediction_, atol=1e-12)
    np.testing.assert_allclose(forest.predict(x), ref.predict(x), atol=1e-12)
    assert np.mean((oob - y) ** 2) > np.mean((forest.predict(x) - y) ** 2)  # out-of-bag is the honest, worse one


def test_tree_mean_offsets_are_out_of_bag_on_training_cells_and_averaged_for_unseen_methods():
    from metasel.surrogate._forest import TREE_MEAN_MIN, TreeMean

    rng = np.random.default_rng(6)
    C = 60
    xc = rng.normal(size=(C, 3))
    y = np.stack([np.where(xc[:, 0] > 0, 1.0, -1.0), 2.0 * np.ones(C), np.abs(xc[:, 1])], axis=1)
    mask = np.ones_like(y)
    mask[40:, 0] = 0.0  # method 0: observed on 40 contexts
    mask[TREE_MEAN_MIN - 1:, 1] = 0.0  # method 1: too few cells for a forest
    model, offsets = TreeMean.fit(xc, y, mask, seed=0, trees=40)
    assert sorted(model.forests) == [0, 2]
    assert model.const[1] == pytest.approx(2.0)
    full = model.offsets(xc, [0, 1, 2])
    np.testing.assert_allclose(offsets[40:, 0], full[40:, 0])  # unobserved cells: the full forest
    assert not np.allclose(offsets[:40, 0], full[:40, 0])  # observed cells: out of bag
    np.testing.assert_allclose(full[:, 1], 2.0)
    assert np.mean(np.sign(full[:, 0]) == np.sign(xc[:, 0])) > 0.9  # the step is learnt
    unseen = model.offsets(xc, [-1, 2])
    np.testing.assert_allclose(unseen[:, 0], full.mean(axis=1))
    np.testing.assert_allclose(unseen[:, 1], full[:, 2])
    again = TreeMean.from_arrays(model.arrays("mean"), "mean", sorted(model.forests))
    np.testing.assert_array_equal(again.offsets(xc, [0, 1, 2, -1]), model.offsets(xc, [0, 1, 2, -1]))
