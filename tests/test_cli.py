import csv
import json
import subprocess
import sys

import pytest

from streamae import __version__
from streamae.cli import main

SMALL = ["--set", "window.size=16", "--set", "window.hop=4", "--set", "train.epochs=2",
         "--set", "model.members=[{kind: lstm, hidden: 16}, {kind: linear, components: 8}]",
         "--set", "calibration.smooth=4", "--set", "threshold.init_points=50", "-q"]


def test_version_and_help(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert __version__ in capsys.readouterr().out
    for command in ("run", "updater", "dev-broker", "control", "train", "pretrain", "finetune", "embed",
                    "models", "backtest", "evaluate", "demo", "synth", "config"):
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0
        assert "--config" in capsys.readouterr().out


def test_python_dash_m_works():
    out = subprocess.run([sys.executable, "-m", "streamae", "--version"], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == f"streamae {__version__}"


def test_bad_config_fails_at_start_with_field(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("window:\n  hop: -1\n")
    assert main(["config", "check", "--config", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err
    assert "'window.hop': got -1; must be >= 1" in err and str(tmp_path / "c.yaml") in err
    (tmp_path / "ok.yaml").write_text("window:\n  hop: 4\n")
    assert main(["config", "check", str(tmp_path / "ok.yaml"), "--set", "window.size=32"]) == 0
    assert capsys.readouterr().out.strip() == f"{tmp_path / 'ok.yaml'} with 1 --set override(s): ok"


def test_options_sit_where_users_put_them_and_help_shows_what_they_do(capsys):
    from streamae.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["run", "-v"]).verbose
    assert parser.parse_args(["-v", "run"]).verbose  # the command's own -v does not reset it
    assert not parser.parse_args(["run"]).verbose
    with pytest.raises(SystemExit):
        main(["updater", "--help"])
    text = capsys.readouterr().out
    assert "--output-topic" not in text and "--delivery" not in text  # it sends no events
    assert "daemon.models_topic" in text
    with pytest.raises(SystemExit):
        main(["synth", "--help"])
    assert "generator seed (default: 0)" in " ".join(capsys.readouterr().out.split())


def test_an_unknown_baseline_is_refused_before_any_training(tmp_path, capsys):
    data = tmp_path / "data.csv.gz"
    assert main(["synth", "--out", str(data), "--points", "300"]) == 0
    out = tmp_path / "run"
    assert main(["backtest", "--train-head", "0.5", "--input", str(data), "--out", str(out),
                 "--baselines", "pca,zscore", *SMALL]) == 2
    assert "unknown baseline 'zscore'" in capsys.readouterr().err
    assert not out.exists()


def test_train_then_backtest_contract(tmp_path, capsys):
    data = tmp_path / "data.csv.gz"
    assert main(["synth", "--out", str(data), "--keys", "2", "--channels", "3", "--points", "600",
                 "--clean-head", "300"]) == 0
    assert main(["train", "--input", str(data), "--out", str(tmp_path / "model"), *SMALL]) == 0
    out = tmp_path / "run"
    assert main(["backtest", "--model", str(tmp_path / "model"), "--input", str(data),
                 "--out", str(tmp_path / "plain"), *SMALL]) == 0
    assert main(["backtest", "--train", str(data), "--input", str(data),
                 "--out", str(out), "--baselines", "pca,rolling-zscore", "--plots", "1",
                 *SMALL]) == 0
    with open(out / "scores.csv") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["timestamp", "key", "score", "threshold", "anomaly"]
    assert len(rows) - 1 == 1200
    assert {r[4] for r in rows[1:]} <= {"0", "1"}
    report = json.loads((out / "report.json").read_text())
    assert set(report["detectors"]) == {"streamae-ensemble", "pca", "rolling-zscore"}
    assert "auc_pr" in report["detectors"]["pca"]["macro"]
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert len(events) == report["events"]
    assert (out / "report.md").exists() and list(out.glob("plot_*.png"))
    assert "macro average" in capsys.readouterr().out


def test_backtest_without_model_is_a_clear_error(tmp_path, capsys):
    data = tmp_path / "d.csv"
    data.write_text("timestamp,v\n1,2\n")
    assert main(["backtest", "--input", str(data), "--out", str(tmp_path / "o")]) == 2
    assert "needs a model" in capsys.readouterr().err
    assert main(["backtest", "--model", str(tmp_path / "nope"), "--input", str(data),
                 "--out", str(tmp_path / "o")]) == 2
    assert "not a streamae model" in capsys.readouterr().err


def test_run_without_model_or_with_bad_kafka_config_is_a_clear_error(tmp_path, capsys):
    assert main(["run", "--input-topic", "metrics"]) == 2
    assert "run needs a model" in capsys.readouterr().err
    assert main(["run", "--model", str(tmp_path), "--set", "daemon.delivery=twice"]) == 2
    err = capsys.readouterr().err
    assert "daemon.delivery" in err and "exactly-once" in err
    bad = tmp_path / "d.yaml"
    bad.write_text("kafka:\n  client:\n    sasl_plain_password: ${STREAMAE_TEST_UNSET}\n")
    from streamae.config import load_config
    from streamae.daemon.clients import client_settings, masked

    with pytest.raises(Exception, match="STREAMAE_TEST_UNSET"):
        client_settings(load_config(bad).kafka)
    settings = masked({"sasl_plain_password": "hunter2", "ssl_cafile": "/ca.pem"})
    assert settings == {"sasl_plain_password": "***", "ssl_cafile": "/ca.pem"}


def test_pretrain_finetune_embed_and_model_store_commands(tmp_path, capsys):
    src, new = tmp_path / "source.csv", tmp_path / "new.csv"
    assert main(["synth", "--out", str(src), "--keys", "3", "--channels", "2", "--points",
                 "600", "--seed", "1"]) == 0
    assert main(["synth", "--out", str(new), "--keys", "1", "--channels", "2", "--points",
                 "400", "--seed", "2"]) == 0
    assert main(["pretrain", "--input", str(src), "--out", str(tmp_path / "pre"), *SMALL]) == 0
    assert main(["finetune", "--from", str(tmp_path / "pre"), "--input", str(new), "--out",
                 str(tmp_path / "tuned"), "--freeze-layers", "1", "--lr", "0.0005",
                 *SMALL]) == 0
    out = capsys.readouterr().out
    from streamae.models.detector import Detector

    pre = Detector.load(tmp_path / "pre").version
    assert f"(from {pre})" in out
    assert "'decoder'" in out and "'encoder'" in out  # the per-layer learning rates
    emb = tmp_path / "z.csv"
    assert main(["embed", "--model", str(tmp_path / "tuned"), "--input", str(new), "--out",
                 str(emb), *SMALL]) == 0
    rows = list(csv.reader(open(emb)))
    assert rows[0][:3] == ["timestamp", "key", "z0"] and len(rows) == 1 + (400 - 16) // 4 + 1
    store = str(tmp_path / "store")
    for model in ("pre", "tuned"):
        assert main(["models", "add", str(tmp_path / model), "--store", store]) == 0
    versions = [line.split()[1] for line in capsys.readouterr().out.splitlines()
                if line.startswith("added")]
    for v in versions:
        assert main(["models", "promote", v, "--store", store]) == 0
    assert main(["models", "rollback", "--store", store]) == 0
    assert f"{versions[0]} is live" in capsys.readouterr().out
    assert main(["models", "list", "--store", store]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].startswith(f"* {versions[0]}")


def test_no_secret_appears_in_a_rendered_config_report_or_log(tmp_path, capsys, caplog,
                                                             monkeypatch):
    """A literal password in the YAML is used, never shown: config show, report.json,
    report.html and the clients' debug log all mask it (a ${VAR} reference is shown)."""
    import logging

    from streamae.config import load_config
    from streamae.daemon import clients

    secret = "hunter2-do-not-print"
    monkeypatch.setenv("TLS_PASS", "from-the-environment")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("kafka:\n  security_protocol: SASL_PLAINTEXT\n  client:\n"
                   "    sasl_mechanism: PLAIN\n    sasl_plain_username: me\n"
                   f"    sasl_plain_password: {secret}\n    ssl_password: ${{TLS_PASS}}\n")
    assert main(["config", "show", "--config", str(cfg)]) == 0
    shown = capsys.readouterr().out
    assert secret not in shown and "sasl_plain_password: '***'" in shown
    assert "${TLS_PASS}" in shown
    data = tmp_path / "data.csv.gz"
    assert main(["synth", "--out", str(data), "--keys", "1", "--points", "400",
                 "--clean-head", "200"]) == 0
    out = tmp_path / "run"
    assert main(["backtest", "--train-head", "0.5", "--input", str(data), "--out", str(out),
                 "--config", str(cfg), *SMALL]) == 0
    for path in out.iterdir():
        if path.suffix in (".json", ".html", ".md", ".jsonl", ".csv"):
            assert secret not in path.read_text(errors="replace"), path.name
    caplog.set_level(logging.DEBUG, logger="streamae")
    settings = clients.client_settings(load_config(cfg).kafka)
    assert settings["sasl_plain_password"] == secret  # used as given
    clients.log.debug("producer settings %s", clients.masked(settings))
    assert secret not in caplog.text and "from-the-environment" not in caplog.text


def test_train_never_overwrites_what_is_not_a_model(tmp_path):
    """``--out`` onto a data file or a folder of other files is refused before any work
    (exit 2, one line naming the problem), and the file is left as it was."""
    def streamae(*args):
        return subprocess.run([sys.executable, "-m", "streamae", *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)

    assert streamae("synth", "--out", "data.csv.gz", "--keys", "1", "--points", "300").returncode == 0
    before = (tmp_path / "data.csv.gz").read_bytes()
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("keep me")
    for out, problem in (("data.csv.gz", "existing file"), ("notes", "holding other files")):
        done = streamae("train", "--input", "data.csv.gz", "--out", out, *SMALL)
        assert done.returncode == 2, done.stderr
        first = done.stderr.strip().splitlines()[0]
        assert first.startswith("error: ") and problem in first and "--out" in first
        assert "Traceback" not in done.stderr
    assert (tmp_path / "data.csv.gz").read_bytes() == before
    assert (other / "todo.txt").read_text() == "keep me"
    assert streamae("train", "--input", "data.csv.gz", "--out", "model", *SMALL).returncode == 0
    again = streamae("train", "--input", "data.csv.gz", "--out", "model", *SMALL)
    assert again.returncode == 0, again.stderr  # an earlier model is replaced


def console(cwd, *args):
    """The installed console script, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "streamae", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_a_reused_out_folder_shows_only_this_runs_plots(tmp_path):
    assert console(tmp_path, "synth", "--out", "two.csv.gz", "--keys", "2", "--points", "400",
                   "--clean-head", "200").returncode == 0
    assert console(tmp_path, "synth", "--out", "one.csv.gz", "--keys", "1", "--points", "400",
                   "--clean-head", "200", "--seed", "3").returncode == 0
    for data in ("two.csv.gz", "one.csv.gz"):
        done = console(tmp_path, "backtest", "--train-head", "0.5", "--input", data, "--out",
                       "run", "--plots", "6", *SMALL)
        assert done.returncode == 0, done.stderr
    out = tmp_path / "run"
    plots = sorted(p.name for p in out.glob("plot_*.png"))
    report = json.loads((out / "report.json").read_text())
    assert plots == sorted(report["plots"]) and len(plots) == 1
    assert (out / "report.html").read_text().count("data:image/png") == 1


def test_baselines_without_training_rows_fail_before_any_scoring(tmp_path):
    assert console(tmp_path, "synth", "--out", "d.csv.gz", "--keys", "1", "--points", "400",
                   "--clean-head", "200").returncode == 0
    assert console(tmp_path, "train", "--input", "d.csv.gz", "--out", "model",
                   *SMALL).returncode == 0
    done = console(tmp_path, "backtest", "--model", "model", "--input", "d.csv.gz", "--out",
                   "run", "--baselines", "pca", *SMALL)
    assert done.returncode == 2
    first = done.stderr.strip().splitlines()[0]
    assert first.startswith("error: baselines need training rows") and "--train" in first
    assert not (tmp_path / "run").exists()


def test_ordinary_mistakes_are_one_line_and_exit_2(tmp_path):
    """Each mistake: exit 2, one ``error`` line naming the problem and the fix, no
    traceback, nothing left behind."""
    def streamae(*args):
        return subprocess.run([sys.executable, "-m", "streamae", *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)

    assert streamae("synth", "--out", "d.csv.gz", "--keys", "1", "--points", "300").returncode == 0
    with open(tmp_path / "tiny.csv", "w") as fh:
        fh.write("timestamp,value\n" + "".join(f"{1767225600 + 60 * i},{i % 7}\n"
                                               for i in range(10)))
    (tmp_path / "f.txt").write_text("mine")
    cases = [
        (["backtest", "--train-head", "0.5", "--input", "d.csv.gz", "--out", "o",
          "--early", "five"], "--early", "o"),
        (["synth", "--out", "missing/dir/x.csv"], "does not exist", "missing"),
        (["backtest", "--train-head", "0.5", "--input", "d.csv.gz", "--out", "f.txt"],
         "existing file", None),
        (["train", "--input", "tiny.csv", "--out", "m"], "shorten window.size", "m"),
    ]
    for args, problem, left in cases:
        done = streamae(*args)
        assert done.returncode == 2, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert "Traceback" not in done.stderr and problem in lines[-1], (args, done.stderr)
        if left:
            assert not (tmp_path / left).exists(), args
    assert (tmp_path / "f.txt").read_text() == "mine"


def test_a_daemon_without_a_broker_says_so_once_and_stops_at_once(tmp_path):
    import signal
    import time
    import urllib.error
    import urllib.request

    from streamae.broker import free_port

    def streamae(*args):
        return subprocess.run([sys.executable, "-m", "streamae", *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)

    assert streamae("synth", "--out", "d.csv.gz", "--keys", "1", "--points", "300").returncode == 0
    assert streamae("train", "--input", "d.csv.gz", "--out", "m", *SMALL).returncode == 0
    port, http = free_port(), free_port()
    log = open(tmp_path / "run.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "streamae", "run", "--model", "m",
                             "--bootstrap-servers", f"127.0.0.1:{port}",
                             "--set", "window.size=16", "--set", "window.hop=4",
                             "--set", f"daemon.http_port={http}"],
                            cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "no broker at" not in (tmp_path / "run.log").read_text():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.2)
        time.sleep(6)  # a retry or two
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{http}/readyz", timeout=5)
        assert err.value.code == 503
        stopped = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert time.monotonic() - stopped < 10
    finally:
        if proc.poll() is None:
            proc.kill()
    text = (tmp_path / "run.log").read_text()
    assert text.count("no broker at") == 1 and "Traceback" not in text
    assert len(text.splitlines()) <= 5, text


def test_rows_out_of_time_order_are_counted_in_the_report(tmp_path, capsys):
    import gzip

    data = tmp_path / "data.csv.gz"
    assert main(["synth", "--out", str(data), "--keys", "1", "--points", "400",
                 "--clean-head", "200"]) == 0
    lines = gzip.open(data, "rt").read().splitlines()
    lines[300], lines[301] = lines[301], lines[300]  # one pair swapped
    shuffled = tmp_path / "shuffled.csv"
    shuffled.write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    assert main(["backtest", "--train-head", "0.5", "--input", str(shuffled), "--out",
                 str(out), "--plots", "0", *SMALL]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["rows_out_of_order"] == 1 and report["replayed_in_event_time"]


def test_every_option_of_every_command_has_help_and_no_empty_defaults(capsys):
    from streamae.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name, sub in commands.items():
        for action in sub._actions:
            if action.option_strings or action.dest not in ("help",):
                assert action.help, f"{name} {action.option_strings or action.dest}: no help"
        with pytest.raises(SystemExit):
            sub.parse_args(["--help"])
        text = capsys.readouterr().out
        assert "(default: None)" not in text and "(default: [])" not in text, name
        assert "(default: False)" not in text, name


def test_the_html_report_answers_its_question_in_one_line():
    from streamae.evaluate.html import verdict

    macro = {"streamae-ensemble": {"auc_pr": 0.30, "composite_f1": 0.31, "event_f1": 0.38},
             "pca": {"auc_pr": 0.20, "composite_f1": 0.22, "event_f1": 0.23},
             "isolation-forest": {"auc_pr": 0.25, "composite_f1": 0.09, "event_f1": 0.78}}
    line = verdict(macro)
    assert line.startswith("streamae-ensemble ranks anomalies best: AUC-PR 0.300, 1.20x")
    assert "composite F1 0.310 vs 0.220 (pca)" in line
    macro["pca"]["auc_pr"] = 0.6
    assert verdict(macro).startswith("pca ranks anomalies best: AUC-PR 0.600; "
                                     "streamae-ensemble 0.300 (0.50x)")
    assert "no baseline ran" in verdict({"streamae-lstm": {"auc_pr": 0.1}})


def test_report_html_has_readable_columns_and_no_single_channel_attribution(tmp_path, capsys):
    data = tmp_path / "one.csv.gz"
    assert main(["synth", "--out", str(data), "--keys", "1", "--channels", "1", "--points",
                 "600", "--clean-head", "300"]) == 0
    out = tmp_path / "run"
    assert main(["backtest", "--train-head", "0.5", "--input", str(data), "--out", str(out),
                 "--baselines", "pca", *SMALL]) == 0
    html = (out / "report.html").read_text()
    assert "class=verdict" in html and ">composite F1</th>" in html
    assert "alarm_time_share" not in html.split("Resolved configuration")[0]
    assert "1 key," in html and "top channels" not in html


def test_options_that_name_a_config_field_set_it_beneath_any_set(monkeypatch):
    from streamae.cli import build_parser, config_from_args

    monkeypatch.setenv("STREAMAE_BOOTSTRAP_SERVERS", "env-host:9092")
    args = build_parser().parse_args(
        ["run", "--input-topic", "a", "--input-topic", "b", "--group-id", "flag",
         "--set", "daemon.group_id=wins", "--state-dir", "/tmp/s"])
    config = config_from_args(args)
    assert config.kafka.bootstrap_servers == "env-host:9092"
    assert config.input.topics == ["a", "b"] and config.daemon.group_id == "wins"
    assert config.daemon.state_dir == "/tmp/s"
    fine = build_parser().parse_args(["finetune", "--from", "m", "--input", "x.csv",
                                      "--out", "o", "--lr", "0.01"])
    tuned = config_from_args(fine)
    assert tuned.updater.finetune.lr == 0.01 and tuned.updater.finetune.freeze_encoder is False
