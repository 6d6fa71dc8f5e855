"""``pop3 serve --metrics HOST:PORT``: Prometheus metrics of the sessions, from the log records.

The servers log each login attempt and each session's end with its event object
(``record.pop3_event``: a ``LoginAttempt`` or a ``SessionEnd``, docs/logging.md); a
logging handler counts them into ``prometheus_client`` metrics, served over HTTP by
``prometheus_client.start_http_server``. Nothing of this is in the core or the bindings:
the optional extra ``metrics`` (``pip install 'pop3-sansio[metrics]'``) brings
``prometheus-client``, imported only when ``--metrics`` is given.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pop3_sansio.server import LoginAttempt, SessionEnd

from ._errors import CliError

if TYPE_CHECKING:  # pragma: no cover
    from prometheus_client import CollectorRegistry

__all__ = ["MetricsHandler", "serving_metrics"]

SERVER_LOGGER = "pop3.server"


class MetricsHandler(logging.Handler):
    """Counts the ``pop3.server`` records' events into metrics of ``registry``.

    ``pop3_logins_total{method, result}`` (result: ``ok``, ``failed``,
    ``in-use``, ``unavailable``), ``pop3_sessions_total{reason}`` (the reason up
    to its first ``:``, so that ``connection error: X`` is one series),
    ``pop3_session_duration_seconds``, ``pop3_received_octets_total``,
    ``pop3_sent_octets_total``, ``pop3_retrieved_messages_total``,
    ``pop3_retrieved_octets_total``, ``pop3_deleted_messages_total``.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        from prometheus_client import Counter, Histogram

        super().__init__()
        self.logins = Counter(
            "pop3_logins", "Login attempts.", ["method", "result"], registry=registry
        )
        self.sessions = Counter(
            "pop3_sessions", "Sessions ended, by reason.", ["reason"], registry=registry
        )
        self.duration = Histogram(
            "pop3_session_duration_seconds",
            "How long sessions lasted.",
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600, 1800),
            registry=registry,
        )
        self.received = Counter(
            "pop3_received_octets", "Octets received from clients.", registry=registry
        )
        self.sent = Counter("pop3_sent_octets", "Octets written to clients.", registry=registry)
        self.retrieved = Counter(
            "pop3_retrieved_messages", "Messages sent whole by RETR.", registry=registry
        )
        self.retrieved_octets = Counter(
            "pop3_retrieved_octets",
            "Octets of the messages RETR sent, as listed.",
            registry=registry,
        )
        self.deleted = Counter(
            "pop3_deleted_messages", "Messages removed at QUIT.", registry=registry
        )

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._count(getattr(record, "pop3_event", None))
        except Exception:  # a handler must not fail the session that logged
            self.handleError(record)

    def _count(self, event: Any) -> None:
        if isinstance(event, LoginAttempt):
            self.logins.labels(method=event.method, result=event.result).inc()
        elif isinstance(event, SessionEnd):
            self.sessions.labels(reason=event.reason.partition(":")[0]).inc()
            if event.duration is not None:
                self.duration.observe(event.duration)
            self.received.inc(event.octets_in)
            self.sent.inc(event.octets_out)
            self.retrieved.inc(event.retrieved)
            self.retrieved_octets.inc(event.retrieved_octets)
            self.deleted.inc(event.removed)


@contextlib.contextmanager
def serving_metrics(host: str, port: int) -> Iterator[tuple[str, int]]:
    """Serve the metrics on ``host``:``port`` while the block runs; yield the address.

    The handler sees the ``pop3.server`` records at INFO whatever ``-q`` says:
    the logger is opened to INFO for the block, which does not change what the
    log shows (its own handler keeps its level).
    """
    try:
        from prometheus_client import CollectorRegistry, start_http_server
    except ModuleNotFoundError:
        raise CliError(
            "--metrics needs prometheus-client: pip install 'pop3-sansio[metrics]'"
        ) from None
    registry = CollectorRegistry()
    handler = MetricsHandler(registry)
    try:
        server, thread = start_http_server(port, host, registry)
    except OSError as exc:
        raise CliError(f"cannot serve the metrics on {host}:{port}: {exc.strerror}") from None
    logger = logging.getLogger(SERVER_LOGGER)
    level = logger.level
    if not logger.isEnabledFor(logging.INFO):
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield str(server.server_address[0]), int(server.server_address[1])
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        server.shutdown()
        server.server_close()
        thread.join()
