import numpy as np

from streamae.config import WindowConfig
from streamae.windows import DUPLICATE, GAP, LATE, NAN_DROPPED, NAN_FILLED, OK, Windows


def push(w, slots, ts, values, first_row=0):
    slots = np.asarray(slots, dtype=np.int64)
    values = np.asarray(values, dtype=np.float32).reshape(len(slots), -1)
    rows = np.arange(first_row, first_row + len(slots), dtype=np.int64)
    w.ensure(int(slots.max()) + 1)
    return w.push(slots, np.asarray(ts, dtype=np.float64), values, rows)


def scored_rows(closed):
    out = []
    for c in closed:
        for k in range(len(c)):
            if c.scorable[k]:
                out += c.rows[k, len(c.rows[k]) - c.new[k]:].tolist()
    return out


def test_first_window_scores_all_then_each_hop_scores_newest():
    w = Windows(WindowConfig(size=4, hop=2), channels=1)
    status, closed = push(w, [0] * 9, np.arange(9), np.arange(9))
    assert (status == OK).all()
    assert [c.new.tolist() for c in closed] == [[4, 2, 2]]
    assert scored_rows(closed) == list(range(8))
    windows = closed[0].data[:, :, 0]
    assert windows.tolist() == [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7]]
    assert scored_rows(w.flush()) == [8]


def test_keys_are_independent_and_interleaved():
    w = Windows(WindowConfig(size=3, hop=1), channels=1)
    slots = [0, 1] * 4
    _, closed = push(w, slots, np.repeat(np.arange(4), 2), np.arange(8))
    got = [(int(c.slot[k]), c.data[k, :, 0].tolist()) for c in closed for k in range(len(c))]
    assert got == [(0, [0, 2, 4]), (1, [1, 3, 5]), (0, [2, 4, 6]), (1, [3, 5, 7])]


def test_late_duplicate_and_nan_policies_are_counted():
    w = Windows(WindowConfig(size=4, hop=1, nan_policy="ffill"), channels=2)
    values = [[1, 1], [2, np.nan], [3, 3], [4, 4], [5, 5]]
    status, _ = push(w, [0] * 5, [0, 1, 1, 0.5, 2], values)
    assert status.tolist() == [OK, NAN_FILLED, DUPLICATE, LATE, OK]
    assert w.last_val[0].tolist() == [5, 5]
    assert w.counts() == {"ok": 2, "nan_filled": 1, "gap": 0, "nan_dropped": 0, "late": 1,
                          "duplicate": 1}
    assert w.ring[0, 1].tolist() == [2, 1]  # nan replaced by the channel's previous value

    w = Windows(WindowConfig(size=4, hop=1, nan_policy="drop", duplicate_policy="keep"), 1)
    status, _ = push(w, [0] * 3, [0, 0, 1], [[1], [1], [np.inf]])
    assert status.tolist() == [OK, OK, NAN_DROPPED]


def test_gap_reset_closes_segment_and_rewarms():
    w = Windows(WindowConfig(size=3, hop=3, max_gap=10.0, gap_policy="reset"), channels=1)
    status, closed = push(w, [0] * 5, [0, 1, 2, 3, 100], np.arange(5))
    assert status.tolist() == [OK, OK, OK, OK, GAP]
    # the full first window closed at row 2; the gap closes row 3 (a partial hop)
    assert scored_rows(closed) == [0, 1, 2, 3]
    assert w.count[0] == 1
    tail = w.flush()
    assert not tail[0].scorable[0] and tail[0].new[0] == 1  # re-warming: unscorable


def test_split_batches_equal_one_batch():
    rng = np.random.default_rng(0)
    n, keys = 300, 3
    slots = rng.integers(0, keys, n)
    ts = np.arange(n, dtype=float)
    values = rng.normal(size=(n, 2))

    def run(splits):
        w = Windows(WindowConfig(size=8, hop=3), channels=2, out_capacity=5)
        got = []
        for part in np.split(np.arange(n), splits):
            _, closed = push(w, slots[part], ts[part], values[part], first_row=int(part[0]))
            got += [(c.slot[k], c.new[k], c.data[k].tobytes()) for c in closed for k in range(len(c))]
        return got

    assert run([]) == run([1, 57, 58, 200])


def test_state_roundtrip_and_growth():
    w = Windows(WindowConfig(size=4, hop=1), channels=1, capacity=1)
    push(w, [0, 5], [0, 0], [[1], [2]])
    assert w.capacity >= 6
    other = Windows(WindowConfig(size=4, hop=1), channels=1)
    other.load_state_dict(w.state_dict())
    assert other.ring[5, 0, 0] == 2 and other.count[5] == 1
