import subprocess
import sys

import numpy as np
import pytest

from metasel import InputDataError, NotFittedError
from metasel.surrogate import Surrogate, TrainConfig
from metasel.surrogate.synthetic import low_rank_table
from tests.conformance import check_predictor

FAST = TrainConfig(hidden=32, k=3, rank=3, steps=600, lr=1e-2, members=1)


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
    model = Surrogate("value", config=TrainConfig(steps=20, members=1), embed="none").fit(table, key=0)
    with pytest.raises(InputDataError, match="no descriptor for task 'nope'"):
        model.predict([("nope", "m00", "hw0")])
    with pytest.raises(InputDataError, match="metric"):
        Surrogate("speed")


def test_save_load_identical_in_fresh_process(tmp_path, synthetic):
    table, _ = synthetic
    model = Surrogate("value", config=TrainConfig(steps=50, members=1), embed="hash").fit(table, key=3)
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
        Surrogate("value", config=TrainConfig(steps=5, members=1), embed="none").fit(table, key=0).save(path)
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


def test_pair_terms_match_hand_computation():
    from metasel.meta.features import PAIR_TERMS, context_quantities, method_quantities, pair_terms

    llama = {"arch": "llama", "layers": 2, "hidden": 64, "heads": 4, "kv_heads": 4, "intermediate": 128, "vocab": 1000,
             "dtype": "float32"}
    gpt2 = {**llama, "arch": "gpt2"}
    work = {"batch_size": 4, "num_requests": 8, "prompt_len": 32, "output_len": 16, "shared_prefix": 0.5}
    cpu = {"device": "cpu", "threads": 1, "peak_tflops": 0.1, "memory_gb": 8, "avx512_bf16": True}
    gpu = {"device": "cuda", "peak_tflops": 100, "mem_bw_gbs": 1000, "memory_gb": 80}
    ctx = np.stack([context_quantities({"model": llama, "workload": work}, cpu),
                    context_quantities({"model": gpt2, "workload": work}, cpu),
                    context_quantities({"model": llama, "workload": {**work, "batch_size": 1}}, gpu)])
    mth = np.stack([method_quantities({"static_batching": 1, "weight_bits": 32}),
                    method_quantities({"int8_dynamic": 1, "weight_bits": 8}),
                    method_quantities({"bf16": 1, "weight_bits": 16, "prefix_cache": 1}),
                    method_quantities({"prompt_lookup": 1, "weight_bits": 32, "static_cache": 1})])
    z = pair_terms(ctx, mth)
    col = {name: i for i, name in enumerate(PAIR_TERMS)}
    assert z.shape == (3, 4, len(PAIR_TERMS))
    assert z[0, 0, col["x.batching_log_batch"]] == pytest.approx(np.log(4))
    assert z[0, 0, col["x.batching_log_batch_accel"]] == 0.0  # a CPU
    assert z[2, 0, col["x.batching_log_batch"]] == 0.0  # batch size 1: nothing to batch
    assert z[0, 1, col["x.weight_bytes_saved"]] == pytest.approx(np.log(4))  # int8 of fp32 Linear weights
    assert z[0, 2, col["x.weight_bytes_saved"]] == pytest.approx(np.log(2))  # bf16
    # GPT-2 blocks are Conv1D: int8 dynamic quantises only the LM head
    params = 2 * (64 * 16 * (2 * 4 + 2 * 4) + 2 * 64 * 128 + 2 * 64) + 1000 * 64
    share = 1000 * 64 / params
    assert z[1, 1, col["x.weight_bytes_saved"]] == pytest.approx(-np.log(1 - share + share / 4), rel=1e-5)
    assert z[1, 2, col["x.weight_bytes_saved"]] == pytest.approx(np.log(2))  # bf16 casts every weight
    assert z[0, 2, col["x.prefix_reuse"]] == pytest.approx(0.5 * 7 / 8)
    assert z[0, 3, col["x.speculative_log_output"]] == pytest.approx(np.log(16))
    assert z[0, 3, col["x.speculative_batched"]] == 1.0 and z[2, 3, col["x.speculative_batched"]] == 0.0
    assert z[2, 3, col["x.static_cache_accel"]] == 1.0 and z[0, 3, col["x.static_cache_accel"]] == 0.0
    assert not z[:, :, col["x.bf16_not_native"]].any()  # both have bf16 support
    generic = context_quantities({}, cpu)  # a generic task: no effect, and no landmarks (NaN: the encoder fills them)
    assert generic[:9].tolist() == [0.0] * 9 and np.isnan(generic[9:]).all()
    # landmarks: prompt lookup pays with log tokens per pass, on accelerators by a term of its own
    lm = {"lookup_tokens_per_pass": 2.0, "draft_tokens_per_pass": 0.5}  # below 1 is invalid: missing
    ctx = np.stack([context_quantities({"model": llama, "workload": work}, cpu, lm),
                    context_quantities({"model": llama, "workload": work}, gpu, lm)])
    z = pair_terms(ctx, mth)
    assert z[0, 3, col["x.lookup_landmark"]] == pytest.approx(np.log(2)) and z[0, 3, col["x.lookup_landmark_accel"]] == 0
    assert z[1, 3, col["x.lookup_landmark_accel"]] == pytest.approx(np.log(2))
    assert not z[:, :3, col["x.lookup_landmark"]].any() and np.isnan(ctx[:, 10]).all()


def test_ensemble_predicts_the_mixture_of_its_members(synthetic, tmp_path):
    from dataclasses import replace

    table, _ = synthetic
    train, test = _split(table, seed=2)
    model = Surrogate("value", config=replace(FAST, steps=200, members=3), embed="none").fit(train, key=0, calibrate=False)
    assert len(model._state.members) == 3 and model.info()["members"] == 3
    cells = test[["task_id", "method", "hardware_id"]]
    pred = model.predict(cells)
    singles = [Surrogate("value", config=model.config, embed="none", _state=replace(model._state, members=[m])).predict(cells)
               for m in model._state.members]
    means = np.stack([p.mean for p in singles])
    assert np.ptp(means, axis=0).max() > 1e-4  # the members differ (different keys)
    np.testing.assert_allclose(pred.mean, means.mean(axis=0), rtol=1e-10)
    var = np.mean([p.std ** 2 for p in singles], axis=0) + means.var(axis=0)
    np.testing.assert_allclose(pred.std, np.sqrt(var), rtol=1e-10)
    path = model.save(tmp_path / "ens.metasel")
    again = Surrogate.load(path).predict(cells)
    np.testing.assert_array_equal(again.mean, pred.mean)
    np.testing.assert_array_equal(again.std, pred.std)


def test_per_context_noise_is_larger_where_measurements_are_noisier():
    table, _ = low_rank_table(num_tasks=60, num_methods=6, num_hardware=2, rank=1, noise=0.02, density=0.9, seed=4)
    obs = table.observations.copy()
    noisy = obs["hardware_id"] == "hw1"
    rng = np.random.default_rng(0)
    obs.loc[noisy, "value"] = obs.loc[noisy, "value"] * np.exp(rng.normal(scale=0.4, size=int(noisy.sum())))
    from dataclasses import replace

    model = Surrogate("value", config=replace(FAST, hetero_noise=True), embed="none").fit(
        table.with_observations(obs), key=0, calibrate=False)
    # the predictive std of a fresh context on each hardware holds its noise: compare like with like
    fresh = model.forget(list(table.tasks["task_id"]))
    cells = [(t, "m00", h) for t in table.tasks["task_id"][:20] for h in ("hw0", "hw1")]
    std = fresh.predict(cells).std.reshape(20, 2)
    assert np.median(std[:, 1]) > 1.5 * np.median(std[:, 0]), std


def test_older_model_format_is_refused_with_a_clear_message(tmp_path, synthetic):
    import io
    import json

    table, _ = synthetic
    path = Surrogate("value", config=TrainConfig(steps=5, members=1), embed="none").fit(table, key=0, calibrate=False) \
        .save(tmp_path / "m.metasel")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["meta.json"].tobytes().decode())
    meta["format_version"] = 1
    arrays["meta.json"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    old = tmp_path / "old.metasel"
    old.write_bytes(buf.getvalue())
    with pytest.raises(InputDataError, match="older metasel; fit it again"):
        Surrogate.load(old)


def test_calibration_leaves_out_what_it_is_told():
    from dataclasses import replace

    table, _ = low_rank_table(num_tasks=30, num_methods=5, num_hardware=5, rank=1, noise=0.05, density=0.8, seed=5)
    cfg = replace(FAST, steps=150)
    by_hw = Surrogate("value", config=cfg, embed="none").fit(table, key=0, calibrate_by="hardware")
    info = by_hw.info()
    assert info["calibrate_by"] == "hardware"
    assert min(info["calib_zero"], info["calib_cond"], info["calib_seen"]) >= 1.0
    # five hardware, a fifth held out: all of one machine's rows, and nothing else
    from metasel.surrogate.model import _held_out_rows

    long = table.long("value")
    rows = _held_out_rows(table, long, "hardware", np.random.default_rng(0))
    held_hw = set(long.loc[rows, "hardware_id"])
    assert len(held_hw) == 1 and rows.sum() == int((long["hardware_id"] == next(iter(held_hw))).sum())
    rows = _held_out_rows(table, long, "task", np.random.default_rng(0))
    assert long.loc[rows, "task_id"].nunique() == 6 and long.loc[rows, "hardware_id"].nunique() == 5
    with pytest.raises(InputDataError, match="calibrate_by.*no task has"):
        Surrogate("value", config=cfg, embed="none").fit(table, key=0, calibrate_by="model.nonexistent")


def test_failure_model_learns_where_a_method_fails(tmp_path):
    table, _ = low_rank_table(num_tasks=40, num_methods=4, num_hardware=2, rank=1, noise=0.05, density=1.0, seed=6)
    obs = table.observations.copy()
    bad = (obs["method"] == "m00") & (obs["hardware_id"] == "hw1")
    obs.loc[bad, "status"] = "unsupported"
    obs.loc[bad, "value"] = np.nan
    table = table.with_observations(obs)
    new = "task0039"
    train = table.filter(tasks=[t for t in table.tasks["task_id"] if t != new])
    model = Surrogate("value", config=replace_fast(steps=100), embed="none").fit(train, key=0, calibrate=False)
    cells = [(new, m, h) for h in ("hw0", "hw1") for m in ("m00", "m01")]
    p = model.p_fail(cells, table=table)
    assert p[2] > 0.8 and max(p[0], p[1], p[3]) < 0.2, p  # m00 on hw1 fails; the rest run
    again = Surrogate.load(model.save(tmp_path / "f.metasel")).p_fail(cells, table=table)
    np.testing.assert_allclose(again, p)
    # a recorded failure of the very cell is certain; a fresh selector never recommends it blind
    from metasel.meta.selector import Selector

    told = model.condition(table.filter(tasks=[new], hardware=["hw1"]))
    assert told.p_fail([(new, "m00", "hw1")])[0] == 1.0
    fresh = model.condition(table.filter(tasks=[new], hardware=["hw1"]).with_observations(obs.iloc[0:0]))
    sel = Selector(fresh, new, "hw1", candidates=["m00", "m01", "m02", "m03"], key=0)
    assert sel.best().method != "m00"
    assert sel.ask().method != "m00"


def replace_fast(**kw):
    from dataclasses import replace

    return replace(FAST, **kw)


def test_pair_terms_can_be_turned_off(tmp_path):
    from dataclasses import replace
    from pathlib import Path

    from metasel.store import read_export

    data = read_export(Path(__file__).resolve().parents[1] / "datasets" / "cpu-v1")
    small = data.filter(tasks=sorted(data.tasks["task_id"])[:6])
    on = Surrogate("throughput_tok_s", config=replace(FAST, steps=5), embed="none").fit(small, key=0, calibrate=False)
    off = Surrogate("throughput_tok_s", config=replace(FAST, steps=5, pair_terms=False), embed="none").fit(
        small, key=0, calibrate=False)
    assert len(on._state.encoder.pair_columns) > 0 and len(on._state.members[0].beta) > 0
    assert len(off._state.encoder.pair_columns) == 0 and len(off._state.members[0].beta) == 0
    assert len(on._state.members[0].tau) == len(on._state.members[0].beta)
    flat = Surrogate("throughput_tok_s", config=replace(FAST, steps=5, pair_slopes=False), embed="none").fit(
        small, key=0, calibrate=False)
    assert len(flat._state.members[0].beta) > 0 and len(flat._state.members[0].tau) == 0
    # a format-2 file (before pair slopes) still loads, as a model without them
    import io
    import json

    with np.load(flat.save(tmp_path / "flat.metasel")) as z:
        arrays = {k: z[k] for k in z.files if not k.endswith(".tau")}
    meta = json.loads(arrays["meta.json"].tobytes().decode())
    meta["format_version"] = 2
    del meta["config"]["pair_slopes"], meta["config"]["slope_prior"]
    arrays["meta.json"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    (tmp_path / "v2.metasel").write_bytes(buf.getvalue())
    cells5 = small.observations[["task_id", "method", "hardware_id"]].head(5)
    np.testing.assert_array_equal(Surrogate.load(tmp_path / "v2.metasel").predict(cells5).std, flat.predict(cells5).std)
    cells = small.observations[["task_id", "method", "hardware_id"]].head(5)
    again = Surrogate.load(off.save(tmp_path / "off.metasel")).predict(cells)
    np.testing.assert_array_equal(again.mean, off.predict(cells).mean)


def test_pair_slopes_are_gaussian_conditioning_of_the_joint_covariance(tmp_path):
    """With per-context pair slopes, a context's values are jointly Gaussian with covariance
    psi diag(prior) psi' + Z diag(tau^2) Z' + noise^2 I; predict (zero-shot and after a told
    value) must be exactly that Gaussian, and it must survive save/load."""
    from pathlib import Path

    from metasel.store import read_export
    from metasel.table import PerfTable

    data = read_export(Path(__file__).resolve().parents[1] / "datasets" / "cpu-v1")
    small = data.filter(tasks=sorted(data.tasks["task_id"])[:8])
    model = Surrogate("throughput_tok_s", config=replace_fast(steps=5, same_computation=False), embed="none").fit(
        small, key=0, calibrate=False)
    s = model._state
    member = s.members[0]
    assert model.config.pair_slopes and len(member.tau) == len(s.encoder.pair_columns) > 0
    member.tau = np.linspace(0.5, 1.5, len(member.tau))  # large slopes, so they matter
    task, hw = sorted(s.train_contexts)[0]
    model = model.forget([task])
    names = sorted(s.methods)
    xm = model._method_inputs(names, s.methods)
    hm = model._method_outputs(member, names, xm)
    cfg = model.config
    psi = np.concatenate([np.ones((len(names), 1)), hm[:, 1 + cfg.k:]], axis=1)
    prior = np.concatenate([[member.s_bias ** 2], np.ones(cfg.rank)])
    z = s.encoder.pairs([(s.tasks[task], s.hardware[hw])], [s.methods[m] for m in names])[0]
    cov = (psi * prior) @ psi.T + (z * member.tau ** 2) @ z.T + member.noise ** 2 * np.eye(len(names))
    cells = [(task, m, hw) for m in names]
    zero = model.predict(cells)
    mu = (zero.mean - s.y_mean) / s.y_std
    np.testing.assert_allclose((zero.std / s.y_std) ** 2, np.diag(cov), rtol=1e-6)
    # one told value moves every method by its covariance with the told one
    told = names.index("int8_dynamic+static_batching")
    value = float(np.exp(zero.mean[told] + 0.3))
    after = model.condition(PerfTable([{"task_id": task, "method": names[told], "hardware_id": hw,
                                        "throughput_tok_s": value}], source="test")).predict(cells)
    y = (np.log(value) - s.y_mean) / s.y_std
    cross = cov[:, told] - member.noise ** 2 * (np.arange(len(names)) == told)  # the told value's own noise is its own
    np.testing.assert_allclose((after.mean - s.y_mean) / s.y_std, mu + cross / cov[told, told] * (y - mu[told]),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose((after.std / s.y_std) ** 2, np.diag(cov) - cross ** 2 / cov[told, told], rtol=1e-6)
    again = Surrogate.load(model.save(tmp_path / "slopes.metasel"))
    np.testing.assert_array_equal(again.predict(cells).std, zero.std)


def test_same_computation_methods_share_one_value(tmp_path):
    """At batch size 1 static batching is plain generation, and with no shared prefix a
    prefix cache caches nothing: those methods are noisy measurements of their plain
    method's value. Zero-shot they are predicted alike; a told value of one is an
    observation of the shared value (hand Gaussian conditioning), and two told twins are
    two independent noisy observations of it. Elsewhere (batch > 1) they stay apart."""
    import json
    from pathlib import Path

    from metasel.store import read_export
    from metasel.table import PerfTable

    data = read_export(Path(__file__).resolve().parents[1] / "datasets" / "cpu-v1")
    specs = {t: json.loads(s)["workload"] for t, s in zip(data.tasks["task_id"], data.tasks["spec"])}
    b1 = sorted(t for t, w in specs.items() if w["batch_size"] == 1 and w["shared_prefix"] == 0)[:4]
    b4 = sorted(t for t, w in specs.items() if w["batch_size"] > 1)[:4]
    small = data.filter(tasks=b1 + b4)
    model = Surrogate("throughput_tok_s", config=replace_fast(steps=5, pair_slopes=False), embed="none").fit(
        small, key=0, calibrate=False)
    s = model._state
    member = s.members[0]
    hw = sorted(s.hardware)[0]
    twins = ["int8_dynamic", "int8_dynamic+static_batching", "int8_dynamic+prefix_cache"]
    zero = model.forget([b1[0]]).predict([(b1[0], m, hw) for m in twins])
    assert np.ptp(zero.mean) == 0 and np.ptp(zero.std) == 0
    apart = model.forget([b4[0]]).predict([(b4[0], m, hw) for m in twins[:2]])
    assert apart.mean[0] != apart.mean[1]
    # hand conditioning: the shared value has prior variance v = psi' diag(prior) psi; each
    # measurement adds independent noise n
    fresh = model.forget([b1[0]])
    names = sorted(s.methods)
    hm = fresh._method_outputs(member, names, fresh._method_inputs(names, s.methods))
    psi = np.concatenate([[1.0], hm[names.index("int8_dynamic"), 1 + model.config.k:]])
    prior = np.concatenate([[member.s_bias ** 2], np.ones(model.config.rank)])
    v, n = float(psi ** 2 @ prior), member.noise ** 2
    mu = (zero.mean[0] - s.y_mean) / s.y_std
    np.testing.assert_allclose((zero.std[0] / s.y_std) ** 2, v + n, rtol=1e-6)
    y1, y2 = mu + 0.4, mu - 0.1
    told = [{"task_id": b1[0], "method": m, "hardware_id": hw, "throughput_tok_s": float(np.exp(y * s.y_std + s.y_mean))}
            for m, y in zip(twins[1:], (y1, y2))]
    one = fresh.condition(PerfTable(told[:1], source="test")).predict([(b1[0], twins[0], hw)])
    np.testing.assert_allclose((one.mean[0] - s.y_mean) / s.y_std, mu + v / (v + n) * (y1 - mu), rtol=1e-6)
    np.testing.assert_allclose((one.std[0] / s.y_std) ** 2, v - v ** 2 / (v + n) + n, rtol=1e-6)
    two = fresh.condition(PerfTable(told, source="test")).predict([(b1[0], twins[0], hw)])
    post_var = 1.0 / (1.0 / v + 2.0 / n)
    np.testing.assert_allclose((two.mean[0] - s.y_mean) / s.y_std, mu + post_var * ((y1 - mu) + (y2 - mu)) / n, rtol=1e-6)
    np.testing.assert_allclose((two.std[0] / s.y_std) ** 2, post_var + n, rtol=1e-6)
    # a model without it (or from before it: format 3) keeps every method apart
    off = Surrogate("throughput_tok_s", config=replace_fast(steps=5, pair_slopes=False, same_computation=False),
                    embed="none").fit(small, key=0, calibrate=False)
    assert np.ptp(off.forget([b1[0]]).predict([(b1[0], m, hw) for m in twins]).mean) > 0
    again = Surrogate.load(model.save(tmp_path / "same.metasel"))
    np.testing.assert_array_equal(again.forget([b1[0]]).predict([(b1[0], m, hw) for m in twins]).mean, zero.mean)


def test_same_computation_groups_only_idle_techniques():
    from metasel.meta.features import same_computation

    def task(batch, shared, reqs=None):
        return {"spec": {"workload": {"batch_size": batch, "num_requests": reqs or batch, "shared_prefix": shared,
                                      "prompt_len": 32, "output_len": 8}}}

    def m(**t):
        return {"techniques": {"sdpa": 1.0, "static_batching": 0.0, "prefix_cache": 0.0, "int8_dynamic": 0.0, **t}}

    methods = {"sdpa": m(), "static_batching": m(static_batching=1.0), "prefix_cache": m(prefix_cache=1.0),
               "int8": m(int8_dynamic=1.0), "int8+sb": m(int8_dynamic=1.0, static_batching=1.0)}
    one = same_computation(task(1, 0.0), methods)
    assert one == {"sdpa": "sdpa", "static_batching": "sdpa", "prefix_cache": "sdpa", "int8": "int8", "int8+sb": "int8"}
    # batched with a shared prefix: every technique does something
    assert same_computation(task(4, 0.5), methods) == {k: k for k in methods}
    # batched, no shared prefix: only the prefix cache idles; one request: static batching idles too
    assert same_computation(task(4, 0.0), methods)["prefix_cache"] == "sdpa"
    assert same_computation(task(4, 0.0), methods)["static_batching"] == "static_batching"
    assert same_computation(task(4, 0.5, reqs=1), methods)["static_batching"] == "sdpa"
    # without a plain member, idle twins still share the first name
    assert same_computation(task(1, 0.0), {k: methods[k] for k in ("static_batching", "prefix_cache")}) == \
        {"static_batching": "prefix_cache", "prefix_cache": "prefix_cache"}
    # technique vectors that do not tell two plain methods apart group nothing; nor do foreign ones
    assert same_computation(task(1, 0.0), {**methods, "eager": m()})["static_batching"] == "static_batching"
    foreign = {"vllm": {"techniques": {"k0": 1}}, "tgi": {"techniques": {"k0": 1}}}
    assert same_computation(task(1, 0.0), foreign) == {"vllm": "vllm", "tgi": "tgi"}
    assert same_computation({"spec": {"kind": "synthetic"}}, methods) == {k: k for k in methods}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="memory mappings are counted from /proc")
def test_compiled_programs_are_dropped_before_mappings_run_out(monkeypatch, synthetic):
    """Hundreds of fits in one process (an evaluation) must not exhaust the process's memory
    mappings: past MAX_MAPPINGS, a fit drops jax's compiled programs; below it, it keeps them."""
    import jax

    from metasel.surrogate import _train

    table, _ = synthetic
    calls = []
    monkeypatch.setattr(jax, "clear_caches", lambda: calls.append(1))
    cfg = TrainConfig(steps=3, members=1)
    monkeypatch.setattr(_train, "MAX_MAPPINGS", 10**9)
    Surrogate("value", config=cfg, embed="none").fit(table, key=0, calibrate=False)
    assert calls == []
    monkeypatch.setattr(_train, "MAX_MAPPINGS", 0)
    Surrogate("value", config=cfg, embed="none").fit(table, key=0, calibrate=False)
    assert calls == [1]
