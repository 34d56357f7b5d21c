"""`flywheel status`: the live view of a running stack (`--once`: one frame, then exit)."""
import os
import time

from rich.console import Console
from rich.live import Live

from flywheel.commands._since import HELP as SINCE_HELP
from flywheel.commands._since import parse_since
from flywheel.console import err
from flywheel.views import terminal
from flywheel.views.live import StatusSession
from flywheel.views.stackfile import require_stack
from flywheel.wiring import feature_store_for

PLAIN_WIDTH = 120      # columns of a frame printed to a pipe or file (unless COLUMNS says)


def register(sub) -> None:
    p = sub.add_parser("status", help="live view of the running stack (throughput, lag, latency, accuracy, drift, "
                                      "events)",
                       description="Watch the stack `flywheel up` runs on this data dir: every process and its "
                                   "consumer lag, requests in and predictions out per second, latency p50/p99, live "
                                   "accuracy per model version over the monitor's windows, the most drifted "
                                   "features and the timeline of events (drift flagged, retrain requested, "
                                   "candidate accepted or rejected, canary, promoted, rolled back). Ctrl-C quits.")
    p.add_argument("--once", action="store_true", help="print one frame and exit (for scripts)")
    p.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                   help="seconds between frames, and between the two scrapes behind --once's rates (default 1)")
    p.add_argument("--since", default="1h", metavar="WHEN",
                   help=f"how far back the accuracy series and the timeline go: {SINCE_HELP} (default 1h)")
    p.set_defaults(handler=run)


def run(args, config) -> int:
    stack = require_stack(config.data_dir)
    now = int(time.time() * 1000)
    lookback = now - parse_since(args.since, now)
    with feature_store_for(config) as store:
        session = StatusSession(config.data_dir, store, stack, lookback)
        if args.once:
            time.sleep(args.interval)
            console = Console()
            if not console.is_terminal and not os.environ.get("COLUMNS"):
                console = Console(width=PLAIN_WIDTH)
            console.print(terminal.render(session.frame()))
            return 0
        return _watch(session, args.interval)


def _watch(session: StatusSession, interval: float) -> int:
    console = Console()
    with Live(terminal.fitted(session.frame(), console), console=console, refresh_per_second=4,
              screen=False) as live:
        try:
            while True:
                time.sleep(interval)
                if not session.running():
                    err.print("[yellow]the stack stopped[/]")
                    return 0
                live.update(terminal.fitted(session.frame(), console))
        except KeyboardInterrupt:        # Ctrl-C is how one leaves the view
            return 0
