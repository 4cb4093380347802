"""Bounded FIFOs: first in first out per queue, every queue at once, back-pressure by `space`."""
import numpy as np
import pytest

from simulator.fabric.queues import Queues, Wavelets


def _w(values):
    v = np.asarray(values, dtype=np.float32)
    return Wavelets(np.zeros(v.shape, np.int16), np.ones(v.shape, np.int8),
                    np.arange(v.size, dtype=np.int32).reshape(v.shape),
                    np.stack([v, -v], axis=-1))


def test_each_queue_is_first_in_first_out_and_wraps_around():
    q = Queues(np, (2,), depth=3, values=2)
    pushed = [[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]]
    for row in pushed:
        q.push(np.array([True, True]), _w(row))
    assert not q.space().any() and q.count.tolist() == [3, 3]
    out = []
    for step in range(5):                 # pop one, push one: the ring wraps past its end
        head = q.peek()
        out.append(head.v[:, 0].tolist())
        assert head.v[:, 1].tolist() == [-a for a in out[-1]]
        q.pop(np.array([True, True]))
        q.push(np.array([True, True]), _w([4.0 + step, 40.0 + step]))
    assert out == pushed + [[4.0, 40.0], [5.0, 41.0]]


def test_a_masked_push_or_pop_touches_only_its_queues():
    q = Queues(np, (3,), depth=2, values=2)
    q.push(np.array([True, False, True]), _w([1.0, 2.0, 3.0]))
    assert q.count.tolist() == [1, 0, 1]
    q.pop(np.array([False, False, True]))
    assert q.count.tolist() == [1, 0, 0]
    assert q.peek().v[0, 0] == 1.0


def test_a_queue_needs_a_slot():
    with pytest.raises(ValueError, match="at least one wavelet"):
        Queues(np, (1,), depth=0, values=2)
