"""A real single-node Kafka broker (KRaft) on 127.0.0.1, for newcomers and for the tests.

The broker jars come from Maven Central through the bundled ``pom.xml`` and are cached per
Kafka version under ``$STREAMAE_CACHE`` (default ``~/.cache/streamae``). Java 17+ and Maven
must be on the PATH. ``streamae dev-broker`` and the pytest fixture both use
:class:`DevBroker`.
"""

from __future__ import annotations

import base64
import fcntl
import logging
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from streamae.errors import StreamaeError

log = logging.getLogger(__name__)
POM = Path(__file__).with_name("pom.xml")

LOG4J = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.file.ref = file
"""


class BrokerError(StreamaeError):
    """The development broker could not be fetched, formatted or started."""


def kafka_version() -> str:
    """The Kafka release the bundled pom.xml pins."""
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", POM.read_text())
    assert match, "pom.xml lacks <kafka.version>"
    return match.group(1)


def cache_root() -> Path:
    return Path(os.environ.get("STREAMAE_CACHE", Path.home() / ".cache" / "streamae"))


def fetch_jars(quiet: bool = True) -> Path:
    """Download (once) the broker jars and return the folder holding them."""
    home = cache_root() / f"kafka-{kafka_version()}"
    lib, done = home / "lib", home / ".complete"
    if done.exists():
        return lib
    if not shutil.which("mvn"):
        raise BrokerError("Maven (mvn) is needed once to fetch the Kafka broker jars; install "
                          f"it or put the jars of kafka_2.13 {kafka_version()} in {lib}")
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be fetching the same release
        if done.exists():
            return lib
        log.info("fetching Kafka %s broker jars into %s", kafka_version(), lib)
        shutil.rmtree(lib, ignore_errors=True)
        cmd = ["mvn", "-B", "-f", str(POM), "dependency:copy-dependencies",
               f"-DoutputDirectory={lib}", "-DincludeScope=runtime"]
        result = subprocess.run(cmd + (["-q"] if quiet else []), capture_output=quiet, text=True)
        if result.returncode != 0:
            raise BrokerError(f"mvn could not fetch the Kafka jars:\n{result.stdout}{result.stderr}")
        done.touch()
    return lib


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise BrokerError("java (17 or newer) is needed to run the Kafka broker")
    return java


class DevBroker:
    """One Kafka process acting as broker and controller on loopback.

    ``start()`` formats the storage on first use, launches the JVM and returns once a client
    can reach the broker; ``stop()`` shuts it down cleanly (SIGTERM, then SIGKILL after a
    timeout). Restarting with the same ``data_dir`` keeps topics and offsets.
    """

    def __init__(self, port: int = 9092, data_dir: str | Path | None = None,
                 controller_port: int | None = None, heap: str = "768m",
                 log_level: str = "INFO", extra: dict[str, str] | None = None,
                 format_args: list[str] | None = None) -> None:
        self.port = port
        self.controller_port = controller_port or free_port()
        self._tmp = None if data_dir else tempfile.TemporaryDirectory(prefix="streamae-kafka-")
        self.data_dir = Path(data_dir or self._tmp.name).resolve()
        self.heap, self.log_level, self.extra = heap, log_level, extra or {}
        self.format_args = format_args or []  # e.g. --add-scram for SCRAM users
        self.process: subprocess.Popen | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "broker.log"

    def properties(self) -> dict[str, str]:
        return {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},"
                         f"CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir / "logs"),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "message.max.bytes": str(1 << 20),
            **self.extra,
        }

    def start(self, timeout: float = 120.0) -> DevBroker:
        if self.process and self.process.poll() is None:
            return self
        lib = fetch_jars()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "server.properties"
        config.write_text("".join(f"{k}={v}\n" for k, v in self.properties().items()))
        (self.data_dir / "log4j2.properties").write_text(
            LOG4J.format(log=self.log_file, level=self.log_level))
        classpath = f"{lib}/*"
        java = [_java(), f"-Xmx{self.heap}", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
                "-cp", classpath]
        if not (self.data_dir / "logs" / "meta.properties").exists():
            cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            # "=" keeps an id that starts with "-" from reading as an option
            result = subprocess.run(java + ["kafka.tools.StorageTool", "format",
                                            f"--cluster-id={cluster}", f"--config={config}",
                                            *self.format_args],
                                    capture_output=True, text=True)
            if result.returncode != 0:
                raise BrokerError(f"formatting {self.data_dir} failed:\n{result.stdout}"
                                  f"{result.stderr}")
        with open(self.data_dir / "broker.out", "ab") as out:
            self.process = subprocess.Popen(java + ["kafka.Kafka", str(config)], stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        from kafka import KafkaAdminClient  # a client round trip proves the broker is serving

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(f"the broker exited with code {self.process.returncode}; "
                                  f"see {self.log_file} and {self.data_dir / 'broker.out'}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
                admin = KafkaAdminClient(bootstrap_servers=self.bootstrap_servers,
                                         request_timeout_ms=5000)
                try:
                    if admin.describe_cluster().get("brokers"):
                        return
                finally:
                    admin.close()
            except Exception:  # not up yet
                time.sleep(0.3)
        self.stop()
        raise BrokerError(f"the broker did not become ready in {timeout:.0f}s; see {self.log_file}")

    def stop(self, timeout: float = 30.0) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("broker did not stop in %.0fs; killing it", timeout)
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """Stop without a clean shutdown (SIGKILL), as a crash would."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> DevBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
