"""AudioRingBuffer: order, drop-oldest overflow accounting, thread safety."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from sdk.errors import PreprocessError
from sdk.preprocess import AudioRingBuffer


def test_fifo_and_wraparound():
    rb = AudioRingBuffer(8)
    assert rb.write(np.arange(5)) == 0
    assert rb.read(3).tolist() == [0, 1, 2]
    assert rb.write(np.arange(5, 11)) == 0          # wraps
    assert rb.available == 8
    assert rb.peek_last(3).tolist() == [8, 9, 10]
    assert rb.read(100).tolist() == [3, 4, 5, 6, 7, 8, 9, 10]
    assert rb.available == 0 and rb.read(4).shape == (0,)


def test_overflow_drops_oldest_and_counts():
    rb = AudioRingBuffer(10)
    rb.write(np.arange(8))
    assert rb.write(np.arange(8, 13)) == 3
    assert (rb.overflows, rb.dropped_samples) == (1, 3)
    assert rb.read_available().tolist() == list(range(3, 13))
    assert rb.write(np.arange(25)) == 15                   # bigger than the buffer
    assert rb.read_available().tolist() == list(range(15, 25))
    assert (rb.overflows, rb.dropped_samples, rb.total_written) == (2, 18, 38)
    rb.write(np.ones(4)); rb.clear()
    assert rb.available == 0 and rb.dropped_samples == 18


def test_multichannel_and_shape_errors():
    rb = AudioRingBuffer(6, channels=2)
    rb.write(np.array([[1, -1], [2, -2]]))
    assert rb.read(5).tolist() == [[1, -1], [2, -2]]
    with pytest.raises(PreprocessError, match=r"\(n, 2\)"):
        rb.write(np.zeros(4))


def test_read_exact_waits_for_data():
    rb = AudioRingBuffer(100)
    assert rb.read_exact(10, timeout=0.01) is None
    threading.Timer(0.05, rb.write, args=(np.arange(12.0),)).start()
    got = rb.read_exact(10, timeout=5)
    assert got.tolist() == list(range(10)) and rb.available == 2


def test_thread_safety_producer_consumer():
    """A producer writes a counting sequence; every sample read must continue it, and
    read + dropped must account for every sample written."""
    rb = AudioRingBuffer(4096)
    n_blocks, block = 400, 256
    done = threading.Event()

    def produce():
        for i in range(n_blocks):
            rb.write(np.arange(i * block, (i + 1) * block, dtype=np.float32))
        done.set()

    got = []
    th = threading.Thread(target=produce)
    th.start()
    while not (done.is_set() and rb.available == 0):
        got.append(rb.read(int(np.random.default_rng(len(got)).integers(1, 700))))
    th.join()
    seq = np.concatenate(got)
    total = n_blocks * block
    assert len(seq) + rb.dropped_samples == total == rb.total_written
    assert (np.diff(seq) > 0).all()                     # strictly increasing: no reorder/dup
    # gaps are exactly the dropped samples
    assert int((np.diff(seq) - 1).sum()) + int(seq[0]) + (total - 1 - int(seq[-1])) == rb.dropped_samples
