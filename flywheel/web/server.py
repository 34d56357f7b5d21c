"""Running the console: the review feed's reader thread and Werkzeug's threaded HTTP server
(enough for the handful of people one console serves; each request is short), until stopped."""
import threading
from contextlib import contextmanager

from werkzeug.serving import BaseWSGIServer, make_server

from flywheel.config import Config
from flywheel.errors import BadInput
from flywheel.processors.models import ModelRegistry
from flywheel.processors.monitor.settings import MonitorSettings
from flywheel.processors.worker.settings import WorkerSettings
from flywheel.web.app import Budget, Console, ConsoleMetrics, create_app
from flywheel.web.approvals import Approvals
from flywheel.web.feed import ReviewFeed
from flywheel.web.overview import OverviewSource
from flywheel.web.queue import ReviewQueue
from flywheel.web.security import check_bind
from flywheel.web.settings import ConsoleSettings
from flywheel.wiring import feature_store_for, schema_registry

HOUR_MS = 3_600_000


class PortTaken(BadInput):
    """The console's address is in use or not this machine's."""


@contextmanager
def running_console(config: Config, settings: ConsoleSettings, stop: threading.Event,
                    metrics: ConsoleMetrics | None = None):
    """The console serving on settings.host:port; yields the server (its port is the real one when
    settings.port asked for any)."""
    check_bind(settings.host, settings.token)
    worker = config.section(WorkerSettings, "worker")
    psi = config.section(MonitorSettings, "monitor").psi_threshold
    with feature_store_for(config) as store:
        queue = ReviewQueue(int(settings.lease_seconds * 1000))
        feed = ReviewFeed(config.kafka, schema_registry(config), config.data_dir, queue, stop).start()
        overview = OverviewSource(store, config.data_dir, int(settings.lookback_hours * HOUR_MS), psi)
        # A registry client of its own: the feed's thread uses the other, and the embedded
        # registry's SQLite connection takes one transaction at a time.
        models = ModelRegistry(config.kafka, schema_registry(config), config.data_dir, actor="console")
        app = create_app(Console(settings, queue, feed, overview, Budget(worker.review_share, worker.review_burst),
                                 metrics or ConsoleMetrics(), Approvals(models)))
        server = _server(settings.host, settings.port, app)
        thread = threading.Thread(target=server.serve_forever, name="console-http", daemon=True)
        thread.start()
        try:
            yield server
        finally:
            server.shutdown()
            stop.set()
            feed.join()
            models.close()


def _server(host: str, port: int, app) -> BaseWSGIServer:
    try:
        return make_server(host, port, app, threaded=True)
    except OSError as e:
        raise PortTaken(f"the console cannot listen on {host}:{port} ({e.strerror or e}): choose another "
                        f"with --port or [console] port") from None
