"""Prometheus metrics and the /metrics, /healthz, /readyz endpoints (localhost by default)."""

from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)


class DaemonMetrics:
    """Every figure the daemon exports, in its own registry."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.consumed = Counter("streamae_messages_consumed", "input messages read", ["topic"],
                                registry=r)
        self.points = Counter("streamae_points", "points by policy decision (ok, nan_filled, "
                              "gap, nan_dropped, late, duplicate)", ["status"], registry=r)
        self.events = Counter("streamae_events_produced", "anomaly events sent", ["status"],
                              registry=r)
        self.dead = Counter("streamae_dead_letters", "messages sent to the dead-letter topic",
                            ["kind"], registry=r)
        self.commits = Counter("streamae_commits", "offset commits with checkpoint", registry=r)
        self.commit_failures = Counter("streamae_commit_failures",
                                       "commits that failed and were retried", registry=r)
        self.lag = Gauge("streamae_consumer_lag", "messages between this daemon's position "
                         "and the partition's end (partitions it owns)",
                         ["topic", "partition"], registry=r)
        self.committed_lag = Gauge("streamae_committed_lag", "messages between the group's "
                                   "committed offset and the partition's end",
                                   ["topic", "partition"], registry=r)
        self.latency = Histogram("streamae_batch_seconds", "decode+score+send time per poll",
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5),
                                 registry=r)
        self.commit_seconds = Histogram("streamae_commit_seconds", "flush+checkpoint+commit",
                                        buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 5),
                                        registry=r)
        self.open_alarms = Gauge("streamae_open_alarms", "alarms open now", registry=r)
        self.keys = Gauge("streamae_keys", "keys (sensors) seen", registry=r)
        self.model = Gauge("streamae_model_info", "model in use", ["version"], registry=r)
        self.relearnt = Counter("streamae_thresholds_relearnt", "keys whose threshold "
                                "re-learnt on a new normal (in alarm for "
                                "updater.relearn.admit_after)", registry=r)
        self.rescaled = Counter("streamae_keys_rescaled", "keys given new scaling of their "
                                "moved channels (a recalibration that explained their alarm)",
                                registry=r)
        self.models_refused = Counter("streamae_models_refused",
                                      "announced models refused (checksum, layout)",
                                      registry=r)
        self.refused = Counter("streamae_signed_messages_refused", "model announcements "
                               "and control messages refused: unsigned or signature wrong",
                               ["topic"], registry=r)
        self.moves = Counter("streamae_partition_moves", "input partitions received (state "
                             "from: state_topic, checkpoint, none) or given up (out)",
                             ["direction", "state"], registry=r)
        self.ready = False
        self.heartbeat = time.monotonic()

    def beat(self) -> None:
        self.heartbeat = time.monotonic()

    def healthy(self, stale_after: float = 60.0) -> bool:
        return time.monotonic() - self.heartbeat < stale_after


def serve(metrics: DaemonMetrics, host: str, port: int) -> ThreadingHTTPServer:
    """Serve the endpoints from a daemon thread; returns the server (``shutdown()`` stops)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            path = self.path.split("?")[0]
            if path == "/metrics":
                self._reply(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok = metrics.healthy()
                self._reply(200 if ok else 503, b"ok\n" if ok else b"stalled\n")
            elif path == "/readyz":
                ok = metrics.ready and metrics.healthy()
                self._reply(200 if ok else 503, b"ready\n" if ok else b"not ready\n")
            else:
                self._reply(404, b"try /metrics, /healthz or /readyz\n")

        def _reply(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="streamae-http", daemon=True).start()
    log.info("serving /metrics /healthz /readyz on http://%s:%d", host, server.server_port)
    return server
