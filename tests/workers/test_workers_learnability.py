"""The shapes set separates networks: a bigger network beats a tiny one after a short schedule.

This is what makes shapes usable as the default search dataset. Kept honest but fast (about
25 s on one CPU thread): same data, schedule and seed, only the width differs (4 vs 16 channels
in the first layer, 1.8k vs 24k parameters). Measured here: 0.43-0.47 vs 0.60 validation
accuracy (chance 0.10); the assertion leaves a wide margin.
"""

from __future__ import annotations

from nas.workers.engine import Schedule, train


def test_bigger_network_beats_tiny_one(shapes, tiny_net):
    data = shapes.take(6000, 1000)
    sch = Schedule(epochs=3, batch_size=32, lr=0.05, warmup_epochs=0.2, eval_batch_size=500, seed=0)
    small = train(tiny_net(seed=0, width=4), data, sch)
    big = train(tiny_net(seed=0, width=16), data, sch)
    assert small.status == big.status == "ok"
    assert small.params < big.params / 10
    assert big.val_acc > 0.45, big.history
    assert big.val_acc > small.val_acc + 0.07, (small.val_acc, big.val_acc)
