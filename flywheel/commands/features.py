"""`flywheel features`: load a feature group into the online store (`ingest`) and look entities
up in it (`get`)."""
import json
import sys
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from flywheel.console import err, print_json_line
from flywheel.errors import open_user_file
from flywheel.feature_store.errors import InvalidRecord
from flywheel.feature_store.ingest import FeatureLoader, csv_rows, jsonl_rows
from flywheel.streams.clients import make_consumer
from flywheel.streams.errors import BrokerUnavailable
from flywheel.streams.topics import topic_partitions
from flywheel.wiring import feature_store_for


def register(sub) -> None:
    p = sub.add_parser("features", help="online features: ingest a feature group, look entities up")
    commands = p.add_subparsers(dest="features_command", metavar="SUBCOMMAND")
    commands.required = True
    ingest = commands.add_parser(
        "ingest", help="load a feature group from a file or a topic into the online store",
        description="Rows are flat objects: the entity id field, an optional time field (epoch ms) and "
                    "features (numbers: numeric, strings: categorical, null or empty: missing). A file is "
                    "JSON lines or CSV (by extension, or --format); a topic's values are JSON objects (the "
                    "message key is the entity id when the row has none), read from the beginning until it "
                    "has been idle for --idle-seconds, or for ever with --follow. Writes are idempotent: "
                    "loading the same rows again changes nothing.")
    ingest.add_argument("group", help="the feature group (shared by every model that names it)")
    source = ingest.add_mutually_exclusive_group(required=True)
    source.add_argument("-f", "--file", help="JSON lines (.jsonl/.json) or CSV (.csv) file; - for stdin")
    source.add_argument("-t", "--topic", help="a topic with JSON values (full name, no prefix added)")
    ingest.add_argument("--format", choices=["jsonl", "csv"], help="file format (default: by extension)")
    ingest.add_argument("--entity-column", default="entity_id", help="field holding the entity id (default entity_id)")
    ingest.add_argument("--time-column", help="field holding the feature time in epoch ms (default: now)")
    ingest.add_argument("--ttl", type=int, metavar="SECONDS", help="rows expire after this long (default: never)")
    ingest.add_argument("--batch", type=int, default=500, help="rows per store write (default 500)")
    ingest.add_argument("--follow", action="store_true", help="topic: keep reading new records until Ctrl-C")
    ingest.add_argument("--idle-seconds", type=float, default=3.0,
                        help="topic: stop after this long without a new record (default 3)")
    ingest.set_defaults(handler=run_ingest)
    get = commands.add_parser("get", help="print entities' stored features as JSON lines")
    get.add_argument("group")
    get.add_argument("entity_ids", nargs="+", metavar="ENTITY_ID")
    get.set_defaults(handler=run_get)


def run_ingest(args, config) -> int:
    with feature_store_for(config) as store:
        loader = FeatureLoader(store, args.group, args.entity_column, args.time_column, args.ttl, args.batch)
        skipped = _from_topic(loader, config, args) if args.topic else _from_file(loader, args)
        loader.flush()
    err.print(f"loaded {loader.written:,} row(s) into feature group {args.group!r}"
              + (f"; skipped {skipped:,} bad record(s)" if skipped else ""))
    return 1 if skipped else 0


def run_get(args, config) -> int:
    with feature_store_for(config) as store:
        found = store.get_online(args.group, args.entity_ids)
    for entity in args.entity_ids:
        if entity in found:
            print_json_line(found[entity].to_dict())
    missing = [e for e in args.entity_ids if e not in found]
    if missing:
        err.print(f"not in {args.group!r}: {', '.join(missing)}")
    return 0


def _from_file(loader: FeatureLoader, args) -> int:
    kind = args.format or ("csv" if args.file.endswith(".csv") else "jsonl")
    with (sys.stdin if args.file == "-" else open_user_file(args.file, newline="")) as file:
        rows = csv_rows(file) if kind == "csv" else jsonl_rows(file)
        for number, row in rows:
            loader.add(row, where=f"{args.file} line {number}: ")
    return 0


def _from_topic(loader: FeatureLoader, config, args) -> int:
    """Bad records are counted and reported (the first few with their offsets), not fatal: a
    topic cannot be fixed and re-run the way a file can."""
    consumer = make_consumer(config.kafka, f"flywheel-features-{uuid.uuid4().hex}")
    skipped = 0
    try:
        partitions = topic_partitions(consumer, args.topic)
        consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in partitions])
        last = time.monotonic()
        while args.follow or time.monotonic() - last < args.idle_seconds:
            messages = consumer.consume(500, timeout=0.5)
            last = time.monotonic() if messages else last
            for m in messages:
                if m.error():
                    raise BrokerUnavailable(f"reading {args.topic}: {m.error()}")
                where = f"{m.topic()}[{m.partition()}]@{m.offset()}: "
                try:
                    row = json.loads(m.value() or b"null")
                    if not isinstance(row, dict):
                        raise InvalidRecord(f"{where}expected a JSON object")
                    loader.add(row, where, entity_id=m.key().decode() if m.key() else None)
                except (ValueError, UnicodeDecodeError) as e:   # InvalidRecord is a ValueError too
                    skipped += 1
                    if skipped <= 5:
                        err.print(f"[yellow]skipped {e if isinstance(e, InvalidRecord) else where + str(e)}")
            loader.flush()
    finally:
        consumer.close()
    return skipped

