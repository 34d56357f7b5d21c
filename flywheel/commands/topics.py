"""`flywheel topics`: list Flywheel's topics with partitions and record counts, or create them."""
from confluent_kafka import TopicPartition
from rich.table import Table

from flywheel.console import err
from flywheel.streams.clients import make_consumer
from flywheel.streams.metadata import retrying, watermarks
from flywheel.streams.topics import TopicCatalog
from flywheel.wiring import ensure_core_topics


def register(sub) -> None:
    p = sub.add_parser("topics", help="list (or --create) Flywheel's topics",
                       description="Lists every topic under the configured prefix with its partitions, "
                                   "record type and offsets. --create makes the core topics and, with "
                                   "--model, a model's request and prediction topics.")
    p.add_argument("--create", action="store_true", help="create missing topics")
    p.add_argument("-m", "--model", action="append", default=[], help="with --create: this model's topics too")
    p.set_defaults(handler=run)


def run(args, config) -> int:
    if args.create:
        created = ensure_core_topics(config, args.model)
        err.print(f"created {len(created)} topic(s): {', '.join(created) or '(all existed)'}")
    catalog = TopicCatalog(config.kafka)
    consumer = make_consumer(config.kafka, "flywheel-topics")
    meta = retrying(lambda: consumer.list_topics(timeout=10), "list topics", 10)
    table = Table("partitions", "record", "offsets (end - start)")
    # A topic's name is what a person copies from here: folded over lines, never cut short.
    table.add_column("topic", overflow="fold")
    for name in sorted(meta.topics):
        if not name.startswith(config.kafka.topic_prefix):
            continue
        try:
            record = catalog.record_name(name)
        except Exception:
            continue
        partitions = meta.topics[name].partitions
        span = sum(hi - lo for lo, hi in (watermarks(consumer, TopicPartition(name, p)) for p in partitions))
        table.add_row(str(len(partitions)), record, f"{span:,}", name)
    consumer.close()
    err.print(table)
    return 0
