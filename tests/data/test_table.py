import math

import pandas as pd
import pytest

from metasel import InputDataError, PerfTable


def obs(task="a", method="m1", hw="h", **kw):
    return {"task_id": task, "method": method, "hardware_id": hw, **kw}


def test_views_coverage_and_best():
    t = PerfTable([
        obs("a", "m1", throughput_tok_s=10.0), obs("a", "m2", throughput_tok_s=12.0),
        obs("a", "m2", throughput_tok_s=14.0, timestamp="2"),  # a repeat: median of 12 and 14
        obs("b", "m1", throughput_tok_s=5.0), obs("b", "m2", status="oom", message="CUDA OOM"),
        obs("a", "m1", hw="g", throughput_tok_s=100.0),
    ])
    assert len(t) == 6
    cov = t.coverage()
    assert (cov["tasks"], cov["methods"], cov["hardware"], cov["cube"]) == (2, 2, 2, 8)
    assert cov["cells_observed"] == 5 and cov["cells_ok"] == 4
    m = t.matrix("throughput_tok_s", "h")
    assert m.loc["a", "m2"] == 13.0 and m.loc["b", "m1"] == 5.0 and math.isnan(m.loc["b", "m2"])
    best = t.best_methods("throughput_tok_s")
    assert best[["task_id", "hardware_id", "method"]].values.tolist() == [["a", "h", "m2"]]
    assert t.status_counts()["oom"] == 1
    long = t.long("throughput_tok_s")
    assert set(long.columns) == {"task_id", "method", "hardware_id", "value", "num_obs", "weight"}
    assert long.loc[(long.task_id == "a") & (long.method == "m2") & (long.hardware_id == "h"), "num_obs"].item() == 2


def test_min_direction_and_generic_value():
    t = PerfTable([obs("a", "m1", value=3.0), obs("a", "m2", value=1.0)], directions={"value": "min"})
    assert t.best_methods("value")["method"].tolist() == ["m2"]
    with pytest.raises(InputDataError, match="direction of 'value' is not recorded"):
        PerfTable([obs(value=1.0)]).best_methods("value")


@pytest.mark.parametrize("row, match", [
    (obs(status="crashed", throughput_tok_s=1.0), "status"),
    (obs(throughput_tok_s=-1.0), "non-negative"),
    (obs(throughput_tok_s=float("inf")), "finite"),
    (obs(), "at least one metric"),
    ({"task_id": "a", "method": "m", "throughput_tok_s": 1.0}, "missing column 'hardware_id'"),
    (obs(task="", throughput_tok_s=1.0), "non-empty id"),
    (obs(throughput_tok_s="fast"), "expected a number"),
    (obs(throughput_tok_s=1.0, repeats=0), "repeats"),
    (obs(throughput_tok_s=1.0, bogus=1), "unknown column 'bogus'"),
])
def test_invalid_observations(row, match):
    with pytest.raises(InputDataError, match=match):
        PerfTable([row])


def test_failed_rows_may_carry_values():
    t = PerfTable([obs(status="timeout", value=3600.0)], directions={"value": "min"})
    assert t.observations["value"].item() == 3600.0


def test_conflicting_descriptors_rejected():
    with pytest.raises(InputDataError, match="two different descriptors"):
        PerfTable([obs(throughput_tok_s=1.0)], tasks=[{"task_id": "a", "spec": {"x": 1}}, {"task_id": "a", "spec": {"x": 2}}])
    with pytest.raises(InputDataError, match="two different descriptors"):
        PerfTable([obs(throughput_tok_s=1.0)], methods=[{"method": "m1", "techniques": {"a": 1}},
                                                         {"method": "m1", "techniques": {"a": 0}}])


def test_input_untouched_and_ids_stable():
    frame = pd.DataFrame([obs(throughput_tok_s=1.0), obs("b", throughput_tok_s=2.0)])
    before = frame.copy()
    t1, t2 = PerfTable(frame), PerfTable(frame)
    pd.testing.assert_frame_equal(frame, before)
    assert t1.observations["obs_id"].tolist() == t2.observations["obs_id"].tolist()
    assert t1.observations["obs_id"].nunique() == 2


def test_concat_dedupes_and_prefers_real_descriptors():
    a = PerfTable([obs(throughput_tok_s=1.0)])
    b = PerfTable([obs(throughput_tok_s=1.0), obs("b", throughput_tok_s=2.0)],
                  tasks=[{"task_id": "a", "name": "A", "spec": {"k": 1}}])
    c = PerfTable.concat([a, b])
    assert len(c) == 2
    assert c.tasks.set_index("task_id").loc["a", "spec"] == '{"k":1}'


def test_filter_and_flags():
    t = PerfTable([obs(throughput_tok_s=1.0, flags="x"), obs("b", throughput_tok_s=2.0)])
    assert len(t.filter(exclude_flags=["x"])) == 1
    assert t.filter(tasks=["b"]).tasks["task_id"].tolist() == ["b"]


def test_one_measurement_table_is_the_constructors():
    """PerfTable.measurement (the active loop's tell) builds the very table the validating
    constructor builds from that row, and refuses what the constructor refuses."""
    import pandas as pd

    for metric, value in (("value", 2.5), ("throughput_tok_s", 31.0), ("value", 7.0)):
        slow = PerfTable([{"task_id": "tx", "method": "int8 x", "hardware_id": "hw1", metric: value}], source="tell")
        fast = PerfTable.measurement("tx", "int8 x", "hw1", metric, value, source="tell")
        for attr in ("observations", "tasks", "methods", "hardware"):
            pd.testing.assert_frame_equal(getattr(fast, attr), getattr(slow, attr))
        assert fast.content_hash() == slow.content_hash()
    with pytest.raises(InputDataError, match="finite non-negative"):
        PerfTable.measurement("t", "m", "h", "value", float("nan"))
    with pytest.raises(InputDataError, match="unknown metric"):
        PerfTable.measurement("t", "m", "h", "speed", 1.0)


def test_a_clean_measurement_supersedes_noisy_ones_and_noisy_only_cells_weigh_less():
    from metasel.data.table import NOISY_WEIGHT

    t = PerfTable([
        obs("a", "m1", throughput_tok_s=10.0), obs("a", "m1", throughput_tok_s=2.0, flags="noisy", timestamp="2"),
        obs("a", "m2", throughput_tok_s=3.0, flags="noisy"), obs("a", "m2", throughput_tok_s=5.0, flags="noisy", timestamp="2"),
        obs("b", "m1", throughput_tok_s=7.0),
    ])
    long = t.long("throughput_tok_s").set_index(["task_id", "method"])
    assert long.loc[("a", "m1"), "value"] == 10.0 and long.loc[("a", "m1"), "num_obs"] == 1
    assert long.loc[("a", "m1"), "weight"] == 1.0
    assert long.loc[("a", "m2"), "value"] == 4.0 and long.loc[("a", "m2"), "weight"] == NOISY_WEIGHT
    assert long.loc[("b", "m1"), "weight"] == 1.0
