"""`flywheel up`: run the embedded stack in the foreground until Ctrl-C; `--demo` adds a first
model, a traffic simulator with late labels and a concept drift, and story timings for every
processor, so the whole loop (drift, retrain, canary, promote) plays out on this machine."""
import argparse
import signal
import time
from dataclasses import replace

from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from flywheel.console import err
from flywheel.demo import DemoSettings
from flywheel.processors.models import EventLog, ModelRegistry
from flywheel.processors.simulator.bootstrap import ensure_model
from flywheel.processors.simulator.concept import Concept
from flywheel.schemas.registry import split_credentials
from flywheel.schemas.registry.rest import RegistryServer
from flywheel.stack import ProcessSpec, Stack, StackError
from flywheel.views import terminal
from flywheel.views.live import StatusSession
from flywheel.wiring import feature_store_for, schema_registry


def register(sub) -> None:
    p = sub.add_parser("up",
                       help="run the embedded stack (broker, registry, store, processors); --demo: the whole loop",
                       description="Start the embedded broker (unless FLYWHEEL_BOOTSTRAP points at a cluster), "
                                   "register schemas, create topics, migrate the store, restore model deployments "
                                   "and start every "
                                   "processor; stop everything on Ctrl-C. State stays in the data dir. With --demo, "
                                   "also train and register a first model, and run a traffic simulator whose "
                                   "concept drifts, so drift detection, retraining, canary and promotion play out.")
    p.add_argument("--broker-port", type=int, metavar="PORT", help="embedded broker port (default 19092)")
    p.add_argument("--registry-port", type=int, metavar="PORT",
                   help="port of the embedded schema registry's Confluent REST API (default 18081)")
    p.add_argument("--metrics-port", type=int, metavar="PORT",
                   help="first Prometheus port; processors take the next ones (default 9400)")
    p.add_argument("--model", action="append", default=[], metavar="NAME",
                   help="create the request and prediction topics of this model (repeatable)")
    p.add_argument("--workers", type=_count, metavar="N",
                   help="inference worker processes, one consumer group (default 1)")
    p.add_argument("--joiners", type=_count, metavar="N", help="joiner processes, one consumer group (default 1)")
    p.add_argument("--monitors", type=_count, metavar="N",
                   help="monitor processes, one consumer group; windows merged in the store (default 1)")
    p.add_argument("--triggers", type=_count, metavar="N",
                   help="trigger processes: one decides for each model, the others stand by (default 1)")
    p.add_argument("--rollouts", type=_count, metavar="N",
                   help="rollout processes: one decides for each model, the others stand by (default 1)")
    p.add_argument("--retrainers", type=_count, metavar="N",
                   help="retrainer processes, one consumer group: one trains, the others stand by (default 1)")
    p.add_argument("--for", dest="run_for", type=float, metavar="SECONDS",
                   help="stop by itself after this long (for scripts and tests)")
    demo = p.add_argument_group("demo")
    demo.add_argument("--demo", action="store_true", help="run the demo story")
    demo.add_argument("--speed", type=float, help="story seconds per real second (default 1; try 5)")
    demo.add_argument("--rate", type=float, help="simulated requests per second (default 100)")
    demo.add_argument("--drift-at", type=float, metavar="SECONDS",
                      help="story seconds until the concept drifts (default 300)")
    p.set_defaults(handler=run)


def run(args, config) -> int:
    if args.broker_port:
        config.kafka.embedded_port = args.broker_port
    if args.metrics_port:
        config.metrics_port = args.metrics_port
    if args.registry_port:
        config.kafka.embedded_registry_port = args.registry_port
    # Both stop the stack, SIGINT too when it was started with SIGINT ignored (a background job
    # of a script), where Python would leave it ignored and Ctrl-C or a test's SIGINT do nothing.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _raise_interrupt)
    config = _with_instances(config, args)
    demo = _demo_settings(args, config) if args.demo else None
    stack = _stack(config, args.model, demo)
    try:
        stack.start_backbone()
    except BaseException:        # e.g. the data dir is taken, a port is busy: the one line says it
        stack.stop()
        raise
    try:
        if demo:
            _bootstrap(config, demo)
        state = stack.start_processes()
        err.print(_banner(config, state, stack.broker is not None, stack.registry_server, demo))
        if err.is_terminal:
            return _watch(stack, state, config, args.run_for)
        return _wait(stack, args.run_for)
    except KeyboardInterrupt:
        return 0
    finally:
        err.print("[dim]stopping…[/]")
        stack.stop()
        err.print("[green]stopped[/]; state kept in", str(config.data_dir))


def _with_instances(config, args):
    """--workers/--joiners/--monitors/--triggers/--rollouts/--retrainers N as the `instances` of
    those commands' sections, which their stack_processes read."""
    counts = {"WORKER": args.workers, "JOINER": args.joiners, "MONITOR": args.monitors,
              "TRIGGER": args.triggers, "ROLLOUT": args.rollouts, "RETRAINER": args.retrainers}
    env = {f"FLYWHEEL_{name}_INSTANCES": str(n) for name, n in counts.items() if n is not None}
    return replace(config, env={**config.env, **env}) if env else config


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of processes (1 or more)")
    return int(text)


def _demo_settings(args, config) -> DemoSettings:
    flags = {k: getattr(args, k) for k in ("speed", "rate", "drift_at") if getattr(args, k) is not None}
    demo = config.section(DemoSettings, "demo", **flags)
    return demo.resumed(EventLog(config.data_dir).events(demo.model))


def _stack(config, models: list[str], demo: DemoSettings | None) -> Stack:
    if demo is None:
        return Stack(config, models)
    return Stack(config, [*models, demo.model], extra=[ProcessSpec("simulator", ["simulate"])], extra_env=demo.env())


def _bootstrap(config, demo: DemoSettings) -> None:
    with feature_store_for(config) as store:
        models = ModelRegistry(config.kafka, schema_registry(config), config.data_dir, actor="demo")
        try:
            if ensure_model(models, store, demo.model, Concept()):
                err.print(f"demo: trained and registered {demo.model} v1")
        finally:
            models.close()


def _wait(stack: Stack, run_for: float | None, tick=lambda: time.sleep(0.5)) -> int:
    """Supervise until the time is up; 1 when the stack gave up on a crash loop."""
    deadline = time.monotonic() + run_for if run_for else None
    while deadline is None or time.monotonic() < deadline:
        try:
            notes = stack.supervise()
        except StackError as e:
            err.print(f"[red]flywheel up: {escape(str(e))}[/]", soft_wrap=True)   # a log line may say [monitor]
            return 1
        for note in notes:
            err.print(f"[yellow]{escape(note)}[/]", soft_wrap=True)
        tick()
    return 0


def _watch(stack: Stack, state, config, run_for: float | None) -> int:
    """The live view (the same as `flywheel status`), redrawn every second, fitted to the terminal."""
    with feature_store_for(config) as store:
        session = StatusSession(config.data_dir, store, state, lookback_ms=3_600_000)
        with Live(terminal.fitted(session.frame(), err), console=err, refresh_per_second=2) as live:
            def redraw():
                time.sleep(1.0)
                live.update(terminal.fitted(session.frame(), err))
            return _wait(stack, run_for, redraw)


def _banner(config, state, embedded: bool, registry_server: RegistryServer | None,
            demo: DemoSettings | None) -> Panel:
    table = Table.grid(padding=(0, 2))
    table.add_row("bootstrap", f"{state.bootstrap} ({'embedded Tansu, memory only' if embedded else 'external'})")
    table.add_row("schema registry", split_credentials(config.kafka.schema_registry_url)[0] or
                  f"{registry_server.url} (embedded, Confluent REST API over {config.data_dir / 'schemas.sqlite'})")
    table.add_row("data dir", state.data_dir)
    if state.restored_models:
        table.add_row("restored", ", ".join(state.restored_models))
    for spec in state.processes:
        table.add_row(spec.name, f"pid {spec.pid}, metrics http://127.0.0.1:{spec.metrics_port}/metrics")
    if state.metrics_port:
        table.add_row("supervisor", f"pid {state.pid}, restarts http://127.0.0.1:{state.metrics_port}/metrics")
    if demo:
        table.add_row("demo", f"{demo.model}: {demo.rate:g} req/s, speed {demo.speed:g}x, {_drift_note(demo)}")
    return Panel(table, title="[bold]flywheel up[/]", subtitle="Ctrl-C stops everything")


def _drift_note(demo: DemoSettings) -> str:
    if demo.drift_at < 0:
        return "no drift"
    if demo.drift_at == 0:
        return "continuing after the drift (a retrained version exists)"
    return f"drift at {demo.drift_at:g} story s (in {demo.drift_at / demo.speed:.0f}s)"


def _raise_interrupt(*_):
    raise KeyboardInterrupt
