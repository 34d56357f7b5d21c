"""`flywheel retrain --model M`: ask for a retrain by hand (emits RetrainRequested)."""
from flywheel.console import err, print_json_line
from flywheel.errors import Refused
from flywheel.model_names import check_registered
from flywheel.processors.models.follower import ModelFollower
from flywheel.processors.models.manifest import Lineage
from flywheel.processors.models.store import ArtifactStore
from flywheel.processors.trigger.policy import Decision, reproduction_request
from flywheel.processors.trigger.process import LiveVersion, LiveVersions, Requester
from flywheel.processors.trigger.settings import TriggerSettings
from flywheel.wiring import feature_store_for, schema_registry


def register(sub) -> None:
    p = sub.add_parser("retrain", help="request a retrain of a model by hand",
                       description="Emit RetrainRequested for MODEL with reason 'manual', the current metric "
                                   "snapshot and the dataset from [trigger] (dataset_seconds, hard_example_share). "
                                   "Skips the cooldown; refused while another request is in flight.")
    p.add_argument("-m", "--model", required=True, help="the model to retrain")
    p.add_argument("--base-version", metavar="V", help="the version to improve on (default: the live one)")
    p.add_argument("--by", default="cli", help="who is asking (recorded on the request)")
    p.add_argument("--reproduce", metavar="VERSION",
                   help="train again on the dataset VERSION's lineage records (its time range and shares): "
                        "the same rows, with the same dataset hash, while the store holds them")
    p.set_defaults(handler=run)


def run(args, config) -> int:
    check_registered(config, args.model)
    lineage = _lineage(config, args.model, args.reproduce) if args.reproduce else None
    settings = config.section(TriggerSettings, "trigger")
    with feature_store_for(config) as store:
        registry = schema_registry(config)
        live = _live_version(config, registry, args.model)
        if args.base_version:
            live.version = args.base_version
        requester = Requester(config.kafka, registry, store, settings)
        try:
            if lineage is not None:
                decision, request = _reproduce(requester, args, lineage, live)
            else:
                decision, request = requester.evaluate(args.model, live, manual=True, requested_by=args.by)
        finally:
            requester.close()
    if request is None:
        raise RetrainRefused(f"not requested: a retrain of {args.model} is already "
                             f"{decision.suppressed_by.replace('_', ' ')}")
    print_json_line(request)
    err.print(f"requested retrain {request['retrain_id']} of {args.model} ({', '.join(request['reasons'])})")
    return 0


def _lineage(config, model: str, version: str) -> Lineage:
    lineage = ArtifactStore(config.data_dir).manifest(model, version).lineage
    if lineage is None:
        raise RetrainRefused(f"{model} {version} has no lineage to reproduce (imported, or registered by hand)")
    return lineage


def _reproduce(requester: Requester, args, lineage: Lineage, live: LiveVersion) -> tuple[Decision, dict | None]:
    state = requester.state(args.model, live)
    decision = Decision(["manual"], suppressed_by="in_flight" if state.in_flight else None)
    if not decision.request:
        return decision, None
    request = reproduction_request(args.model, live.version, lineage, requester.clock(), args.by)
    requester.emit(request)
    return decision, request


def _live_version(config, registry, model: str) -> LiveVersion:
    """The model's live version per the models topic (none if it was never registered)."""
    follower, live = ModelFollower(config.kafka, registry), LiveVersions()
    try:
        live.apply(follower.catch_up())
    finally:
        follower.close()
    return live.models.get(model, LiveVersion())


class RetrainRefused(Refused, RuntimeError):
    """The retrain the user asked for cannot be requested now; the message says why."""
