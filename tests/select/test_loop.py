"""The one active loop against the replay backend (a real Backend over recorded observations)."""

import math

import pytest

from metasel.data.table import PerfTable
from metasel.errors import InputDataError
from metasel.evaluation.replay import ReplayBackend
from metasel.select import Backend, Selector, StopRule, run
from metasel.testing.conformance import check_backend
from metasel.testing.mock import MockSurrogate

ROWS = [("a", 10.0, "ok"), ("b", None, "oom"), ("c", 14.0, "ok"), ("d", 9.0, "ok")]


@pytest.fixture
def table():
    rows = [{"task_id": "t", "method": m, "hardware_id": "h", "throughput_tok_s": v, "status": s} for m, v, s in ROWS]
    return PerfTable(rows, source="test")


def test_replay_backend_conformance(table):
    check_backend(ReplayBackend(table, "throughput_tok_s"), "t", "h", ok_method="c", metric="throughput_tok_s",
                  failing_method="b")
    with pytest.raises(InputDataError, match="no recorded observation of task 't', method 'zzz'"):
        ReplayBackend(table, "throughput_tok_s").measure("t", "zzz", "h")


def test_loop_tells_every_measurement_and_stops_when_nothing_is_left(table):
    # predicted order b > a > c > d; b fails, so the loop learns c is best only by measuring it
    mock = MockSurrogate({m: math.log(v) for m, v in (("a", 12), ("b", 20), ("c", 11), ("d", 5))},
                         {m: 0.5 for m in "abcd"})
    sel = Selector(mock, "t", "h", rule=StopRule(min_gain=0.0))
    asked, told = [], []
    result = run(sel, ReplayBackend(table, "throughput_tok_s"), on_ask=lambda a, s: asked.append(a.method),
                 on_result=lambda step, s: told.append((step.ask.method, step.measurement.status)))
    assert result.order == asked == ["b", "a", "c", "d"]
    assert told == [("b", "oom"), ("a", "ok"), ("c", "ok"), ("d", "ok")]
    assert sel.state.failed == {"b": "oom"} and sel.state.measured == {"a": 10.0, "c": 14.0, "d": 9.0}
    assert result.best.method == "c" and result.best.measured and "every candidate" in result.stop_reason


def test_loop_respects_the_budget(table):
    mock = MockSurrogate({m: 1.0 for m in "acd"}, {m: 0.5 for m in "acd"})
    sel = Selector(mock, "t", "h", rule=StopRule(min_gain=0.0, max_benchmarks=2))
    result = run(sel, ReplayBackend(table, "throughput_tok_s"))
    assert len(result.steps) == 2 and "budget of 2 benchmarks" in result.stop_reason
    assert isinstance(ReplayBackend(table, "throughput_tok_s"), Backend)
