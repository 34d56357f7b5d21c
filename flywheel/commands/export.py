"""`flywheel export -m MODEL`: what the store and the event log hold about a model over a time
range, as JSON lines for a notebook (`pandas.read_json(path, lines=True)`): one object a line with
its `kind` (window, feedback, retrain, event) and the record's own fields, as documented in
docs/guide/observing.md. Read from the store and the data dir, so it works without a broker."""
import sys
import time

from flywheel.commands._since import HELP as SINCE_HELP
from flywheel.commands._since import parse_since
from flywheel.console import err, print_json_line
from flywheel.errors import open_user_file
from flywheel.feature_store import FeatureStore
from flywheel.model_names import check_registered
from flywheel.processors.models.history import EventLog
from flywheel.wiring import feature_store_for

KINDS = ("window", "feedback", "retrain", "event")


def register(sub) -> None:
    p = sub.add_parser("export", help="a model's windows, feedback, retrains and events as JSON lines",
                       description="One JSON object a line, each with `record` (its kind) and the record's "
                                   "fields (times in ms since the epoch): monitor windows of every version, "
                                   "labelled feedback, retrain requests and their outcome, and the model's "
                                   "events (registered, canary, promoted, ...). Works after the stack has stopped.")
    p.add_argument("-m", "--model", required=True, help="the model to export")
    p.add_argument("--since", metavar="WHEN", default="1d", help=f"start of the time range: {SINCE_HELP} "
                   "(default: 1d)")
    p.add_argument("--until", metavar="WHEN", help="end of the time range, in the same forms (default: now)")
    p.add_argument("--kind", action="append", choices=KINDS, metavar="KIND",
                   help=f"only these kinds ({', '.join(KINDS)}; repeatable; default: all)")
    p.add_argument("--out", metavar="FILE", help="write here instead of standard output")
    p.set_defaults(handler=run)


def run(args, config) -> int:
    check_registered(config, args.model)
    now = int(time.time() * 1000)
    start, end = parse_since(args.since, now), parse_since(args.until, now) if args.until else now
    kinds = args.kind or list(KINDS)
    events = [e for e in EventLog(config.data_dir).events(args.model) if start <= e.get("at", 0) < end]
    with feature_store_for(config) as store:
        lines = records(store, args.model, start, end, kinds, events)
        if args.out:
            with open_user_file(args.out, "w") as out:
                count = _write(lines, out)
            err.print(f"wrote {count:,} records of {args.model} to {args.out}")
        else:
            _write(lines, sys.stdout)
    return 0


def records(store: FeatureStore, model: str, start: int, end: int, kinds: list[str], events: list[dict]):
    """The model's records of those kinds in [start, end), each as a dict with its kind as `record`."""
    versions = sorted({e["version"] for e in events if e.get("version")} | set(store.feedback_versions(model)))
    if "window" in kinds:
        for version in versions:
            yield from ({"record": "window", **w.to_dict()} for w in store.metrics(model, version, start, end))
    if "feedback" in kinds:
        yield from ({"record": "feedback", **f.to_dict()} for f in store.feedback(model, start, end))
    if "retrain" in kinds:
        yield from ({"record": "retrain", **r.to_dict()} for r in store.retrains(model)
                    if start <= r.requested_at < end)
    if "event" in kinds:
        yield from ({"record": "event", **e} for e in events)


def _write(lines, out) -> int:
    count = 0
    for line in lines:
        print_json_line(line, out)
        count += 1
    return count
