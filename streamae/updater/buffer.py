"""Replay buffer of normal windows for fine-tuning, bounded in memory.

Two parts: the newest ``recent`` windows (a ring), and a uniform reservoir sample of every
window that has left the ring, so a fine-tune also sees older regimes and does not forget
them. Each window keeps its novelty distance as its key had it when it was scored (it
does not depend on the model), so scores under any model version can include it. Windows that overlap an open alarm are not admitted: they wait in a small
quarantine ring until an operator confirms them as the new normal (:meth:`admit`) or
they are pushed out. Keys are kept, so a fine-tune can use one key's windows or all.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np


class _Ring:
    FIELDS = ("data", "keys", "ts", "novelty")

    def __init__(self, capacity: int, window: int, channels: int) -> None:
        self.data = np.zeros((capacity, window, channels), dtype=np.float32)
        self.keys = np.full(capacity, "", dtype=object)
        self.ts = np.zeros(capacity)
        self.novelty = np.full(capacity, np.nan)
        self.size = self.pos = 0

    @property
    def capacity(self) -> int:
        return len(self.data)

    def rows(self, idx: slice | np.ndarray) -> tuple[np.ndarray, ...]:
        """Copies of (data, keys, ts, novelty) at ``idx``."""
        return tuple(getattr(self, f)[idx].copy() for f in self.FIELDS)

    def push(self, *columns: np.ndarray) -> tuple[np.ndarray, ...]:
        """Append (data, keys, ts, novelty); returns what fell out, oldest first."""
        cap = self.capacity
        if cap == 0:
            return columns
        over = max(0, len(columns[0]) - cap)  # incoming windows that cannot fit at all
        parts = [tuple(c[:over] for c in columns)]
        columns = tuple(c[over:] for c in columns)
        n = len(columns[0])
        evict = max(0, self.size + n - cap)
        if evict:
            parts.insert(0, self.rows(self.ordered()[:evict]))
        slots = (self.pos + np.arange(n)) % cap
        for name, column in zip(self.FIELDS, columns):
            getattr(self, name)[slots] = column
        self.pos = int((self.pos + n) % cap)
        self.size = min(cap, self.size + n)
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(len(self.FIELDS)))

    def load(self, data: np.ndarray, keys: np.ndarray, ts: np.ndarray,
             novelty: np.ndarray | None) -> None:
        """Start again from saved rows (oldest first): the newest ``capacity`` of them
        (none for a ring of capacity 0); ``novelty`` None (older states): unknown."""
        cut = max(0, len(data) - self.capacity)
        n = len(data) - cut
        self.data[:n] = data[cut:]
        self.keys[:n] = np.asarray(keys[cut:]).astype(object)
        self.ts[:n] = ts[cut:]
        self.novelty[:n] = np.nan if novelty is None else novelty[cut:]
        self.size, self.pos = n, n % self.capacity if self.capacity else 0

    def ordered(self) -> slice | np.ndarray:
        """Indices oldest -> newest."""
        return (self.pos - self.size + np.arange(self.size)) % self.capacity


class ReplayBuffer:
    def __init__(self, window: int, channels: int, recent: int = 20_000,
                 reservoir: int = 20_000, quarantine: int = 5_000, seed: int = 0) -> None:
        self.recent = _Ring(recent, window, channels)
        self.quarantine = _Ring(quarantine, window, channels)
        self.reservoir = _Ring(reservoir, window, channels)
        self.seen = 0  # windows offered to the reservoir so far
        self.rng = np.random.default_rng(seed)

    def add(self, windows: np.ndarray, keys: np.ndarray, ts: np.ndarray,
            protected: np.ndarray | None = None, novelty: np.ndarray | None = None) -> None:
        """Offer scored windows (with their novelty distances, nan where none);
        ``protected`` ones (inside an alarm) go to quarantine."""
        keys = np.asarray(keys, dtype=object)
        ts = np.asarray(ts, dtype=np.float64)
        nov = np.full(len(windows), np.nan) if novelty is None else np.asarray(novelty, float)
        guard = np.zeros(len(windows), bool) if protected is None else np.asarray(protected)
        if guard.any():
            self.quarantine.push(windows[guard], keys[guard], ts[guard], nov[guard])
        ok = ~guard
        fell = self.recent.push(windows[ok], keys[ok], ts[ok], nov[ok])
        self._sample(*fell)

    def _sample(self, *columns: np.ndarray) -> None:
        """Algorithm R over the stream of windows leaving the recent ring."""
        res = self.reservoir
        if res.capacity == 0:
            return
        for i in range(len(columns[0])):
            self.seen += 1
            if res.size < res.capacity:
                slot = res.size
                res.size += 1
            else:
                slot = int(self.rng.integers(0, self.seen))
                if slot >= res.capacity:
                    continue
            for name, column in zip(_Ring.FIELDS, columns):
                getattr(res, name)[slot] = column[i]

    def admit(self, key: str | None = None) -> int:
        """Operator-confirmed new normal: move quarantined windows (of ``key``, or all)
        into the buffer. Returns how many."""
        taken = self.discard(key)
        if len(taken[0]):
            self._sample(*self.recent.push(*taken))
        return len(taken[0])

    def discard(self, key: str | None = None) -> tuple[np.ndarray, ...]:
        """Take quarantined windows (of ``key``, or all) out of the quarantine; returns
        them with their keys, times and novelty distances, oldest first."""
        q = self.quarantine
        idx = q.ordered()
        chosen = idx if key is None else idx[q.keys[idx] == key]
        taken = q.rows(chosen)
        if len(chosen):
            rest = q.rows(np.setdiff1d(idx, chosen, assume_unique=True))
            q.size = q.pos = 0
            if len(rest[0]):
                q.push(*rest)
        return taken

    def quarantined(self, n: int, besides: Collection[str] = ()) -> np.ndarray:
        """The newest ``n`` quarantined windows (of every key but those ``besides``),
        oldest first."""
        q = self.quarantine
        idx = q.ordered()
        if besides:
            idx = idx[~np.isin(q.keys[idx].astype(str), list(besides))]
        return q.data[idx[-n:]] if n > 0 else q.data[:0]

    def quarantined_of(self, key: str, since: float) -> np.ndarray:
        """A key's quarantined windows ending at or after ``since``, oldest first."""
        q = self.quarantine
        idx = q.ordered()
        return q.data[idx[(q.keys[idx] == key) & (q.ts[idx] >= since)]]

    def __len__(self) -> int:
        return self.recent.size + self.reservoir.size

    def windows(self, keys: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Training windows (reservoir, then recent oldest -> newest) and their times."""
        data, ts, _, _ = self.keyed_windows(keys)
        return data, ts

    def keyed_windows(self, keys: list[str] | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`windows` with each window's key and novelty distance (nan: none)."""
        r = self.reservoir
        res_idx = np.arange(r.size)
        res_idx = res_idx[np.argsort(r.ts[res_idx], kind="stable")]
        rec_idx = self.recent.ordered()
        data, ks, ts, nov = (np.concatenate([getattr(r, f)[res_idx],
                                             getattr(self.recent, f)[rec_idx]])
                             for f in ("data", "keys", "ts", "novelty"))
        if keys is not None:
            sel = np.isin(ks, np.asarray(keys, dtype=object))
            data, ts, ks, nov = data[sel], ts[sel], ks[sel], nov[sel]
        return data, ts, ks, nov

    def newest(self, n: int) -> np.ndarray:
        """The newest ``n`` admitted windows (recent normal data, for shadow scoring)."""
        idx = self.recent.ordered()[-n:] if n > 0 else self.recent.ordered()[:0]
        return self.recent.data[idx]

    def keys(self) -> list[str]:
        """Keys with recent admitted windows."""
        idx = self.recent.ordered()
        return [str(k) for k in np.unique(self.recent.keys[idx].astype(str))]

    def newest_of(self, key: str, n: int, before: float = np.inf) -> np.ndarray:
        """A key's newest ``n`` admitted windows (ending before ``before``), oldest
        first."""
        return self.recent.data[self._newest_idx(key, n, before)]

    def novelty_of(self, key: str, n: int, before: float = np.inf) -> np.ndarray:
        """The novelty distances of :meth:`newest_of`'s windows."""
        return self.recent.novelty[self._newest_idx(key, n, before)]

    def _newest_idx(self, key: str, n: int, before: float) -> np.ndarray:
        r = self.recent
        idx = r.ordered()
        return idx[(r.keys[idx] == key) & (r.ts[idx] < before)][-n:]

    def state_dict(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {"seen": np.array(self.seen)}
        for name in ("recent", "reservoir", "quarantine"):
            ring = getattr(self, name)
            idx = ring.ordered() if name != "reservoir" else np.arange(ring.size)
            out[f"{name}.data"] = ring.data[idx]
            out[f"{name}.keys"] = ring.keys[idx].astype(str)
            out[f"{name}.ts"] = ring.ts[idx]
            out[f"{name}.novelty"] = ring.novelty[idx]
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.seen = int(state["seen"])
        for name in ("recent", "reservoir", "quarantine"):
            getattr(self, name).load(state[f"{name}.data"], state[f"{name}.keys"],
                                     state[f"{name}.ts"], state.get(f"{name}.novelty"))


class KeyedReplayBuffer:
    """The same buffer kept per key (``updater.buffer.scope: per-key``): every key has its own
    ``recent`` / ``reservoir`` / ``quarantine`` capacities, so a few busy or long-lived
    keys cannot crowd the others out of the fine-tuning data. Memory grows with keys."""

    def __init__(self, window: int, channels: int, recent: int = 20_000,
                 reservoir: int = 20_000, quarantine: int = 5_000, seed: int = 0) -> None:
        self.shape = (window, channels, recent, reservoir, quarantine)
        self.seed = seed
        self.parts: dict[str, ReplayBuffer] = {}

    def _part(self, key: str) -> ReplayBuffer:
        part = self.parts.get(key)
        if part is None:
            part = self.parts[key] = ReplayBuffer(*self.shape, seed=self.seed + len(self.parts))
        return part

    def add(self, windows: np.ndarray, keys: np.ndarray, ts: np.ndarray,
            protected: np.ndarray | None = None, novelty: np.ndarray | None = None) -> None:
        keys = np.asarray(keys, dtype=object)
        guard = np.zeros(len(windows), bool) if protected is None else np.asarray(protected)
        nov = np.full(len(windows), np.nan) if novelty is None else np.asarray(novelty, float)
        for key in np.unique(keys.astype(str)):
            sel = keys.astype(str) == key
            self._part(key).add(windows[sel], keys[sel], np.asarray(ts)[sel], guard[sel],
                                nov[sel])

    def admit(self, key: str | None = None) -> int:
        if key is not None:
            return self.parts[key].admit(key) if key in self.parts else 0
        return sum(part.admit() for part in self.parts.values())

    def discard(self, key: str | None = None) -> tuple[np.ndarray, ...]:
        parts = self.parts.values() if key is None else \
            [self.parts[key]] if key in self.parts else []
        taken = [part.discard(key) for part in parts]
        if not taken:
            w, c = self.shape[:2]
            return (np.zeros((0, w, c), np.float32), np.zeros(0, dtype=object), np.zeros(0),
                    np.zeros(0))
        return tuple(np.concatenate(column) for column in zip(*taken))

    def quarantined(self, n: int, besides: Collection[str] = ()) -> np.ndarray:
        return self._newest([p.quarantine for k, p in self.parts.items()
                             if k not in besides], n)

    def quarantined_of(self, key: str, since: float) -> np.ndarray:
        return self.parts[key].quarantined_of(key, since) if key in self.parts else \
            np.zeros((0, *self.shape[:2]), np.float32)

    def __len__(self) -> int:
        return sum(len(part) for part in self.parts.values())

    def windows(self, keys: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Every key's training windows, merged in time order (oldest first)."""
        data, ts, _, _ = self.keyed_windows(keys)
        return data, ts

    def keyed_windows(self, keys: list[str] | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`windows` with each window's key and novelty distance."""
        chosen = [p for k, p in self.parts.items() if keys is None or k in keys]
        if not chosen:
            w, c = self.shape[:2]
            return (np.zeros((0, w, c), np.float32), np.zeros(0), np.zeros(0, dtype=object),
                    np.zeros(0))
        data, ts, ks, nov = (np.concatenate(part) for part in zip(*(p.keyed_windows()
                                                                     for p in chosen)))
        order = np.argsort(ts, kind="stable")
        return data[order], ts[order], ks[order], nov[order]

    def newest(self, n: int) -> np.ndarray:
        return self._newest([p.recent for p in self.parts.values()], n)

    def _newest(self, rings: list[_Ring], n: int) -> np.ndarray:
        """The newest ``n`` windows of the rings merged in time order, oldest first."""
        if n <= 0 or not rings:
            return np.zeros((0, *self.shape[:2]), np.float32)
        data = np.concatenate([r.data[r.ordered()] for r in rings])
        ts = np.concatenate([r.ts[r.ordered()] for r in rings])
        return data[np.argsort(ts, kind="stable")][-n:]

    def keys(self) -> list[str]:
        return [k for k, p in self.parts.items() if p.recent.size]

    def newest_of(self, key: str, n: int, before: float = np.inf) -> np.ndarray:
        return self.parts[key].newest_of(key, n, before) if key in self.parts else \
            np.zeros((0, *self.shape[:2]), np.float32)

    def novelty_of(self, key: str, n: int, before: float = np.inf) -> np.ndarray:
        return self.parts[key].novelty_of(key, n, before) if key in self.parts else \
            np.zeros(0)

    def state_dict(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {"keys": np.array(list(self.parts), dtype=str)}
        for i, part in enumerate(self.parts.values()):
            out.update({f"{i}.{k}": v for k, v in part.state_dict().items()})
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.parts = {}
        for i, key in enumerate(state["keys"].tolist()):
            prefix = f"{i}."
            self._part(str(key)).load_state_dict(
                {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
