"""The per-block latency table: parts keyed as the network is built, timed once, summed with a fitted
overhead. Checked by relations and by the predictor's error on the test's own networks, not absolute times."""

from __future__ import annotations

import statistics

import pytest

from nas.search_spaces import build_model, parse_config
from nas.workers.deployment_latency import measure_deployed
from nas.workers.latency_table import LatencyTable, parts, table_path


def _config(depth: int, width: int = 32):
    return parse_config({"resolution": 32, "classes": 10, "stem": {"type": "cifar", "width": 16},
                         "stages": [{"depth": 1, "width": width, "group_width": 8, "stride": 1},
                                    {"depth": depth, "width": 2 * width, "group_width": 16, "stride": 2}]})


def test_parts_follow_the_built_network():
    cfg = _config(depth=4)
    keys = parts(cfg)
    # stem, stage 1's block, stage 2's first block and its repeated block (3 more), head
    assert [k.split(",")[0] for k, _ in keys] == ['["stem"', '["block"', '["block"', '["block"', '["head"']
    assert [n for _, n in keys] == [1, 1, 1, 3, 1]
    model = build_model(cfg)
    blocks = [m for name in model.stage_names for m in getattr(model, name)]
    assert sum(n for k, n in keys if k.startswith('["block"')) == len(blocks)
    assert parts(_config(depth=2))[:3] == keys[:3]  # the same blocks: the same keys, whatever the depth


def test_the_table_predicts_its_own_networks_and_a_deeper_one_is_slower(tmp_path):
    table = LatencyTable.open(tmp_path, "torch")
    configs = [_config(d, w) for d in (1, 2, 3) for w in (16, 32)]
    for cfg in configs:
        table.fill(cfg)
    from nas.workers.deployment_latency import device_name

    assert table.path == table_path(tmp_path, "torch", device_name("cpu"), 1) and table.path.exists()
    assert table.path.name.startswith("latency-torch-") and table.path.name.endswith("-1t.json")
    assert not table.missing(_config(depth=6))  # deeper: the same blocks, nothing new to time
    measured = [(cfg, measure_deployed(cfg, batch_sizes=(1,), reference=False).at(1).median_ms) for cfg in configs]
    table.fit(measured)
    errors = [abs(table.predict(cfg) - ms) / ms for cfg, ms in measured]
    # a loose bound: the machine running these tests is shared and noisy (the benchmark reports the real figures)
    assert statistics.median(errors) < 0.5, errors
    assert table.predict(_config(depth=6)) > table.predict(_config(depth=3)) > table.predict(_config(depth=1))
    # kept in the file named by runtime, device and threads: a second table there knows every part
    again = LatencyTable.open(tmp_path, "torch")
    assert again.entries == table.entries and again.overhead_ms == pytest.approx(table.overhead_ms)
    assert again.fill(_config(depth=6)) == 0


@pytest.mark.parametrize("text", ["", "{not json", "[]", '{"entries": 3}', '{"entries": {"k": "fast"}}'])
def test_a_cache_that_does_not_read_is_timed_again_and_replaced(tmp_path, text):
    path = LatencyTable.open(tmp_path, "torch").path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    table = LatencyTable.open(tmp_path, "torch")
    assert table.entries == {} and table.overhead_ms == 0.0
    assert table.fill(_config(depth=1)) == len(parts(_config(depth=1)))
    assert LatencyTable.open(tmp_path, "torch").entries == table.entries  # the file is whole again
