"""`flywheel report --html FILE`: a static report of what the flywheel did, from the store (and
from the topics while a stack runs)."""
import re
import time
from datetime import datetime, timezone
from pathlib import Path

from feature_store import StoreSettings, open_store
from processors.monitor.process import MonitorSettings

from flywheel.console import err
from flywheel.views import html
from flywheel.views.gather import report_data

UNITS_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


class BadTime(ValueError):
    pass


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
    p.add_argument("--since", metavar="WHEN", help="start of the time range: 30m, 6h, 7d ago, an ISO time "
                   "(UTC unless it says otherwise) or epoch ms (default: the model's first registration)")
    p.set_defaults(handler=run)


def run(args, config) -> int:
    since = parse_since(args.since, int(time.time() * 1000)) if args.since else None
    with open_store(config.section(StoreSettings, "store"), config.data_dir) as store:
        data = report_data(config, store, args.model, since)
    page = html.render(data, config.section(MonitorSettings, "monitor").psi_threshold)
    out = Path(args.html)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    err.print(f"wrote {out} ({len(page) / 1024:.0f} KiB): {', '.join(v.history.model for v in data.models)}")
    return 0


def parse_since(text: str, now_ms: int) -> int:
    text = text.strip()
    relative = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd])", text)
    if relative:
        return now_ms - int(float(relative.group(1)) * UNITS_MS[relative.group(2)])
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadTime(f"--since {text!r} is not a duration (30m, 6h, 7d), an ISO time or epoch ms") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)
