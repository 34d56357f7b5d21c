"""`flywheel publish`: JSON lines of requests from a file or stdin to a model's request topic."""
import json
import sys

from streams.publisher import Publisher, Request

from flywheel.console import err, print_json_line, progress
from flywheel.wiring import schema_registry


def register(sub) -> None:
    p = sub.add_parser("publish", help="publish inference requests (JSON lines)",
                       description="Each line is a request: {\"features\": {...}, \"entity_id\": ..., "
                                   "\"request_id\": ..., \"event_time\": ms, \"metadata\": {...}} or just a "
                                   "flat object of features. Numbers are numeric features, strings categorical.")
    p.add_argument("file", nargs="?", default="-", help="JSON lines file, or - for stdin (default)")
    p.add_argument("-m", "--model", required=True, help="model the requests are for")
    p.add_argument("--print-ids", action="store_true", help="write each request id to stdout")
    p.set_defaults(handler=run)


def run(args, config) -> int:
    source = sys.stdin if args.file == "-" else open(args.file)
    total = None if args.file == "-" else sum(1 for _ in open(args.file))
    publisher = Publisher(config.kafka, schema_registry(config), args.model, _feature_spec(config, args.model))
    sent = 0
    with progress(f"publish → {publisher.topic}") as bar:
        task = bar.add_task("", total=total)
        for number, line in enumerate(source, start=1):
            if not line.strip():
                continue
            request_id = publisher.publish(_parse(line, number))
            sent += 1
            bar.advance(task)
            if args.print_ids:
                print_json_line({"request_id": request_id})
    publisher.flush()
    err.print(f"published {sent} request(s) to {publisher.topic}")
    return 0


def _feature_spec(config, model: str):
    """The registered live version's feature spec, so bad requests fail here, not in the worker."""
    from processors.models import ModelRegistry
    from streams.errors import BrokerUnavailable
    try:
        registry = ModelRegistry(config.kafka, schema_registry(config), config.data_dir)
    except BrokerUnavailable:
        return None  # no `models` topic yet: nothing is registered
    try:
        return registry.feature_spec(model)
    finally:
        registry.close()


def _parse(line: str, number: int) -> Request:
    try:
        data = json.loads(line)
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        return Request.from_dict(data) if "features" in data else Request(features=data)
    except (ValueError, TypeError) as e:
        raise InputLineError(f"line {number}: {e}") from e


class InputLineError(ValueError):
    pass
