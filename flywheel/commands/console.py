"""`flywheel console`: the web console (the loop at a glance, the review queue) against the cluster
and data dir the configuration names; `flywheel up` runs it as one of its processes."""
from flywheel.console import err
from flywheel.stack import ProcessSpec
from flywheel.web.app import ConsoleMetrics
from flywheel.web.security import check_bind
from flywheel.web.server import running_console
from flywheel.web.settings import ConsoleSettings
from flywheel.wiring import start_processor


def register(sub) -> None:
    p = sub.add_parser("console", help="serve the web console: overview, review queue, approvals (runs until stopped)",
                       description="Serve the web console: per model its versions and roles, live metrics, drift, "
                                   "data quality, the timeline and the processes, refreshed by itself; and the "
                                   "review queue, where each verdict becomes a label (source review); and the "
                                   "canaries waiting for a person's approval. Loopback "
                                   "only unless a token is set. Settings: [console] or FLYWHEEL_CONSOLE_<FIELD>.")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1; another needs [console] token_file)")
    p.add_argument("--port", type=int, metavar="N", help="port to listen on (default 8470)")
    p.set_defaults(handler=run)


def run(args, config) -> int:
    flags = {k: getattr(args, k) for k in ("host", "port") if getattr(args, k) is not None}
    settings = config.section(ConsoleSettings, "console", **flags)
    check_bind(settings.host, settings.token)      # before the process takes signals and logging
    metrics = ConsoleMetrics()
    stop = start_processor(config, metrics.registry)
    with running_console(config, settings, stop, metrics) as server:
        err.print(f"console: {url(settings.host, server.server_port)}")
        stop.wait()
    return 0


def url(host: str, port: int) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def stack_processes(config) -> list[ProcessSpec]:
    settings = config.section(ConsoleSettings, "console")
    return [ProcessSpec("console", ["console"], port=settings.port)] if settings.enabled else []
