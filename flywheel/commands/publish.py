"""`flywheel publish`: JSON lines of requests from a file or stdin to a model's request topic.

Every line is parsed and checked against the model's feature spec before anything is sent, so a
file with a bad line sends nothing and the error names every bad line. If the broker then refuses
a request, what was sent before it is said exactly.
"""
import json
import sys
from dataclasses import dataclass

from flywheel.console import err, print_json_line, progress, refusal
from flywheel.errors import BadInput, open_user_file
from flywheel.model_names import unknown_model
from flywheel.schemas.errors import clip
from flywheel.streams.errors import DeliveryFailed, RecordTooLarge
from flywheel.streams.publisher import Publisher, Request
from flywheel.wiring import ensure_core_topics, schema_registry

REGISTER_HINT = "register it with `flywheel models register`, or pass --create-topics to publish anyway"


def register(sub) -> None:
    p = sub.add_parser("publish", help="publish inference requests (JSON lines)",
                       description="Each line is a request: {\"features\": {...}, \"entity_id\": ..., "
                                   "\"request_id\": ..., \"event_time\": ms, \"metadata\": {...}} or just a "
                                   "flat object of features. Numbers are numeric features, strings categorical. "
                                   "Every line is checked against the live version's feature spec first: "
                                   "if any line is bad, nothing is sent and each bad line is named.")
    p.add_argument("file", nargs="?", default="-", help="JSON lines file, or - for stdin (default)")
    p.add_argument("-m", "--model", required=True, help="model the requests are for (must be registered)")
    p.add_argument("--create-topics", action="store_true",
                   help="publish for a model that is not registered (yet): create its topics, check nothing")
    p.add_argument("--print-ids", action="store_true", help="write each request id to stdout")
    p.set_defaults(handler=run)


@dataclass
class Prepared:
    line: int
    request_id: str
    key: bytes
    value: bytes


class PublishRefused(BadInput, ValueError):
    """Lines of the user's file are bad (nothing sent), or the broker took only part of it (the
    message says which lines went)."""


def run(args, config) -> int:
    registry = schema_registry(config)
    spec = _feature_spec(config, registry, args.model, args.create_topics)
    publisher = Publisher(config.kafka, registry, args.model, spec)
    with (sys.stdin if args.file == "-" else open_user_file(args.file)) as source:
        prepared, problems = _prepare(publisher, source, _message_limit(config))
    if problems:
        raise PublishRefused(refusal("publish", problems, "line(s)"))
    _send(publisher, prepared, args.print_ids)
    err.print(f"published {len(prepared)} request(s) to {publisher.topic}")
    return 0


def _prepare(publisher: Publisher, source, limit: int) -> tuple[list[Prepared], list[str]]:
    """Every line parsed, checked and encoded; a problem per bad line, each naming its line."""
    prepared, problems = [], []
    for number, line in enumerate(source, start=1):
        if not line.strip():
            continue
        try:
            record = publisher.to_record(_parse(line))
            key, value = publisher.encode(record)
        except (ValueError, TypeError) as e:   # FeatureProblem and JSON errors are ValueErrors
            problems.append(f"line {number}: {clip(str(e), 300)}")
            continue
        if len(key) + len(value) > limit:
            problems.append(f"line {number}: the request is {len(key) + len(value):,} bytes encoded, "
                            f"over the producer's {limit:,}-byte message limit")
            continue
        prepared.append(Prepared(number, record["request_id"], key, value))
    return prepared, problems


def _send(publisher: Publisher, prepared: list[Prepared], print_ids: bool) -> None:
    with progress(f"publish → {publisher.topic}") as bar:
        task = bar.add_task("", total=len(prepared))
        for done, item in enumerate(prepared):
            try:
                publisher.produce(item.key, item.value)
            except RecordTooLarge as e:
                _report_partial(publisher, prepared, done, f"line {item.line}: {clip(str(e), 300)}")
            bar.advance(task)
            if print_ids:
                print_json_line({"request_id": item.request_id})
    try:
        publisher.flush()
    except DeliveryFailed as e:
        delivered = publisher.delivered
        raise PublishRefused(f"{delivered} of {len(prepared)} request(s) delivered to {publisher.topic}; "
                             f"{clip(str(e), 300)}") from e


def _report_partial(publisher: Publisher, prepared: list[Prepared], done: int, problem: str):
    """The broker client refused a request mid-way: deliver what was queued before it, say so."""
    publisher.flush()
    sent = f"lines {prepared[0].line}-{prepared[done - 1].line} ({done} request(s))" if done else "nothing"
    raise PublishRefused(f"{problem}; sent {sent} to {publisher.topic}, nothing after")


def _feature_spec(config, registry, model: str, create_topics: bool):
    """The registered live version's feature spec, so bad requests fail here, not in the worker.
    A model nobody registered is refused: its requests would wait on a topic nothing serves."""
    from flywheel.processors.models import ModelRegistry
    from flywheel.streams.errors import BrokerUnavailable
    if create_topics:
        ensure_core_topics(config, [model])
        return None
    try:
        models = ModelRegistry(config.kafka, registry, config.data_dir)
    except BrokerUnavailable:  # no `models` topic yet: nothing is registered
        raise PublishRefused(unknown_model(model, [], REGISTER_HINT)) from None
    try:
        deployments = models.deployments()
        if model not in deployments:
            raise PublishRefused(unknown_model(model, sorted(deployments), REGISTER_HINT))
        return models.feature_spec(model)
    finally:
        models.close()


def _message_limit(config) -> int:
    """The producer's largest message (librdkafka's message.max.bytes, 1,000,000 unless overridden)."""
    return int(config.kafka.client_overrides.get("message.max.bytes", 1_000_000))


def _parse(line: str) -> Request:
    data = json.loads(line.strip())
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    return Request.from_dict(data) if "features" in data else Request(features=data)

