"""`flywheel report --html FILE`: a static report of what the flywheel did, from the store and the
registry's event log (and the dead-letter topic while a stack runs)."""
import time
from pathlib import Path

from flywheel.commands._since import HELP as SINCE_HELP
from flywheel.commands._since import parse_since
from flywheel.console import err
from flywheel.errors import user_path
from flywheel.model_names import check_registered
from flywheel.wiring import feature_store_for


def register(sub) -> None:
    p = sub.add_parser("report", help="write a static HTML report (plots of accuracy, drift, latency, dead letters)",
                       description="Write one self-contained HTML file: per model, live performance by version with "
                                   "the timeline's events marked, drift per feature, latency of labelled requests, "
                                   "the timeline (drift flagged, retrains, canary, promoted, rolled back, rejected) "
                                   "and dead letters by reason. Works after the stack has stopped (store-backed "
                                   "parts); parts only the running stack knows say so when missing.")
    p.add_argument("--html", required=True, metavar="FILE", help="where to write the report")
    p.add_argument("-m", "--model", action="append", default=[], metavar="NAME",
                   help="report on this model (repeatable; default: every registered model)")
    p.add_argument("--since", metavar="WHEN", help=f"start of the time range: {SINCE_HELP} "
                   "(default: the model's first registration)")
    p.set_defaults(handler=run)


def run(args, config) -> int:
    # Imported here: matplotlib and the monitor's statistics take seconds to import, and every
    # other command would pay for them (the CLI imports each command module to list it).
    from flywheel.processors.monitor.settings import MonitorSettings
    from flywheel.views import html
    from flywheel.views.gather import report_data

    check_registered(config, args.model)
    since = parse_since(args.since, int(time.time() * 1000)) if args.since else None
    with feature_store_for(config) as store:
        data = report_data(config, store, args.model, since)
    page = html.render(data, config.section(MonitorSettings, "monitor").psi_threshold)
    out = Path(args.html)
    with user_path(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page)
    err.print(f"wrote {out} ({len(page) / 1024:.0f} KiB): {', '.join(v.history.model for v in data.models)}")
    return 0
