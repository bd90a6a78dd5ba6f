"""Dataset loaders on tiny folders in each public layout, and the evaluate job."""

import json

import numpy as np
import pytest

from streamae.errors import InputFormatError
from streamae.evaluate.datasets import load


def test_nab_labels_from_windows_json(tmp_path):
    (tmp_path / "realX").mkdir()
    rows = ["timestamp,value"] + [f"2026-01-01 00:{m:02d}:00,{m % 7}" for m in range(30)]
    (tmp_path / "realX" / "a.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "combined_windows.json").write_text(json.dumps(
        {"realX/a.csv": [["2026-01-01 00:10:00.000000", "2026-01-01 00:12:00.000000"]]}))
    [run] = load("nab", tmp_path)
    assert run.train_head == 0.15 and run.train is None
    assert list(np.flatnonzero(run.test.labels)) == [10, 11, 12]
    assert set(run.test.keys) == {"realX/a.csv"}


def test_smd_both_layouts(tmp_path):
    for d in ("train", "test", "test_label"):
        (tmp_path / d).mkdir()
    rng = np.random.default_rng(0)
    np.savetxt(tmp_path / "train" / "machine-9-9.txt", rng.random((20, 3)), delimiter=",")
    np.savetxt(tmp_path / "test" / "machine-9-9.txt", rng.random((10, 3)), delimiter=",")
    np.savetxt(tmp_path / "test_label" / "machine-9-9.txt", [0] * 7 + [1] * 3, delimiter=",")
    [run] = load("smd", tmp_path)
    assert run.name == "machine-9-9" and run.test.channels == ["c00", "c01", "c02"]
    assert run.test.timestamps[0] == run.train.timestamps[-1] + 60  # test continues train
    assert run.test.labels.sum() == 3


def test_smap_msl_from_npy_and_labelled_anomalies(tmp_path):
    for d in ("train", "test"):
        (tmp_path / d).mkdir()
    for chan in ("P-1", "M-1"):
        np.save(tmp_path / "train" / f"{chan}.npy", np.zeros((50, 4)))
        np.save(tmp_path / "test" / f"{chan}.npy", np.ones((40, 4)))
    (tmp_path / "labeled_anomalies.csv").write_text(
        'chan_id,spacecraft,anomaly_sequences,class,num_values\n'
        'P-1,SMAP,"[[5, 9], [30, 31]]",[point],40\n'
        'M-1,MSL,"[[0, 1]]",[point],40\n')
    [run] = load("smap", tmp_path)
    assert run.name == "P-1" and list(np.flatnonzero(run.test.labels)) == [5, 6, 7, 8, 9, 30, 31]
    [msl] = load("msl", tmp_path)
    assert msl.name == "M-1" and msl.test.labels.sum() == 2


def test_ucr_name_convention(tmp_path):
    x = np.sin(np.arange(300) / 5)
    np.savetxt(tmp_path / "001_UCR_Anomaly_DISTORTEDtest_200_251_260.txt", x)
    [run] = load("ucr", tmp_path)
    assert len(run.train) == 200 and len(run.test) == 100
    assert list(np.flatnonzero(run.test.labels)) == list(range(50, 60))  # rows 251..260


def test_missing_or_unknown_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(InputFormatError, match="no smd data"):
        load("smd", tmp_path)
    with pytest.raises(InputFormatError, match="unknown dataset"):
        load("kdd", tmp_path)


def test_evaluate_job_writes_per_run_reports_and_macro(tmp_path):
    from conftest import small_config
    from streamae import jobs

    x = np.sin(np.arange(900) / 8) + 0.05 * np.random.default_rng(1).standard_normal(900)
    x[700:705] += 4
    np.savetxt(tmp_path / "002_UCR_Anomaly_toy_600_701_705.txt", x)
    out = tmp_path / "out"
    summary = jobs.evaluate_dataset("ucr", tmp_path, small_config(), out, ("pca",), plots=1)
    assert set(summary["macro"]) == {"streamae-lstm", "pca"}
    assert {"auc_pr", "vus_pr", "nab_standard", "event_f1"} <= set(summary["macro"]["pca"])
    run_dir = out / "002_toy"
    html = (run_dir / "report.html").read_text()
    assert "data:image/png;base64," in html and "Strongest alarms" in html
    assert (out / "summary.md").exists() and (run_dir / "report.json").exists()


def test_nab_limit_takes_the_first_series(tmp_path):
    (tmp_path / "realX").mkdir()
    rows = ["timestamp,value,label"] + [f"2026-01-01 00:{m:02d}:00,{m % 7},0" for m in range(30)]
    for name in ("a", "b", "c"):
        (tmp_path / "realX" / f"{name}.csv").write_text("\n".join(rows) + "\n")
    [run] = load("nab", tmp_path, series=1)
    assert set(run.test.keys) == {"realX/a.csv"}
    [run] = load("nab", tmp_path)
    assert len(set(run.test.keys)) == 3
