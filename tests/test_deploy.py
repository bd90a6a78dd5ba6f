"""deploy/ without Docker or a cluster: every file parses, Kubernetes objects validate
against the API schemas (kubernetes-validate ships them), and what the files name exists:
the commands and flags, the config, the files they copy or mount, the probe paths and the
metrics the dashboard and alert rules query."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from streamae.cli import build_parser
from streamae.config import load_config
from streamae.daemon.metrics import DaemonMetrics

DEPLOY = Path(__file__).parents[1] / "deploy"
ROOT = DEPLOY.parent


def documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def kustomize_resources() -> list[dict]:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    return [d for r in kustomization["resources"] for d in documents(DEPLOY / r)]


def daemon_container() -> dict:
    (daemon,) = [d for d in kustomize_resources() if d["kind"] == "StatefulSet"]
    (container,) = daemon["spec"]["template"]["spec"]["containers"]
    return container


def parses_as_cli(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert hasattr(args, "handler"), f"{argv} names no streamae command"


def test_every_yaml_and_json_file_parses():
    files = list(DEPLOY.rglob("*.yml")) + list(DEPLOY.rglob("*.yaml"))
    assert len(files) >= 8
    for path in files:
        assert documents(path), path
    for path in DEPLOY.rglob("*.json"):
        json.loads(path.read_text())


def test_deploy_config_is_valid_and_serves_probes_off_localhost():
    config = load_config(DEPLOY / "streamae.yaml")
    assert config.daemon.http_host == "0.0.0.0" and config.daemon.http_port == 9108
    assert config.daemon.model == "/models/current"


def test_kubernetes_objects_validate_against_the_api_schemas():
    kv = pytest.importorskip("kubernetes_validate")
    objects = kustomize_resources()
    assert {o["kind"] for o in objects} >= {"StatefulSet", "Service", "PodDisruptionBudget",
                                             "PersistentVolumeClaim", "Namespace"}
    for obj in objects:
        kv.validate(obj, "1.33.0", strict=True)


def test_updater_runs_the_updater_command_on_a_gpu_with_the_store_writable():
    (updater,) = [d for d in kustomize_resources() if d["kind"] == "Deployment"]
    assert updater["spec"]["replicas"] == 1
    (container,) = updater["spec"]["template"]["spec"]["containers"]
    parses_as_cli(container["args"])
    assert container["args"][0] == "updater"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    config = load_config(DEPLOY / "streamae.yaml")
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert config.updater.store.startswith(mounts["models"]["mountPath"])
    assert not mounts["models"].get("readOnly"), "the updater writes accepted versions"
    assert config.daemon.models_topic and config.daemon.state_topic
    assert not config.updater.enabled, "the scoring daemons only follow announcements"
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    service = compose["services"]["updater"]
    parses_as_cli(service["command"])
    assert service["command"][0] == "updater"
    assert not any(v.endswith(":ro") for v in service["volumes"] if v.startswith("./models"))


def test_kubernetes_daemon_names_real_commands_files_and_endpoints():
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (DEPLOY / resource).is_file()
    (generated,) = kustomization["configMapGenerator"]
    assert [(DEPLOY / f).is_file() for f in generated["files"]] == [True]
    container = daemon_container()
    parses_as_cli([a.replace("$(POD_NAME)", "streamae-0") for a in container["args"]])
    env = {e["name"] for e in container["env"]}
    assert "$(POD_NAME)" in " ".join(container["args"]) and "POD_NAME" in env
    config = load_config(DEPLOY / "streamae.yaml")
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["ports"][0]["containerPort"] == config.daemon.http_port
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert config.daemon.state_dir.startswith(mounts["state"])
    assert config.daemon.model.startswith(mounts["models"])


def test_compose_services_run_real_commands_with_distinct_instance_ids():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    daemons = {n: s for n, s in compose["services"].items() if n.startswith("streamae-")}
    assert len(daemons) == 3
    ids = set()
    for service in daemons.values():
        parses_as_cli(service["command"])
        ids.add(service["command"][-1])
        assert (ROOT / service["build"]["context"].replace("..", ".")
                / "deploy" / "Dockerfile").is_file()
    assert len(ids) == 3, "static membership needs one instance id per daemon"
    for mount in compose["services"]["prometheus"]["volumes"] + \
            compose["services"]["grafana"]["volumes"]:
        assert (DEPLOY / mount.split(":")[0]).is_file(), mount
    targets = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())[
        "scrape_configs"][0]["static_configs"][0]["targets"]
    assert sorted(t.split(":")[0] for t in targets) == sorted(daemons)


def test_dockerfile_copies_files_that_exist_and_runs_as_non_root():
    text = (DEPLOY / "Dockerfile").read_text()
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M):
        *sources, _ = line.split()
        for source in sources:
            assert (ROOT / source).exists(), source
    assert re.search(r"^USER 10001", text, re.M)
    cmd = json.loads(re.search(r"^CMD (.+)$", text, re.M).group(1))
    parses_as_cli(cmd)


def test_systemd_unit_runs_a_real_command_and_verifies():
    unit = (DEPLOY / "systemd" / "streamae@.service").read_text()
    exec_start = re.search(r"^ExecStart=(\S+) (.+)$", unit, re.M)
    assert exec_start.group(1).endswith("/streamae")
    parses_as_cli(exec_start.group(2).replace("%i", "plant").replace("%S", "/var/lib")
                  .replace("%H", "host").split())
    assert "MemoryDenyWriteExecute" not in unit.split("[Service]")[1].split("#")[0]
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    result = subprocess.run(["systemd-analyze", "verify",
                             str(DEPLOY / "systemd" / "streamae@.service")],
                            capture_output=True, text=True)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if line.strip() and "is not executable" not in line]
    assert problems == []


def test_dashboard_and_alert_rules_query_metrics_the_daemon_exports():
    suffixes = {"counter": ("_total",), "gauge": ("",),
                "histogram": ("_bucket", "_sum", "_count")}
    exported = {m.name + s for m in DaemonMetrics().registry.collect()
                for s in suffixes[m.type]}
    queries = [t["expr"] for p in json.loads(
        (DEPLOY / "grafana" / "streamae-dashboard.json").read_text())["panels"]
        for t in p["targets"]]
    rules = yaml.safe_load((DEPLOY / "prometheus-rules.yml").read_text())
    queries += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    used = {m for q in queries for m in re.findall(r"\bstreamae_\w+", q)}
    assert len(used) >= 8
    assert used <= exported, f"not exported: {sorted(used - exported)}"
