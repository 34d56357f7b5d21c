"""`flywheel subscribe`: a model's predictions (or any Flywheel topic) as JSON lines."""
import time
from datetime import UTC, datetime

from flywheel.console import print_json_line
from flywheel.errors import BadInput
from flywheel.model_names import check_registered
from flywheel.streams.subscriber import Subscriber
from flywheel.streams.topics import TopicCatalog
from flywheel.wiring import schema_registry


def register(sub) -> None:
    p = sub.add_parser("subscribe", help="print predictions (or any topic) as JSON lines",
                       description="Follow a model's prediction topic from now (default), from the "
                                   "beginning, or from a time. Standalone by default; --group joins a "
                                   "consumer group and commits what it printed.")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("-m", "--model", help="print this model's predictions")
    target.add_argument("-t", "--topic", help="print any Flywheel topic (labels, deadletter, …)")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--from-beginning", action="store_true", help="start at the oldest record")
    start.add_argument("--from-time", metavar="TIME", help="ISO-8601 time or epoch milliseconds")
    p.add_argument("-g", "--group", help="consumer group id (commits offsets)")
    p.add_argument("-n", "--count", type=int, help="stop after this many records")
    p.add_argument("--timeout", type=float, help="stop after this many seconds without a record")
    p.set_defaults(handler=run)


def run(args, config) -> int:
    check_registered(config, args.model)
    catalog = TopicCatalog(config.kafka)
    topic = catalog.predictions(args.model) if args.model else args.topic
    start = "earliest" if args.from_beginning else parse_time(args.from_time) if args.from_time else "latest"
    printed, last = 0, time.monotonic()
    with Subscriber(config.kafka, schema_registry(config), topic, catalog.record_name(topic),
                    start=start, group_id=args.group) as sub:
        while args.count is None or printed < args.count:
            batch = sub.poll_batch(min(500, (args.count or 500) - printed), 0.5)
            if not batch and args.timeout and time.monotonic() - last > args.timeout:
                break
            for r in batch:
                value = r.value if isinstance(r.value, dict) else {"error": r.value.reason, "detail": r.value.detail}
                print_json_line({"partition": r.partition, "offset": r.offset, "value": value})
            if batch:
                printed, last = printed + len(batch), time.monotonic()
                if args.group:
                    sub.commit()
    return 0


def parse_time(text: str) -> int:
    """Epoch milliseconds from digits or an ISO-8601 time (naive times are UTC)."""
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as e:
        raise TimeFormatError(f"{text!r} is neither epoch milliseconds nor an ISO-8601 time") from e
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


class TimeFormatError(BadInput, ValueError):
    """A --from-time the user gave is neither epoch milliseconds nor an ISO time."""
