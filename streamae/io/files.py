"""Read CSV (also gzip), JSONL and Parquet files into a :class:`Frame`, and write CSV.

Layout: ``timestamp`` (ISO 8601 text, or epoch numbers in s/ms/us/ns: by magnitude, as for
Kafka input, or ``data.timestamp_unit``), optional ``key``, optional
``label``, and every other numeric column a channel. Column roles come from
:class:`~streamae.config.DataConfig`. A file that does not fit raises
:class:`InputFormatError` naming the file and line. A numeric cell that is empty or one of
``nan``, ``null``, ``none``, ``na``, ``n/a``, ``-`` (any case) is a missing value.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import numpy as np

from streamae.clock import iso
from streamae.config import DataConfig
from streamae.errors import InputFormatError
from streamae.formats.base import MAX_TS, epoch_seconds
from streamae.types import Frame

#: Cells read as a missing value (any case, surrounding blanks ignored): they become nan,
#: which ``window.nan_policy`` handles as it does a JSON null or NaN from Kafka.
MISSING = frozenset({"", "nan", "null", "none", "na", "n/a", "-"})


def read_frame(path: str | Path, data: DataConfig | None = None) -> Frame:
    """Read one file; the format follows the suffix (.csv, .csv.gz, .jsonl, .parquet)."""
    data = data or DataConfig()
    path = Path(path)
    if not path.exists():
        raise InputFormatError(f"{path}: no such file")
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz")):
        header, columns, first_line = _read_csv(path)
    elif name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        header, columns, first_line = _read_jsonl(path)
    elif name.endswith(".parquet"):
        header, columns, first_line = _read_parquet(path)
    else:
        raise InputFormatError(f"{path}: unknown file type; use .csv, .csv.gz, .jsonl or .parquet")
    return _to_frame(path, header, columns, first_line, data)


def read_frames(paths: list[str | Path], data: DataConfig | None = None) -> Frame:
    """Read several files with the same channels; a file without a key column is keyed by
    its stem so that series from different files stay apart."""
    data = data or DataConfig()
    frames = []
    for p in paths:
        frame = read_frame(p, data)
        if len(paths) > 1 and np.all(frame.keys == data.default_key):
            frame.keys = np.full(len(frame), _stem(Path(p)), dtype=object)
        frames.append(frame)
    try:
        return Frame.concat(frames)
    except ValueError as exc:
        raise InputFormatError(f"input files do not share channels: {exc}") from None


def write_frame_csv(frame: Frame, path: str | Path, data: DataConfig | None = None) -> None:
    """Write a frame in the file layout (ISO timestamps, key, channels, label)."""
    data = data or DataConfig()
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", newline="") as fh:
        writer = csv.writer(fh)
        header = [data.timestamp_column, data.key_column, *frame.channels]
        if frame.labels is not None:
            header.append(data.label_column)
        writer.writerow(header)
        for i in range(len(frame)):
            row: list[Any] = [iso(frame.timestamps[i]), frame.keys[i], *(f"{v:.6g}" for v in frame.values[i])]
            if frame.labels is not None:
                row.append(int(frame.labels[i]))
            writer.writerow(row)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".csv.gz", ".jsonl.gz", ".csv", ".jsonl", ".ndjson", ".parquet"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _open_text(path: Path) -> IO[str]:
    if path.name.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), newline="")
    return open(path, newline="")


def _read_csv(path: Path) -> tuple[list[str], list[list[Any]], int]:
    try:
        with _open_text(path) as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if not header:
                raise InputFormatError(f"{path}: empty file, expected a header line")
            header = [h.strip() for h in header]
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputFormatError(f"{path}: cannot read as CSV: {exc}") from None
    width = len(header)
    for i, row in enumerate(rows):
        if len(row) != width:
            raise InputFormatError(f"{path}:{i + 2}: expected {width} fields as in the header, "
                                   f"got {len(row)}")
    columns = [list(col) for col in zip(*rows)] if rows else [[] for _ in header]
    return header, columns, 2


def _read_jsonl(path: Path) -> tuple[list[str], list[list[Any]], int]:
    records: list[dict[str, Any]] = []
    try:
        with _open_text(path) as fh:
            for i, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputFormatError(f"{path}:{i}: not valid JSON: {exc.msg}") from None
                if not isinstance(obj, dict):
                    raise InputFormatError(f"{path}:{i}: expected a JSON object per line")
                records.append(obj)
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFormatError(f"{path}: cannot read: {exc}") from None
    header: list[str] = []
    for rec in records:
        for k in rec:
            if k not in header:
                header.append(k)
    columns = [[rec.get(k) for rec in records] for k in header]
    return header, columns, 1


def _read_parquet(path: Path) -> tuple[list[str], list[list[Any]], int]:
    import pyarrow.parquet as pq  # only loaded for Parquet input

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises many types; all mean "not readable"
        raise InputFormatError(f"{path}: cannot read as Parquet: {exc}") from None
    columns = []
    for col in table.columns:
        if str(col.type).startswith("timestamp"):
            col = col.cast("int64").to_numpy(zero_copy_only=False) / _unit_per_second(col.type)
            columns.append(list(col))
        else:
            columns.append(col.to_pylist())
    return list(table.column_names), columns, 1


def _unit_per_second(arrow_type: Any) -> float:
    return {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}[arrow_type.unit]


def _to_frame(path: Path, header: list[str], columns: list[list[Any]], first_line: int,
              data: DataConfig) -> Frame:
    if data.timestamp_column not in header:
        raise InputFormatError(f"{path}: no '{data.timestamp_column}' column (found: "
                               f"{', '.join(header)}); set data.timestamp_column in the config")
    col = dict(zip(header, columns))
    n = len(col[data.timestamp_column])
    if n == 0:
        raise InputFormatError(f"{path}: no data rows")
    timestamps = _parse_timestamps(path, col[data.timestamp_column], first_line,
                                   data.timestamp_unit)
    keys = (np.array([str(k) for k in col[data.key_column]], dtype=object)
            if data.key_column in col else np.full(n, data.default_key, dtype=object))
    labels = None
    if data.label_column in col:
        raw = _parse_numbers(path, data.label_column, col[data.label_column], first_line)
        if np.isnan(raw).any() or not np.isin(raw, (0.0, 1.0)).all():
            bad = int(np.flatnonzero(np.isnan(raw) | ~np.isin(raw, (0.0, 1.0)))[0])
            raise InputFormatError(f"{path}:{bad + first_line}: label must be 0 or 1")
        labels = raw.astype(np.int8)
    roles = {data.timestamp_column, data.key_column, data.label_column}
    if data.channels is not None:
        missing = [c for c in data.channels if c not in col]
        if missing:
            raise InputFormatError(f"{path}: channel column(s) {', '.join(missing)} not found "
                                   f"(found: {', '.join(header)})")
        names = list(data.channels)
    else:
        names = [h for h in header if h not in roles]
    if not names:
        raise InputFormatError(f"{path}: no channel columns besides {', '.join(sorted(roles))}")
    values = np.empty((n, len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        values[:, j] = _parse_numbers(path, name, col[name], first_line)
    return Frame(timestamps, keys, values, names, labels)


def _parse_numbers(path: Path, name: str, raw: list[Any], first_line: int) -> np.ndarray:
    try:
        return np.asarray(raw, dtype=np.float64)
    except (ValueError, TypeError):
        pass
    out = np.empty(len(raw), dtype=np.float64)
    for i, v in enumerate(raw):
        if v is None or (isinstance(v, str) and v.strip().lower() in MISSING):
            out[i] = math.nan
            continue
        try:
            if isinstance(v, bool):
                raise ValueError
            out[i] = float(v)
        except (ValueError, TypeError):
            raise InputFormatError(f"{path}:{i + first_line}: column '{name}' holds {v!r}, "
                                   f"not a number") from None
    return out


def _parse_timestamps(path: Path, raw: list[Any], first_line: int,
                      unit: str = "auto") -> np.ndarray:
    """ISO 8601 text or epoch numbers (``unit``, or auto by magnitude: the rule Kafka input
    follows), each within 1970..2200."""
    try:
        out = np.asarray(raw, dtype=np.float64)
    except (ValueError, TypeError):
        out = None
    if out is not None and np.isfinite(out).all():
        return _in_range(path, epoch_seconds(out, unit), out, first_line)
    return _in_range(path, _text_timestamps(path, raw, first_line), raw, first_line)


def _in_range(path: Path, ts: np.ndarray, raw: Any, first_line: int) -> np.ndarray:
    bad = np.flatnonzero(~((ts > 0) & (ts < MAX_TS)))
    if len(bad):
        i = int(bad[0])
        value = raw[i]
        shown = f"{float(value):.15g}" if isinstance(value, (int, float, np.number)) \
            else repr(value)
        raise InputFormatError(f"{path}:{i + first_line}: timestamp {shown} is outside "
                               "1970..2200 (set data.timestamp_unit: s, ms, us or ns if the "
                               "numbers are epoch time in another unit)")
    return ts


def _text_timestamps(path: Path, raw: list[Any], first_line: int) -> np.ndarray:
    try:
        stamps = np.asarray([str(s).rstrip("Z") for s in raw], dtype="datetime64[ns]")
        if not np.isnat(stamps).any():
            return stamps.astype(np.int64) / 1e9
    except ValueError:
        pass
    out = np.empty(len(raw), dtype=np.float64)
    for i, s in enumerate(raw):
        out[i] = _one_timestamp(path, s, i + first_line)
    return out


def _one_timestamp(path: Path, value: Any, line: int) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputFormatError(f"{path}:{line}: timestamp {value!r} is neither ISO 8601 nor "
                               f"epoch seconds") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc).timestamp()
    return parsed.timestamp()


def write_columns(columns: dict[str, np.ndarray], path: str | Path) -> None:
    """Write named columns (a timestamp first, then text or numbers) as ``.parquet``,
    ``.csv`` or ``.csv.gz``: numbers rounded to 6 decimals, timestamps to milliseconds."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table(columns), path)
        return
    names = list(columns)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(names)
        first, *rest = (columns[n] for n in names)
        for i in range(len(first)):
            writer.writerow([f"{first[i]:.3f}", *(_cell(c[i]) for c in rest)])


def _cell(value):
    return round(float(value), 6) if isinstance(value, (float, np.floating)) else value
