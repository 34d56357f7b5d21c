"""`flywheel label`: ground truth for requests, one on the command line or JSON lines.

Every label is checked before anything is sent: against the classes (or value range) of the
model that answered the request, found through the request's stored prediction or --model.
A label for a request with no stored prediction yet is sent (labels may come first) and the
command says how long the joiner will hold it.
"""
import json
import math
import sys
from dataclasses import dataclass

from flywheel.console import err, refusal
from flywheel.errors import BadInput, open_user_file
from flywheel.model_names import check_registered
from flywheel.processors.joiner.settings import JoinerSettings
from flywheel.processors.models import Manifest, ModelRegistry
from flywheel.schemas.errors import clip
from flywheel.streams.errors import BrokerUnavailable
from flywheel.streams.labels import LabelPublisher
from flywheel.wiring import feature_store_for, schema_registry

LOOKUP_CHUNK = 1000


def register(sub) -> None:
    p = sub.add_parser("label", help="publish ground truth for requests",
                       description="Give one label: flywheel label REQUEST_ID LABEL (or --value X for "
                                   "regressors). Or many: --file F with lines {\"request_id\": ..., "
                                   "\"label\": ...} or {\"request_id\": ..., \"value\": ...}. Each label is "
                                   "checked against the model's classes (or range) first; if any is bad, "
                                   "nothing is sent.")
    p.add_argument("request_id", nargs="?", help="the request being labelled")
    p.add_argument("label", nargs="?", help="its true class")
    p.add_argument("--value", type=float, help="its true value (regression)")
    p.add_argument("-m", "--model", help="the model (checked against when the request is not stored yet)")
    p.add_argument("-f", "--file", help="JSON lines of labels, or - for stdin")
    p.add_argument("--source", default="cli", help="who labelled (recorded on the label)")
    p.set_defaults(handler=run)


@dataclass
class Row:
    where: str               # "line 3", or "request r1" for the command line
    request_id: str
    label: str | None
    value: float | None
    model: str | None


class LabelUsageError(BadInput, ValueError):
    """The arguments or label file the user gave do not make labels."""


def run(args, config) -> int:
    check_registered(config, args.model)
    if args.file:
        with (sys.stdin if args.file == "-" else open_user_file(args.file)) as lines:
            rows, problems = _from_lines(lines, args.model)
    elif args.request_id:
        rows, problems = [Row(f"request {clip(args.request_id)}", args.request_id, args.label,
                              args.value, args.model)], []
    else:
        raise LabelUsageError("give REQUEST_ID and LABEL (or --value), or --file")
    checked = Checker(config).check(rows)
    problems += checked.problems
    if problems:
        raise LabelUsageError(refusal("label", problems, "label(s)"))
    labels = LabelPublisher(config.kafka, schema_registry(config), source=args.source)
    for row in rows:
        labels.label(row.request_id, label=row.label, value=row.value,
                     model=row.model or checked.models.get(row.request_id))
    labels.flush()
    err.print(f"published {len(rows)} label(s) to {labels.topic}")
    if checked.unknown:
        wait = config.section(JoinerSettings, "joiner").early_label_wait_seconds
        shown = ", ".join(clip(r, 40) for r in checked.unknown[:3]) + (", …" if len(checked.unknown) > 3 else "")
        err.print(f"{len(checked.unknown)} label(s) for requests with no prediction stored yet ({shown}): "
                  f"pending; the joiner waits up to {wait:g}s (joiner.early_label_wait_seconds) for their "
                  f"predictions, then dead-letters them as unknown_request", markup=False, highlight=False)
    return 0


def _from_lines(lines, model: str | None) -> tuple[list[Row], list[str]]:
    rows, problems = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line.strip())
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            if not isinstance(data.get("request_id"), str):
                raise ValueError('needs "request_id" (a string)')
            value = data.get("value")
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError(f'"value" must be a number, not {clip(json.dumps(value))}')
            label = data.get("label")
            rows.append(Row(f"line {number}", data["request_id"], None if label is None else str(label),
                            None if value is None else float(value), data.get("model", model)))
        except ValueError as e:
            problems.append(f"line {number}: {clip(str(e), 300)}")
    return rows, problems


@dataclass
class Checked:
    problems: list[str]
    unknown: list[str]          # request ids with no stored prediction
    models: dict[str, str]      # request id -> the model whose prediction is stored


class Checker:
    """What each label is checked against: the stored predictions and the registered manifests."""

    def __init__(self, config):
        self.config = config

    def check(self, rows: list[Row]) -> Checked:
        stored = self._predictions([r.request_id for r in rows])
        wanted = {r.model for r in rows} | {p.model for found in stored.values() for p in found}
        manifests = self._manifests(wanted - {None})
        out = Checked([], [], {})
        for row in rows:
            found = stored.get(row.request_id, [])
            if found:
                out.models[row.request_id] = found[0].model
            else:
                out.unknown.append(row.request_id)
            model = row.model or (found[0].model if found else None)
            versions = {p.model_version for p in found if p.model == model}
            problem = _problem(row, [m for (name, version), m in manifests.items()
                                     if name == model and (version in versions or not versions)])
            if problem:
                out.problems.append(f"{row.where}: {problem}")
        return out

    def _predictions(self, request_ids: list[str]) -> dict:
        store = feature_store_for(self.config)
        try:
            found = {}
            for i in range(0, len(request_ids), LOOKUP_CHUNK):
                found.update(store.get_predictions(request_ids[i:i + LOOKUP_CHUNK]))
            return found
        finally:
            store.close()

    def _manifests(self, wanted: set[str]) -> dict[tuple[str, str], Manifest]:
        if not wanted:
            return {}
        try:
            models = ModelRegistry(self.config.kafka, schema_registry(self.config), self.config.data_dir)
        except BrokerUnavailable:   # no `models` topic: nothing registered, nothing to check against
            return {}
        try:
            return {(name, version): models.manifest(name, version)
                    for name, deployment in models.deployments().items() if name in wanted
                    for version in deployment.versions}
        finally:
            models.close()


def _problem(row: Row, manifests: list[Manifest]) -> str | None:
    """Why this label cannot be right for any of these versions of its model, or None."""
    if (row.label is None) == (row.value is None):
        return "give exactly one of a label or a value"
    if row.value is not None and not math.isfinite(row.value):
        return f"value {row.value} is not finite"
    if not manifests:
        return None
    output = manifests[-1].output
    if output.task == "classifier":
        classes = sorted({c for m in manifests for c in m.output.labels})
        if row.label is None:
            return f"model {manifests[-1].model!r} is a classifier: give a label ({', '.join(classes)})"
        if classes and row.label not in classes:
            return (f"label {clip(repr(row.label))} is not a class of model {manifests[-1].model!r} "
                    f"({', '.join(classes)})")
        return None
    if row.value is None:
        return f"model {manifests[-1].model!r} is a regressor: give --value"
    if (output.min is not None and row.value < output.min) or (output.max is not None and row.value > output.max):
        return f"value {row.value:g} is outside model {manifests[-1].model!r}'s range [{output.min}, {output.max}]"
    return None
