import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from streamae.config import DataConfig
from streamae.errors import InputFormatError
from streamae.io.files import read_frame, read_frames, write_frame_csv
from streamae.synth import generate


def test_csv_roundtrip_gzip(tmp_path):
    frame = generate(n_points=50, keys=2, channels=2, seed=1).frame
    write_frame_csv(frame, tmp_path / "x.csv.gz")
    back = read_frame(tmp_path / "x.csv.gz")
    assert back.channels == frame.channels
    np.testing.assert_allclose(back.timestamps, frame.timestamps)
    np.testing.assert_allclose(back.values, frame.values, rtol=1e-5)
    assert list(back.keys) == list(frame.keys)
    np.testing.assert_array_equal(back.labels, frame.labels)


def test_epoch_seconds_missing_values_and_no_key(tmp_path):
    (tmp_path / "a.csv").write_text("timestamp,cpu,mem\n100,1.5,\n160,2.5,3\n")
    frame = read_frame(tmp_path / "a.csv")
    assert frame.timestamps.tolist() == [100, 160]
    assert np.isnan(frame.values[0, 1]) and frame.labels is None
    assert set(frame.keys) == {"series"}


def test_several_files_without_key_are_keyed_by_name(tmp_path):
    for name in ("a", "b"):
        (tmp_path / f"{name}.csv").write_text("timestamp,v\n2024-01-01T00:00:00Z,1\n")
    frame = read_frames([tmp_path / "a.csv", tmp_path / "b.csv"])
    assert list(frame.keys) == ["a", "b"]
    assert frame.timestamps[0] == 1704067200.0


def test_jsonl_and_parquet(tmp_path):
    rows = [{"timestamp": "2024-01-01 00:00:00", "key": "s1", "v": 1.0, "label": 0},
            {"timestamp": "2024-01-01 00:01:00", "key": "s1", "v": 2.0, "label": 1}]
    (tmp_path / "x.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    frame = read_frame(tmp_path / "x.jsonl")
    assert frame.values[:, 0].tolist() == [1.0, 2.0] and frame.labels.tolist() == [0, 1]
    pq.write_table(pa.table({"timestamp": [1.0, 2.0], "v": [3.0, 4.0]}), tmp_path / "x.parquet")
    assert read_frame(tmp_path / "x.parquet").values[:, 0].tolist() == [3.0, 4.0]


def test_column_roles_from_config(tmp_path):
    (tmp_path / "a.csv").write_text("time,host,x,y,junk\n1,h1,1,2,9\n")
    frame = read_frame(tmp_path / "a.csv", DataConfig(timestamp_column="time", key_column="host",
                                                      channels=["x", "y"]))
    assert frame.channels == ["x", "y"] and frame.keys[0] == "h1"


@pytest.mark.parametrize("text, fragment", [
    ("timestamp,v\n1,2\n2\n", "a.csv:3: expected 2 fields"),
    ("timestamp,v\n1,2\n2,abc\n", "a.csv:3: column 'v' holds 'abc'"),
    ("time,v\n1,2\n", "no 'timestamp' column"),
    ("timestamp,v\n1,2\nyesterday,3\n", "a.csv:3: timestamp 'yesterday'"),
    ("timestamp,v,label\n1,2,7\n", "a.csv:2: label must be 0 or 1"),
    ("timestamp,label\n1,0\n", "no channel columns"),
    ("timestamp,v\n", "no data rows"),
])
def test_bad_files_name_the_line(tmp_path, text, fragment):
    (tmp_path / "a.csv").write_text(text)
    with pytest.raises(InputFormatError) as err:
        read_frame(tmp_path / "a.csv")
    assert fragment in str(err.value)


def test_bad_jsonl_and_unknown_suffix(tmp_path):
    (tmp_path / "x.jsonl").write_text('{"timestamp": 1, "v": 1}\n{oops\n')
    with pytest.raises(InputFormatError, match="x.jsonl:2: not valid JSON"):
        read_frame(tmp_path / "x.jsonl")
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(InputFormatError, match="unknown file type"):
        read_frame(tmp_path / "x.txt")
    with gzip.open(tmp_path / "bad.csv.gz", "wb") as fh:
        fh.write(b"\xff\xfe\x00garbage")
    with pytest.raises(InputFormatError):
        read_frame(tmp_path / "bad.csv.gz")


def test_epoch_milliseconds_in_a_file_are_read_as_kafka_input_reads_them(tmp_path):
    """The same rule as the Kafka decoders: auto by magnitude, or data.timestamp_unit; a
    number that is no time in any unit names the line and the setting."""
    from streamae.config import DataConfig
    from streamae.errors import InputFormatError
    from streamae.formats.base import parse_time
    from streamae.io.files import read_frame

    ms = tmp_path / "ms.csv"
    ms.write_text("timestamp,value\n" + "".join(f"{1700000000000 + 60000 * i},{i}\n"
                                                for i in range(5)))
    frame = read_frame(ms)
    assert frame.timestamps[0] == parse_time(1700000000000) == 1_700_000_000.0
    assert list(read_frame(ms, DataConfig(timestamp_unit="ms")).timestamps) == \
        list(frame.timestamps)
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,value\n1700000000,1\n9000000000000,2\n")
    with pytest.raises(InputFormatError, match=r"bad.csv:3: .*1970..2200.*timestamp_unit"):
        read_frame(bad)


def test_one_missing_value_rule_for_numeric_cells(tmp_path):
    from streamae.errors import InputFormatError
    from streamae.io.files import read_frame

    path = tmp_path / "gaps.csv"
    cells = ["1", "n/a", "NULL", "-", "", " NaN ", "None", "NA", "2"]
    path.write_text("timestamp,value\n" + "".join(f"{1767225600 + 60 * i},{c}\n"
                                                  for i, c in enumerate(cells)))
    values = read_frame(path).values[:, 0]
    assert values[0] == 1 and values[-1] == 2 and np.isnan(values[1:-1]).all()
    path.write_text("timestamp,value\n1767225600,1\n1767225660,high\n")
    with pytest.raises(InputFormatError, match=r"gaps.csv:3: column 'value' holds 'high'"):
        read_frame(path)
