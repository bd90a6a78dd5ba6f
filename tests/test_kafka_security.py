"""TLS and SASL on a real broker: a second single-node broker with a SASL_SSL listener
(certificates made here with openssl, SCRAM-SHA-512 and PLAIN users). The daemon scores
over it with secrets from the environment, and fails at once with the cause on wrong
credentials or an untrusted certificate."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import subprocess

import pytest

from streamae.broker import DevBroker, free_port
from streamae.config import KafkaConfig
from streamae.daemon.runner import Daemon
from streamae.demo import frame_messages
from kafka_harness import KafkaHarness
from streamae.errors import KafkaAccessError
from daemon_helpers import daemon_config, events_of, same_events
from test_daemon_kafka import (  # noqa: F401  (module fixtures shared with the daemon tests)
    InProcess, expected, live, model)

pytestmark = pytest.mark.kafka
USERS = {"SCRAM-SHA-512": ("alice", "alice-secret"), "PLAIN": ("bob", "bob-secret")}


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(folder, name: str) -> tuple[str, str]:
    key, crt = folder / f"{name}.key", folder / f"{name}.crt"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
            str(crt), "-days", "2", "-subj", f"/CN={name}")
    return str(key), str(crt)


@pytest.fixture(scope="module")
def secure(request, tmp_path_factory):
    """A broker with PLAINTEXT (for the harness) and SASL_SSL (for the daemon) listeners;
    returns (plaintext bootstrap, SASL_SSL bootstrap, CA file, a foreign CA file)."""
    if request.config.getoption("--bootstrap-servers"):
        pytest.skip("needs the suite's own broker: it configures TLS and SASL users")
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: it makes the test certificates")
    tls = tmp_path_factory.mktemp("tls")
    ca_key, ca = make_ca(tls, "streamae-test-ca")
    _, foreign = make_ca(tls, "someone-else")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tls / "server.key"),
            "-out", str(tls / "server.csr"), "-subj", "/CN=127.0.0.1")
    (tls / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", str(tls / "server.csr"), "-CA", ca, "-CAkey", ca_key,
            "-CAcreateserial", "-out", str(tls / "server.crt"), "-days", "2",
            "-extfile", str(tls / "san.ext"))
    openssl("pkcs8", "-topk8", "-nocrypt", "-in", str(tls / "server.key"),
            "-out", str(tls / "server.pk8"))
    (tls / "server.pem").write_text((tls / "server.pk8").read_text()
                                    + (tls / "server.crt").read_text())
    port, sasl_port, controller = free_port(), free_port(), free_port()
    bob, bob_pw = USERS["PLAIN"]
    alice, alice_pw = USERS["SCRAM-SHA-512"]
    broker = DevBroker(port, tmp_path_factory.mktemp("kafka-secure"), controller, extra={
        "listeners": f"PLAINTEXT://127.0.0.1:{port},SASL_SSL://127.0.0.1:{sasl_port},"
                     f"CONTROLLER://127.0.0.1:{controller}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port},"
                                f"SASL_SSL://127.0.0.1:{sasl_port}",
        "listener.security.protocol.map":
            "PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512,PLAIN",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "listener.name.sasl_ssl.plain.sasl.jaas.config":
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'user_{bob}="{bob_pw}";',
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(tls / "server.pem"),
    }, format_args=["--add-scram", f"SCRAM-SHA-512=[name={alice},password={alice_pw}]"])
    broker.start()
    try:
        yield broker.bootstrap_servers, f"127.0.0.1:{sasl_port}", ca, foreign
    finally:
        broker.close()


def sasl_ssl(bootstrap: str, cafile: str, mechanism: str, password: str) -> KafkaConfig:
    user, _ = USERS[mechanism]
    return KafkaConfig(bootstrap_servers=bootstrap, security_protocol="SASL_SSL", client={
        "ssl_cafile": cafile, "sasl_mechanism": mechanism, "sasl_plain_username": user,
        "sasl_plain_password": password})


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "PLAIN"])
def test_daemon_scores_over_tls_and_sasl_with_the_secret_from_the_environment(
        secure, mechanism, model, live, expected, tmp_path, monkeypatch, caplog):
    plaintext, bootstrap, ca, _ = secure
    harness = KafkaHarness(plaintext, None)
    detector, _, config = model
    cfg = daemon_config(config, harness, tmp_path)
    _, secret = USERS[mechanism]
    monkeypatch.setenv("STREAMAE_TEST_KAFKA_PASSWORD", secret)
    cfg = dataclasses.replace(cfg, kafka=sasl_ssl(bootstrap, ca, mechanism,
                                                  "${STREAMAE_TEST_KAFKA_PASSWORD}"))
    harness.produce(cfg.input.topics[0], frame_messages(live))
    caplog.set_level(logging.DEBUG, logger="streamae")
    run = InProcess(cfg, detector)
    run.wait_consumed(len(live))
    run.stop()
    same_events(events_of(harness, cfg.daemon.output_topic), expected)
    assert secret not in caplog.text


@pytest.mark.parametrize("problem", ["wrong password", "untrusted certificate"])
def test_daemon_fails_at_start_with_the_cause(secure, problem, model, tmp_path):
    plaintext, bootstrap, ca, foreign = secure
    detector, _, config = model
    cfg = daemon_config(config, KafkaHarness(plaintext, None), tmp_path)
    if problem == "wrong password":
        kafka, expect = sasl_ssl(bootstrap, ca, "SCRAM-SHA-512", "nope"), \
            "refused the SASL login of user 'alice' .*sasl_plain_password"
    else:
        kafka, expect = sasl_ssl(bootstrap, foreign, "SCRAM-SHA-512", "alice-secret"), \
            "TLS certificate .* is not trusted .*ssl_cafile"
    daemon = Daemon(dataclasses.replace(cfg, kafka=kafka), detector)
    with pytest.raises(KafkaAccessError, match=expect):
        daemon.run()
