"""Which techniques idle on a workload, and which methods therefore run the same computation."""


def test_same_computation_groups_only_idle_techniques():
    from metasel.domain.techniques import same_computation

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
