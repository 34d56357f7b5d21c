"""`flywheel up`: run the embedded stack in the foreground until Ctrl-C."""
import signal
import time

from rich.panel import Panel
from rich.table import Table

from flywheel.console import err
from flywheel.stack import Stack


def register(sub) -> None:
    p = sub.add_parser("up", help="run the embedded stack (broker, registry, topics, processors)",
                       description="Start the embedded broker (unless FLYWHEEL_BOOTSTRAP points at a "
                                   "cluster), register schemas, create topics and start every processor; "
                                   "stop everything on Ctrl-C. State stays in the data dir.")
    p.add_argument("--broker-port", type=int, metavar="PORT", help="embedded broker port (default 19092)")
    p.add_argument("--metrics-port", type=int, metavar="PORT",
                   help="first Prometheus port; processors take the next ones (default 9400)")
    p.add_argument("--model", action="append", default=[], metavar="NAME",
                   help="create the request and prediction topics of this model (repeatable)")
    p.add_argument("--for", dest="run_for", type=float, metavar="SECONDS",
                   help="stop by itself after this long (for scripts and tests)")
    p.set_defaults(handler=run)


def run(args, config) -> int:
    if args.broker_port:
        config.kafka.embedded_port = args.broker_port
    if args.metrics_port:
        config.metrics_port = args.metrics_port
    signal.signal(signal.SIGTERM, _raise_interrupt)
    stack = Stack(config, args.model)
    try:
        state = stack.start()
        err.print(_banner(config, state, embedded=stack.broker is not None))
        return _wait(stack, args.run_for)
    except KeyboardInterrupt:
        return 0
    finally:
        err.print("[dim]stopping…[/]")
        stack.stop()
        err.print("[green]stopped[/]; state kept in", str(config.data_dir))


def _wait(stack: Stack, run_for: float | None) -> int:
    deadline = time.monotonic() + run_for if run_for else None
    while deadline is None or time.monotonic() < deadline:
        for spec, code in stack.failed():
            err.print(f"[red]{spec.name} exited with code {code}[/]; see {stack.config.data_dir / (spec.name + '.log')}")
            return 1
        time.sleep(0.5)
    return 0


def _banner(config, state, embedded: bool) -> Panel:
    table = Table.grid(padding=(0, 2))
    table.add_row("bootstrap", f"{state.bootstrap} ({'embedded Tansu, memory only' if embedded else 'external'})")
    table.add_row("schema registry", config.kafka.schema_registry_url or f"embedded ({config.data_dir / 'schemas.sqlite'})")
    table.add_row("data dir", state.data_dir)
    for spec in state.processes:
        table.add_row(spec.name, f"pid {spec.pid}, metrics http://127.0.0.1:{spec.metrics_port}/metrics")
    if not state.processes:
        table.add_row("processors", "none registered yet")
    return Panel(table, title="[bold]flywheel up[/]", subtitle="Ctrl-C stops everything")


def _raise_interrupt(*_):
    raise KeyboardInterrupt
