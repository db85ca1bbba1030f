"""Pair terms against hand computations."""

import numpy as np
import pytest


def test_pair_terms_match_hand_computation():
    from metasel.domain.pairs import PAIR_TERMS, context_quantities, method_quantities, pair_terms

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
