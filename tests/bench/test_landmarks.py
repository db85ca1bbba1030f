"""Landmarks: replayed speculative decoding, how they are stored, and how the surrogate uses them."""

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from metasel import InputDataError, Store
from metasel.bench.landmarks import draft_passes, lookup_passes
from metasel.cli import main
from metasel.data.table import PerfTable

TINY = {"arch": "llama", "dtype": "float32", "experts": 1, "experts_per_token": 1, "heads": 2, "hidden": 32,
        "intermediate": 64, "kv_heads": 2, "layers": 2, "vocab": 64}
WORK = {"batch_size": 1, "num_requests": 2, "output_len": 24, "prompt_len": 12, "shared_prefix": 0.0}


def test_lookup_passes_by_hand():
    # nothing repeats: one pass per token
    assert lookup_passes([1, 2, 3, 4, 5, 6], 2) == 4
    # context [1 2 3 1 2]: the last 2-gram (1 2) occurred at 0, so the candidates are 3 1 2;
    # the target agrees with all three and adds its own 3: one pass for four tokens
    assert lookup_passes([1, 2, 3, 1, 2, 3, 1, 2, 3], 5) == 1
    # candidates 3 1 2, the target says 3 9: one accepted + its own 9; then neither (3 9) nor 9
    # occurred before, so the last token comes alone: two passes
    assert lookup_passes([1, 2, 3, 1, 2, 3, 9, 4], 5) == 2
    # a 1-gram match when no 2-gram matches: context [7 8 9 5 7], last token 7 at 0 -> 8 9 5
    assert lookup_passes([7, 8, 9, 5, 7, 8, 9, 5], 5) == 1
    # candidates stop at the end of the context and at 8 tokens: 1 2 1 2 | 1 2 (2 + 1) | 2 1 2 1 (4 + 1)
    # | 8 + 1 | 8 + 1 | 8 + 1 | the last one
    assert lookup_passes([1, 2] * 20, 4) == 6


def test_draft_passes_by_hand():
    seq = list(range(10))
    agree = [True] * 10
    sure = [True] * 10
    assert draft_passes(seq, 2, agree, sure, tokens=3) == 2  # 8 tokens: 3 accepted + 1, twice
    assert draft_passes(seq, 2, agree, [False] * 10, tokens=3) == 4  # one draft token a pass: 2 tokens each
    no = [False] * 10
    assert draft_passes(seq, 2, no, sure, tokens=3) == 8  # nothing accepted: one token a pass
    # agrees at 2, 3, not 4: first pass gives 2 accepted + the target's 4 -> next pass from 5
    agree = [True, True, True, True, False, True, True, True, True, True]
    assert draft_passes(seq, 2, agree, sure, tokens=20) == 2


def test_lookup_replay_counts_the_forward_passes_of_transformers():
    """The replay is exact: prompt lookup in transformers runs as many forward passes."""
    import torch

    from metasel.bench.serve import build_model, make_prompts
    from metasel.bench.landmarks import measure_landmarks

    prompts, _ = make_prompts(WORK, TINY["vocab"], 3)
    max_pos = max(map(len, prompts)) + WORK["output_len"] + 16
    lm = build_model(TINY, attention="sdpa", max_positions=max_pos, seed=3, device="cpu")
    calls = []
    lm.register_forward_pre_hook(lambda module, args: calls.append(1))
    tokens = passes = 0
    with torch.inference_mode():
        for p in prompts:
            ids = torch.tensor([p])
            kw = dict(attention_mask=torch.ones_like(ids), max_new_tokens=24, min_new_tokens=24, do_sample=False,
                      pad_token_id=0)
            greedy = lm.generate(input_ids=ids, **kw)[0].tolist()
            calls.clear()
            looked = lm.generate(input_ids=ids, prompt_lookup_num_tokens=8, **kw)[0].tolist()
            assert looked == greedy
            assert len(calls) == lookup_passes(greedy, len(p))
            tokens, passes = tokens + 24, passes + len(calls)
    assert passes < tokens  # the tiny model repeats itself: lookup pays here
    got = measure_landmarks({"model": TINY, "workload": WORK}, seed=3)
    assert got["lookup_tokens_per_pass"] == pytest.approx(tokens / passes)
    assert got["draft_tokens_per_pass"] >= 1.0
    assert measure_landmarks({"model": TINY, "workload": WORK}, seed=3) == {**got, "landmark_s": pytest.approx(
        got["landmark_s"], abs=10)}  # deterministic


def _task(features=None):
    spec = {"model": TINY, "workload": WORK}
    from metasel.spec import task_id_of

    return {"task_id": task_id_of(spec), "name": "tiny", "spec": spec, "features": features or {}}


def _table(task, value=10.0):
    obs = [{"task_id": task["task_id"], "method": "sdpa", "hardware_id": "hw-a", "throughput_tok_s": value,
            "status": "ok"}]
    hw = [{"hardware_id": "hw-a", "name": "a", "specs": {"device": "cpu", "threads": 1}}]
    return PerfTable(obs, [task], [{"method": "sdpa", "techniques": {"sdpa": 1}}], hw)


def test_store_keeps_and_merges_task_features(tmp_path):
    path = tmp_path / "s.sqlite"
    task = _task()
    with Store(path) as s:
        s.append(_table(task))
        s.set_task_features(task["task_id"], {"lookup_tokens_per_pass": 1.5, "draft_tokens_per_pass": 1.0})
        s.set_task_features(task["task_id"], {"lookup_tokens_per_pass": 1.5})  # the same value: nothing changes
        # the collector appends the task again without features: the landmarks stay
        s.append(_table(task, value=11.0).with_observations(
            _table(task, value=11.0).observations.assign(hardware_id="hw-a", obs_id="o-second")))
        feats = json.loads(s.load().tasks.set_index("task_id").loc[task["task_id"], "features"])
        assert feats == {"lookup_tokens_per_pass": 1.5, "draft_tokens_per_pass": 1.0}
        with pytest.raises(InputDataError, match="already has other values.*lookup_tokens_per_pass"):
            s.set_task_features(task["task_id"], {"lookup_tokens_per_pass": 2.0})
        with pytest.raises(InputDataError, match="no task"):
            s.set_task_features("t-missing", {"lookup_tokens_per_pass": 2.0})
        s.set_task_features(task["task_id"], {"lookup_tokens_per_pass": 2.0}, replace=True)
        feats = json.loads(s.load().tasks.set_index("task_id").loc[task["task_id"], "features"])
        assert feats == {"lookup_tokens_per_pass": 2.0, "draft_tokens_per_pass": 1.0}
        # a table that says another value of a stored feature is refused whole
        with pytest.raises(InputDataError, match="another descriptor"):
            s.append(_table(_task({"lookup_tokens_per_pass": 3.0})))
        assert s.count() == 2


def test_landmark_pair_terms_and_missing_landmarks():
    from metasel.domain.pairs import PAIR_TERMS
    from metasel.surrogate.encoding import FeatureEncoder

    col = {n: i for i, n in enumerate(PAIR_TERMS)}
    hw = {"hardware_id": "hw-a", "specs": {"device": "cpu", "threads": 1}}
    t1, t2 = _task({"lookup_tokens_per_pass": 2.0, "draft_tokens_per_pass": 1.0}), _task({"lookup_tokens_per_pass": 4.0,
                                                                                          "draft_tokens_per_pass": 1.5})
    t2 = {**t2, "task_id": "t-2"}
    bare = {**_task(), "task_id": "t-3"}
    methods = [{"method": "prompt_lookup", "techniques": {"prompt_lookup": 1, "weight_bits": 32}},
               {"method": "assisted", "techniques": {"assisted": 1, "weight_bits": 32}},
               {"method": "sdpa", "techniques": {"sdpa": 1, "weight_bits": 32}}]
    enc = FeatureEncoder(embed_kind="hash", embed_dims=0).fit([(t1, hw), (t2, hw)], methods)
    raw = enc._pair_raw([(t1, hw), (t2, hw), (bare, hw)], methods)
    lk, dr = col["x.lookup_landmark"], col["x.draft_landmark"]
    assert raw[0, 0, lk] == pytest.approx(math.log(2.0)) and raw[1, 0, lk] == pytest.approx(math.log(4.0))
    assert raw[1, 1, dr] == pytest.approx(math.log(1.5)) and raw[1, 0, dr] == 0.0 and raw[1, 1, lk] == 0.0
    assert (raw[:, 2, [lk, dr]] == 0).all()  # a method that does not speculate
    # a task without landmarks gets the training tasks' mean log
    assert raw[2, 0, lk] == pytest.approx(math.log(8.0) / 2) and raw[2, 1, dr] == pytest.approx(math.log(1.5) / 2)
    # both terms vary on the training pairs, so both are used, and they survive a save
    assert {lk, dr} <= set(enc.pair_columns.tolist())
    meta, arrays = enc.state()
    back = FeatureEncoder.from_state(json.loads(json.dumps(meta)), arrays)
    np.testing.assert_allclose(back.pairs([(bare, hw)], methods), enc.pairs([(bare, hw)], methods))
    # an encoder written with other pair terms (another metasel) is refused, not padded
    with pytest.raises(ValueError, match="pair terms differ"):
        FeatureEncoder.from_state({**meta, "pair_terms": list(PAIR_TERMS[:9])}, arrays)
    with pytest.raises(ValueError, match="pair terms differ"):
        FeatureEncoder.from_state({**meta, "pair_terms": ["x.other"] + list(PAIR_TERMS[1:])}, arrays)


def test_landmarks_cli_fills_the_store_once(tmp_path):
    path = tmp_path / "s.sqlite"
    task = _task()
    foreign = {"task_id": "t-foreign", "name": "foreign", "spec": {"kind": "generic", "name": "x"}, "features": {}}
    with Store(path) as s:
        s.append(_table(task))
        s.append(_table(foreign))
    r = CliRunner().invoke(main, ["--store", str(path), "landmarks"])
    assert r.exit_code == 0, (r.output, r.exception)
    assert "landmarks: 1 task(s) measured" in r.output and "tiny: prompt lookup" in r.output
    with Store(path) as s:
        feats = dict(zip(s.load().tasks["task_id"], s.load().tasks["features"]))
    lm = json.loads(feats[task["task_id"]])
    assert lm["lookup_tokens_per_pass"] >= 1.0 and lm["draft_tokens_per_pass"] >= 1.0
    assert json.loads(feats["t-foreign"]) == {}  # the collector cannot build it: skipped
    r = CliRunner().invoke(main, ["--store", str(path), "landmarks"])
    assert "landmarks: 0 task(s) measured" in r.output
    r = CliRunner().invoke(main, ["--store", str(path), "landmarks", "--force"])
    assert "landmarks: 1 task(s) measured" in r.output
    with Store(path) as s:
        assert json.loads(dict(zip(s.load().tasks["task_id"], s.load().tasks["features"]))[task["task_id"]]) == lm


def test_suggest_takes_stored_landmarks_else_measures_cheap_ones(tmp_path):
    from metasel.app.suggest import with_landmarks

    said = []
    stored = _task({"lookup_tokens_per_pass": 1.25, "draft_tokens_per_pass": 1.0})
    table = _table(stored)
    fresh = _task()
    got = with_landmarks(fresh, table, measure=True, say=said.append)
    assert got["features"] == stored["features"] and not said  # the store's, nothing measured
    other = {**fresh, "task_id": "t-new"}
    assert with_landmarks(other, table, measure=False, say=said.append) == other and "none" in said[-1]
    with Store(tmp_path / "s.sqlite") as store:
        store.append(table)
        got = with_landmarks(other, table, measure=True, say=said.append, store=store)
        assert got["features"]["lookup_tokens_per_pass"] >= 1.0 and "measured in" in said[-1]
        assert "stored with the task" in said[-1]
        # the next call reads them from the store, measuring nothing
        again = store.load()
        n = len(said)
        assert with_landmarks(other, again, measure=True, say=said.append) == got and len(said) == n
        assert store.count() == 1  # a task descriptor, no observation
    big = {"task_id": "t-big", "name": "big", "features": {},
           "spec": {"model": {**TINY, "layers": 32, "hidden": 4096, "heads": 32, "kv_heads": 32,
                              "intermediate": 11008, "vocab": 32000},
                    "workload": {**WORK, "prompt_len": 512, "output_len": 512, "num_requests": 16}}}
    assert with_landmarks(big, table, measure=True, say=said.append) == big and "too long here" in said[-1]
