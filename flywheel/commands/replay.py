"""`flywheel replay`: re-drive a topic's history, re-drive dead letters after a fix, backtest a
model version on historical requests, list runs.

Every run has a run id (printed at the start). Run the same command again with `--run-id ID`
to resume an interrupted run: it continues where the checkpoint says, and records the
interrupted attempt already delivered are not sent twice. Checkpoints live in
<data dir>/replay.sqlite.
"""
import argparse
import json
import re
import time
import uuid
from datetime import UTC, datetime

from rich.table import Table

from flywheel.commands.subscribe import parse_time
from flywheel.console import err, print_json_line, progress
from flywheel.errors import NotFound, open_user_file
from flywheel.model_names import check_registered
from flywheel.processors.backtest import Backtest, BacktestPlan, BacktestReport
from flywheel.processors.backtest.history import store_replay
from flywheel.processors.models import ModelRegistry
from flywheel.schemas.features import FeatureSpec
from flywheel.streams.errors import BrokerUnavailable
from flywheel.streams.replay import Checkpoints, ReplayOptions, ReplayReport, TimeRange
from flywheel.streams.replay.deadletter import DeadLetterFilter, Validator, dead_letter_redrive
from flywheel.streams.replay.topic import topic_replay
from flywheel.streams.topics import TopicCatalog
from flywheel.wiring import feature_store_for, schema_registry

DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}

TIME_HELP = "ISO-8601 time (UTC if no zone), epoch milliseconds, or a duration ago such as 90m, 2h, 7d"


def register(sub) -> None:
    p = sub.add_parser(
        "replay", help="re-drive topic history or dead letters (resumable, rate-limited)",
        description="Replay records into Kafka, safely against a live system: every replayed record "
                    "carries the header flywheel-replay=<run id> (re-driven dead letters carry "
                    "flywheel-redrive=<run id>), keys, timestamps and headers are kept, and an "
                    "interrupted run resumes with --run-id without sending anything twice.",
        epilog="examples:\n"
               "  flywheel replay topic -m fraud --from 2h --to 1h --dry-run\n"
               "  flywheel replay topic -t fraud.requests --from 2026-11-20T10:00 --to-topic fraud.replay --rate 500\n"
               "  flywheel replay dead-letters --reason unseen_category --processor worker\n"
               "  flywheel replay store -m fraud --from 30d --to 29d --labels\n"
               "  flywheel replay topic -m fraud --from 2h --run-id replay-20261122-ab12   # resume\n"
               "  flywheel replay backtest -m fraud --candidate v7 --from 7d --json\n"
               "  flywheel replay runs",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = p.add_subparsers(dest="replay_kind", metavar="SOURCE")
    kinds.required = True

    t = kinds.add_parser("topic", help="a topic over a time range, into a topic",
                         description="Replay the records of SOURCE with FROM <= timestamp < TO, on every "
                                     "partition, into --to-topic (default: back into SOURCE). Records keep their "
                                     "partition when both topics have as many partitions. Records that are "
                                     "themselves replays are skipped unless --include-replayed.")
    source = t.add_mutually_exclusive_group(required=True)
    source.add_argument("-t", "--topic", help="source topic (full name, prefix included)")
    source.add_argument("-m", "--model", help="source: this model's request topic")
    _time_range(t, "range start", "range end, exclusive", required=True)
    t.add_argument("--to-topic", metavar="TOPIC", help="target topic (default: the source topic)")
    t.add_argument("--include-replayed", action="store_true", help="also replay records marked as replays")
    _common(t)
    t.set_defaults(handler=run_topic)

    d = kinds.add_parser("dead-letters", help="re-drive dead letters to their original topics",
                         description="Dead letters whose original payload now decodes (and passes the model's "
                                     "feature spec where one is known) go back to their original topic with their "
                                     "original key and headers; the rest stay dead as a new dead letter with the "
                                     "new reason and attempt + 1. Dead letters an earlier run handled are skipped "
                                     "unless --include-handled.")
    d.add_argument("--reason", action="append", default=[], metavar="REASON",
                   help="only dead letters with this reason (repeatable)")
    d.add_argument("--processor", action="append", default=[], metavar="NAME",
                   help="only those written by this processor (repeatable)")
    d.add_argument("--source-topic", action="append", default=[], metavar="TOPIC",
                   help="only those that came from this topic (repeatable)")
    _time_range(d, "failed at or after", "failed before", required=False)
    d.add_argument("--include-handled", action="store_true", help="also re-drive dead letters an earlier run handled")
    _common(d)
    d.set_defaults(handler=run_dead_letters)

    st = kinds.add_parser("store", help="the feedback store over a time range, into the request topic",
                          description="Re-publish a model's historical requests from the feedback store (rows "
                                      "labelled before the run starts, by event time FROM <= t < TO, one per request) "
                                      "to its request topic, or --to-topic; --labels also re-publishes their ground "
                                      "truth to the labels topic. For history the topics no longer hold. Rows that "
                                      "are themselves replays are skipped unless --include-replayed.")
    st.add_argument("-m", "--model", required=True, help="the model whose history to replay")
    _time_range(st, "event time from", "event time before", required=True)
    st.add_argument("--version", help="only requests this version answered (default: any)")
    st.add_argument("--labels", action="store_true", help="also re-publish the ground truth to the labels topic")
    st.add_argument("--to-topic", metavar="TOPIC", help="requests go here instead of the model's request topic")
    st.add_argument("--include-replayed", action="store_true", help="also replay rows that came from replays")
    _common(st)
    st.set_defaults(handler=run_store)

    b = kinds.add_parser("backtest", help="score a model version on historical requests against the store",
                         description="The candidate version predicts, in this process (never on the live "
                                     "prediction topic), on the requests the feedback store holds for the time "
                                     "range, through the worker's decode and ONNX code. Its answers are scored "
                                     "against the stored ground truth side by side with what production (the "
                                     "baseline version, default: live) served on the same requests: primary metric, "
                                     "every metric, per-slice differences, latency. Replayed traffic is left out.")
    b.add_argument("-m", "--model", required=True, help="the model")
    b.add_argument("--candidate", required=True, metavar="VERSION", help="the version to backtest")
    b.add_argument("--baseline", metavar="VERSION", help="compare with this version (default: the live one)")
    _time_range(b, "event time from", "event time before", required=True)
    b.add_argument("--slice-by", action="append", metavar="FEATURE",
                   help="categorical feature to slice by (repeatable; default: every categorical feature)")
    b.add_argument("--max-requests", type=_positive(int), metavar="N", help="score at most N requests")
    b.add_argument("--batch-size", type=_positive(int), default=256, metavar="N",
                   help="requests per ONNX Runtime call (default 256)")
    b.add_argument("--json", action="store_true", help="print the report as one JSON line on stdout")
    b.add_argument("--output", metavar="FILE", help="also write the JSON report to FILE")
    b.set_defaults(handler=run_backtest)

    r = kinds.add_parser("runs", help="list replay runs and their progress",
                         description="Runs recorded in <data dir>/replay.sqlite, or one run in detail.")
    r.add_argument("run_id", nargs="?", help="show this run per partition")
    r.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    r.set_defaults(handler=run_runs)


def _time_range(parser, start: str, end: str, required: bool) -> None:
    """--from/--to as every replay source takes them; the range is FROM <= t < TO."""
    parser.add_argument("--from", dest="start", required=required, metavar="TIME",
                        help=f"{start}: {TIME_HELP}" + ("" if required else " (default: all)"))
    parser.add_argument("--to", dest="end", metavar="TIME", help=f"{end} (default: now)")


def _common(p) -> None:
    p.add_argument("--run-id", metavar="ID", help="name the run; an existing id resumes that run (default: new id)")
    p.add_argument("--rate", type=_positive(float), metavar="N", help="at most N records per second")
    p.add_argument("--limit", type=_positive(int), metavar="N",
                   help="stop after N records, resumable later with the same --run-id")
    p.add_argument("--dry-run", action="store_true", help="count per partition what would happen; write nothing")
    p.add_argument("--batch-size", type=_positive(int), default=1000, metavar="N",
                   help="records per transaction (default 1000)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON line on stdout")


def run_topic(args, config) -> int:
    check_registered(config, args.model)
    catalog = TopicCatalog(config.kafka)
    source = catalog.requests(args.model) if args.model else args.topic
    window = _window(args.start, args.end)
    run_id = args.run_id or _new_run_id()
    with _checkpoints(config) as checkpoints, _bar(f"replay {source}") as on_progress:
        replay = topic_replay(config.kafka, checkpoints, run_id, source, args.to_topic or source, window,
                              _options(args), args.include_replayed, on_progress)
        _announce(run_id, args)
        report = replay.run()
    return _show(report, args)


def run_dead_letters(args, config) -> int:
    window = _window(args.start or "0", args.end)
    run_id = args.run_id or _new_run_id()
    selection = DeadLetterFilter(frozenset(args.reason), frozenset(args.processor), frozenset(args.source_topic))
    registry = schema_registry(config)
    with _checkpoints(config) as checkpoints, _bar("re-drive dead letters") as on_progress:
        replay = dead_letter_redrive(config.kafka, registry, checkpoints, run_id, window, selection,
                                     live_feature_specs(config, registry), _options(args), args.include_handled,
                                     on_progress)
        _announce(run_id, args)
        report = replay.run()
    return _show(report, args)


def run_store(args, config) -> int:
    check_registered(config, args.model)
    window = _window(args.start, args.end)
    run_id = args.run_id or _new_run_id()
    with _checkpoints(config) as checkpoints, \
            feature_store_for(config) as store, \
            _bar(f"replay store → {args.to_topic or TopicCatalog(config.kafka).requests(args.model)}") as on_progress:
        replay = store_replay(config.kafka, schema_registry(config), checkpoints, store, run_id, args.model,
                              window.start, window.end, args.version, args.labels, args.to_topic, _options(args),
                              args.include_replayed, on_progress)
        _announce(run_id, args)
        report = replay.run()
    return _show(report, args)


def run_backtest(args, config) -> int:
    check_registered(config, args.model)
    window = _window(args.start, args.end)
    plan = BacktestPlan(args.model, args.candidate, window.start, window.end, args.baseline, args.slice_by,
                        args.batch_size, args.max_requests)
    registry = schema_registry(config)
    models = ModelRegistry(config.kafka, registry, config.data_dir, actor="backtest")
    with feature_store_for(config) as store, \
            _bar(f"backtest {args.model}/{args.candidate}") as on_progress:
        report = Backtest(store, models, registry).run(plan, on_progress)
    models.close()
    render_backtest(report)
    if args.output:
        with open_user_file(args.output, "w") as file:
            file.write(json.dumps(report.to_dict(), indent=2) + "\n")
    if args.json:
        print_json_line(report.to_dict())
    return 0


def render_backtest(report: BacktestReport) -> None:
    err.print(f"backtest {report.model}: candidate {report.candidate} vs baseline {report.baseline}, "
              f"{_iso(report.start)} → {_iso(report.end)}, {report.requests:,} requests scored"
              + (f" ({', '.join(f'{k} {v:,}' for k, v in sorted(report.skipped.items()))} left out)"
                 if report.skipped else ""))
    metrics = Table("metric", f"baseline {report.baseline}", f"candidate {report.candidate}", "difference")
    for name in sorted(set(report.baseline_metrics) | set(report.candidate_metrics),
                       key=lambda n: (n != report.primary_metric, n)):
        b, c = report.baseline_metrics.get(name), report.candidate_metrics.get(name)
        label = f"[bold]{name}[/] (primary)" if name == report.primary_metric else name
        metrics.add_row(label, _num(b), _num(c), _num(None if b is None or c is None else c - b, signed=True))
    metrics.add_row("agreement", "", f"{report.agreement:.1%}", "")
    err.print(metrics)
    if report.slices:
        per = Table("slice", "requests", f"{report.primary_metric} baseline", "candidate", "difference")
        for row in report.slices:
            per.add_row(row.name, f"{row.count:,}", _num(row.baseline), _num(row.candidate),
                        _num(row.difference, signed=True))
        err.print(per)
    timing = Table("latency", "p50 ms", "p99 ms", "per request µs")
    for name, lat in report.latency.items():
        timing.add_row(f"{name}: {lat.what}", f"{lat.p50_ms:.3f}", f"{lat.p99_ms:.3f}",
                       "" if lat.per_request_us is None else f"{lat.per_request_us:.1f}")
    err.print(timing)
    err.print(f"better on {report.primary_metric}: [bold]{report.better}[/]")


def _num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def run_runs(args, config) -> int:
    with _checkpoints(config) as checkpoints:
        runs = [checkpoints.load(args.run_id)] if args.run_id else checkpoints.runs()
    if args.run_id and runs[0] is None:
        raise UnknownRun(f"no replay run {args.run_id} in {config.data_dir / 'replay.sqlite'}")
    if args.json:
        for run in runs:
            print_json_line({"run_id": run.run_id, "kind": run.kind, "status": run.status, "spec": run.spec,
                             "remaining_offsets": run.remaining, "totals": run.totals()})
        return 0
    table = Table()
    # The run id is what --run-id needs to resume: never wrapped or cut, however narrow the output.
    table.add_column("run id", no_wrap=True, min_width=max((len(r.run_id) for r in runs), default=6))
    for name in ("kind", "status", "source", "range", "remaining", "outcomes"):
        table.add_column(name)
    for run in runs:
        table.add_row(run.run_id, run.kind, run.status, run.spec.get("source", ""),
                      f"{_iso(run.spec['start'])} → {_iso(run.spec['end'])}", f"{run.remaining:,}",
                      ", ".join(f"{k} {v:,}" for k, v in sorted(run.totals().items())))
    err.print(table)
    if args.run_id:
        _partition_table(runs[0].ranges, runs[0].counts, runs[0].next_offsets)
    return 0


def live_feature_specs(config, registry) -> Validator | None:
    """Check re-driven requests against the feature spec of their model's live version, as the
    worker will; None (decode only) when no model registry is reachable."""
    try:
        models = ModelRegistry(config.kafka, registry, config.data_dir, actor="replay")
    except BrokerUnavailable:
        err.print("no model registry (models topic missing): dead letters are checked by decoding only")
        return None
    specs: dict[str, FeatureSpec | None] = {}

    def validate(record_name: str, record: dict) -> None:
        if record_name != "InferenceRequest":
            return
        model = record["model"]
        if model not in specs:
            deployment = models.deployments().get(model)
            live = deployment.live_version if deployment else None
            specs[model] = models.manifest(model, live).features if live else None
        if specs[model] is not None:
            specs[model].check(record["numeric"], record["categorical"])
    return validate


class UnknownRun(NotFound, LookupError):
    """No replay run of the id the user gave."""


class _checkpoints:
    def __init__(self, config):
        self._store = Checkpoints.in_data_dir(config.data_dir)

    def __enter__(self) -> Checkpoints:
        return self._store

    def __exit__(self, *exc) -> None:
        self._store.close()


class _bar:
    """A progress bar fed by the replay's (done, total) callback."""

    def __init__(self, description: str):
        self._progress = progress(description)

    def __enter__(self):
        self._progress.__enter__()
        task = self._progress.add_task("", total=None)
        return lambda done, total: self._progress.update(task, completed=done, total=total)

    def __exit__(self, *exc) -> None:
        self._progress.__exit__(*exc)


def _options(args) -> ReplayOptions:
    return ReplayOptions(batch_size=args.batch_size, rate=args.rate, limit=args.limit, dry_run=args.dry_run)


def _announce(run_id: str, args) -> None:
    if args.dry_run:
        err.print(f"dry run {run_id}: nothing is written")
    else:
        err.print(f"run {run_id} (resume with --run-id {run_id})")


def _show(report: ReplayReport, args) -> int:
    totals = ", ".join(f"{k} {v:,}" for k, v in sorted(report.totals().items())) or "no records in range"
    _partition_table(report.ranges, report.counts)
    recovered = f"; {report.recovered:,} already delivered by the interrupted attempt" if report.recovered else ""
    err.print(f"{report.status}: {totals}{recovered} ({report.elapsed_s:.1f}s)")
    if args.json:
        print_json_line(report.to_dict())
    return 0


def _partition_table(ranges, counts, next_offsets=None) -> None:
    outcomes = sorted({o for per in counts.values() for o in per})
    table = Table("partition", "offsets", *(["next"] if next_offsets else []), *outcomes)
    for r in ranges:
        per = counts.get(r.partition, {})
        table.add_row(str(r.partition), f"{r.begin:,} – {r.stop:,}",
                      *([f"{next_offsets.get(r.partition, r.begin):,}"] if next_offsets else []),
                      *(f"{per.get(o, 0):,}" for o in outcomes))
    err.print(table)


def _window(start: str, end: str | None) -> TimeRange:
    now = int(time.time() * 1000)
    return TimeRange(parse_moment(start, now), parse_moment(end, now) if end else now)


def parse_moment(text: str, now: int) -> int:
    """Epoch ms from an ISO-8601 time, epoch milliseconds, or a duration before `now`."""
    ago = DURATION.match(text.strip())
    if ago:
        return now - int(float(ago.group(1)) * UNIT_MS[ago.group(2)])
    return parse_time(text)


def _new_run_id() -> str:
    return f"replay-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, not {text}")
        return value
    return parse
