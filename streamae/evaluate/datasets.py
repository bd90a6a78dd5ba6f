"""Loaders for public labelled anomaly datasets, mapped to streamae's frames.

* ``nab``: NAB's folder of CSV series (``timestamp,value[,label]``); labels from the
  ``label`` column or from ``combined_windows.json``. One run, every series a key, each
  trained on its first 15% (NAB's probationary period).
* ``smd``: Server Machine Dataset, either ``<machine>_train.csv.gz`` /
  ``<machine>_test.csv.gz`` or the original ``train/``, ``test/``, ``test_label/`` text
  files. One run per machine.
* ``smap`` / ``msl``: NASA telemetry, ``train/<chan>.npy``, ``test/<chan>.npy`` and
  ``labeled_anomalies.csv``. One run per channel file.
* ``ucr``: the UCR anomaly archive, ``NNN_UCR_Anomaly_<name>_<trainEnd>_<begin>_<end>.txt``
  (1-based, inclusive anomaly range). One run per file.

Files without timestamps get one row per minute, the test part continuing the training
part.
"""

from __future__ import annotations

import ast
import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamae.errors import InputFormatError
from streamae.io.files import read_frame
from streamae.types import Frame

DATASETS = ("nab", "smd", "smap", "msl", "ucr")
T0 = 1_700_000_000.0
STEP = 60.0


@dataclass
class Run:
    """One evaluation unit: train on ``train`` (or each key's ``train_head`` share of
    ``test``), then replay ``test``."""

    name: str
    test: Frame
    train: Frame | None = None
    train_head: float | None = None


def load(kind: str, path: str | Path, series: int | None = None) -> Iterator[Run]:
    """The runs of a dataset folder; ``kind`` is one of :data:`DATASETS`. ``series``: NAB
    (one run of many series) reads only its first ``series`` files, in sorted order."""
    path = Path(path)
    if not path.is_dir():
        raise InputFormatError(f"dataset folder {path} does not exist")
    loader = {"nab": _nab, "smd": _smd, "smap": _nasa, "msl": _nasa, "ucr": _ucr}.get(kind)
    if loader is None:
        raise InputFormatError(f"unknown dataset {kind!r}; known: {', '.join(DATASETS)}")
    runs = list(loader(path, kind) if loader is _nasa
                else loader(path, series) if loader is _nab else loader(path))
    if not runs:
        raise InputFormatError(f"no {kind} data found in {path} (see streamae.evaluate."
                               "datasets for the layouts read)")
    return iter(runs)


def _frame(values: np.ndarray, labels: np.ndarray | None, key: str, start: float = T0,
           channels: list[str] | None = None) -> Frame:
    values = np.asarray(values, dtype=np.float32).reshape(len(values), -1)
    channels = channels or ([f"c{j:02d}" for j in range(values.shape[1])]
                            if values.shape[1] > 1 else ["value"])
    n = len(values)
    return Frame(start + STEP * np.arange(n), np.full(n, key, dtype=object), values, channels,
                 None if labels is None else np.asarray(labels, dtype=np.int8))


# ---------------------------------------------------------------- NAB
def _nab(path: Path, series: int | None = None) -> Iterator[Run]:
    windows_file = next(iter(sorted(path.rglob("combined_windows.json"))), None)
    windows = json.loads(windows_file.read_text()) if windows_file else {}
    frames = []
    for file in sorted(path.rglob("*.csv*"))[:series]:
        rel = file.relative_to(path).as_posix()
        key = rel[:-3] if rel.endswith(".gz") else rel
        frame = read_frame(file)
        frame = Frame(frame.timestamps, np.full(len(frame), key, dtype=object), frame.values,
                      ["value"] if frame.values.shape[1] == 1 else frame.channels, frame.labels)
        if frame.labels is None:
            if key not in windows:
                raise InputFormatError(f"{file}: no label column and no windows for {key!r} "
                                       f"in combined_windows.json")
            labels = np.zeros(len(frame), dtype=np.int8)
            for start, end in windows[key]:
                lo, hi = _nab_time(start), _nab_time(end)
                labels[(frame.timestamps >= lo) & (frame.timestamps <= hi)] = 1
            frame.labels = labels
        frames.append(frame)
    if frames:
        yield Run("nab", Frame.concat(frames), None, 0.15)


def _nab_time(text: str) -> float:
    return float(np.datetime64(text.replace(" ", "T"), "ms").astype(np.int64)) / 1000


# ---------------------------------------------------------------- SMD
def _smd(path: Path) -> Iterator[Run]:
    for train_file in sorted(path.glob("*_train.csv*")):
        machine = train_file.name.split("_train")[0]
        test_file = next(iter(sorted(path.glob(f"{machine}_test.csv*"))), None)
        if test_file is None:
            raise InputFormatError(f"{train_file} has no matching {machine}_test.csv[.gz]")
        train, test = read_frame(train_file), read_frame(test_file)
        yield Run(machine, _rekey(test, machine), _rekey(train, machine))
    if (path / "train").is_dir() and (path / "test_label").is_dir():
        for train_file in sorted((path / "train").glob("*.txt")):
            machine = train_file.stem
            train = np.loadtxt(train_file, delimiter=",", ndmin=2)
            test = np.loadtxt(path / "test" / train_file.name, delimiter=",", ndmin=2)
            labels = np.loadtxt(path / "test_label" / train_file.name, delimiter=",")
            yield Run(machine, _frame(test, labels, machine, T0 + STEP * len(train)),
                      _frame(train, None, machine))


def _rekey(frame: Frame, key: str) -> Frame:
    return Frame(frame.timestamps, np.full(len(frame), key, dtype=object), frame.values,
                 frame.channels, frame.labels)


# ---------------------------------------------------------------- SMAP / MSL
def _nasa(path: Path, kind: str) -> Iterator[Run]:
    table = path / "labeled_anomalies.csv"
    if not table.exists():
        return
    with open(table, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("spacecraft", "").lower() == kind]
    for row in sorted(rows, key=lambda r: r["chan_id"]):
        chan = row["chan_id"]
        train = np.load(path / "train" / f"{chan}.npy", allow_pickle=False)
        test = np.load(path / "test" / f"{chan}.npy", allow_pickle=False)
        labels = np.zeros(len(test), dtype=np.int8)
        for start, end in ast.literal_eval(row["anomaly_sequences"]):
            labels[int(start): int(end) + 1] = 1
        yield Run(chan, _frame(test, labels, chan, T0 + STEP * len(train)),
                  _frame(train, None, chan))


# ---------------------------------------------------------------- UCR
_UCR = re.compile(r"^(\d+)_UCR_Anomaly_(.+)_(\d+)_(\d+)_(\d+)\.txt$")


def _ucr(path: Path) -> Iterator[Run]:
    for file in sorted(path.rglob("*.txt")):
        match = _UCR.match(file.name)
        if not match:
            continue
        number, name, train_end, begin, end = match.groups()
        x = np.loadtxt(file).reshape(-1)
        train_end, begin, end = int(train_end), int(begin), int(end)
        labels = np.zeros(len(x) - train_end, dtype=np.int8)
        labels[begin - 1 - train_end: end - train_end] = 1
        key = f"{number}_{name}"
        yield Run(key, _frame(x[train_end:], labels, key, T0 + STEP * train_end),
                  _frame(x[:train_end], None, key))
