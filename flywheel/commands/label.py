"""`flywheel label`: ground truth for requests, one on the command line or JSON lines."""
import json
import sys

from streams.labels import LabelPublisher

from flywheel.console import err
from flywheel.wiring import schema_registry


def register(sub) -> None:
    p = sub.add_parser("label", help="publish ground truth for requests",
                       description="Give one label: flywheel label REQUEST_ID LABEL (or --value X for "
                                   "regressors). Or many: --file F with lines {\"request_id\": ..., "
                                   "\"label\": ...} or {\"request_id\": ..., \"value\": ...}.")
    p.add_argument("request_id", nargs="?", help="the request being labelled")
    p.add_argument("label", nargs="?", help="its true class")
    p.add_argument("--value", type=float, help="its true value (regression)")
    p.add_argument("-m", "--model", help="the model (optional; helps routing)")
    p.add_argument("-f", "--file", help="JSON lines of labels, or - for stdin")
    p.add_argument("--source", default="cli", help="who labelled (recorded on the label)")
    p.set_defaults(handler=run)


def run(args, config) -> int:
    labels = LabelPublisher(config.kafka, schema_registry(config), source=args.source)
    if args.file:
        count = _from_lines(labels, sys.stdin if args.file == "-" else open(args.file), args.model)
    elif args.request_id:
        labels.label(args.request_id, label=args.label, value=args.value, model=args.model)
        count = 1
    else:
        raise LabelUsageError("give REQUEST_ID and LABEL (or --value), or --file")
    labels.flush()
    err.print(f"published {count} label(s) to {labels.topic}")
    return 0


def _from_lines(labels: LabelPublisher, lines, model: str | None) -> int:
    count = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            labels.label(row["request_id"], label=row.get("label"), value=row.get("value"),
                         model=row.get("model", model))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise LabelUsageError(f"line {number}: {e!r}") from e
        count += 1
    return count


class LabelUsageError(ValueError):
    pass
