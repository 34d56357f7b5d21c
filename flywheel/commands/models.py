"""`flywheel models`: register ONNX model versions and roll them out, back and forward."""
import getpass
import json
from datetime import UTC, datetime
from pathlib import Path

from rich.table import Table
from rich.text import Text

from flywheel.commands import _model_reference as model_reference
from flywheel.commands import _model_show as model_show
from flywheel.console import err, print_json_line
from flywheel.errors import open_user_file
from flywheel.model_names import check_registered
from flywheel.processors.models import Manifest, ModelRegistry
from flywheel.processors.models.errors import DeploymentError, ManifestError
from flywheel.processors.rollout import approval
from flywheel.wiring import ensure_core_topics, schema_registry


def register(sub) -> None:
    p = sub.add_parser("models", help="register, list, deploy, promote and roll back model versions",
                       description="Every change is a ModelEvent on the compacted `models` topic; running "
                                   "workers hot-swap to it between two batches.")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    r = actions.add_parser("register", help="register a model version (the first version of a model goes live)")
    r.add_argument("model")
    r.add_argument("version")
    source = r.add_mutually_exclusive_group(required=True)
    source.add_argument("--onnx", type=Path, metavar="FILE", help="the ONNX file (needs --manifest)")
    source.add_argument("--synthetic", choices=["mlp", "gbt"],
                        help="train a reference model on synthetic data (32 numeric features) and register it")
    r.add_argument("--manifest", type=Path, metavar="FILE",
                   help="JSON manifest: features, output, training_metrics, reference_profile ...")
    r.add_argument("--reason", default="")
    r.set_defaults(handler=run_register)

    ls = actions.add_parser("list", help="every model's live, canary and shadow versions")
    ls.add_argument("--json", action="store_true", help="one ModelEvent per line instead of a table")
    ls.set_defaults(handler=run_list)
    model_show.add_parser(actions)
    model_reference.add_parser(actions)

    d = actions.add_parser("deploy", help="deploy a version as canary (a share of traffic) or shadow")
    d.add_argument("model")
    d.add_argument("version")
    how = d.add_mutually_exclusive_group(required=True)
    how.add_argument("--canary", type=float, metavar="PCT", help="percent of entities routed to this version")
    how.add_argument("--shadow", action="store_true", help="predict on every request, never answer")
    d.add_argument("--reason", default="")
    d.set_defaults(handler=run_deploy)

    pr = actions.add_parser("promote", help="make a version (default: the canary) live")
    pr.add_argument("model")
    pr.add_argument("version", nargs="?")
    pr.add_argument("--reason", default="")
    pr.set_defaults(handler=run_promote)

    rb = actions.add_parser("rollback", help="drop the canary; without one, go back to the previous live version")
    rb.add_argument("model")
    rb.add_argument("--to", metavar="VERSION", help="the version to make live")
    rb.add_argument("--reason", default="")
    rb.set_defaults(handler=run_rollback)

    for name, verb, handler in (("approve", "promote", run_approve), ("reject", "roll back", run_reject)):
        a = actions.add_parser(name, help=f"{verb} a canary waiting for approval ([rollout] approval = \"manual\")",
                               description=f"{verb.capitalize()} the canary that passed its live evidence and waits "
                                           f"for a person; who, when and why are recorded as a ModelEvent. "
                                           f"`flywheel models list` shows what waits.")
        a.add_argument("version")
        a.add_argument("-m", "--model", required=True)
        a.add_argument("--reason", required=True, help="why, in a few words: it is shown in the timeline")
        a.add_argument("--by", metavar="NAME", help="who decides (default: your user name on this machine)")
        a.set_defaults(handler=handler)


def _registry(config) -> ModelRegistry:
    ensure_core_topics(config)
    return ModelRegistry(config.kafka, schema_registry(config), config.data_dir, actor="cli")


def _done(event: dict) -> int:
    err.print(f"[green]{event['kind'].lower()}[/] {event['model']} {event['version']}: live {event['live_version']}"
              + (f", canary {event['canary_version']} at {event['canary_share'] * 100:g}%"
                 if event["canary_version"] else "")
              + (f", shadows {', '.join(event['shadow_versions'])}" if event["shadow_versions"] else ""))
    return 0


def run_register(args, config) -> int:
    if args.synthetic:
        from flywheel.processors.training import synthetic, train
        data = synthetic(20_000, seed=hash(args.version) % 1000)
        trained = train(args.model, args.version, data.numeric, data.target, data.spec, kind=args.synthetic)
        onnx_bytes, manifest = trained.onnx_bytes, trained.manifest
    else:
        if not args.manifest:
            raise ManifestError("--onnx needs --manifest FILE (features and output spec)")
        with open_user_file(args.onnx, "rb") as onnx, open_user_file(args.manifest) as text:
            onnx_bytes, text = onnx.read(), text.read()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ManifestError(f"{args.manifest} is not JSON: {e}") from None
        manifest = Manifest.from_dict({**data, "model": args.model, "version": args.version})
    ensure_core_topics(config, [args.model])
    registry = _registry(config)
    try:
        return _done(registry.register(onnx_bytes, manifest, args.reason))
    finally:
        registry.close()


def run_list(args, config) -> int:
    registry = _registry(config)
    try:
        deployments = registry.deployments()
        if args.json:
            for model in sorted(deployments):
                print_json_line(registry.events()[model])
            return 0
        table = Table("model", "live", "canary", "shadows", "versions")
        for model, d in sorted(deployments.items()):
            table.add_row(model, d.live_version or "-",
                          f"{d.canary_version} ({d.canary_share * 100:g}%"
                          + (", awaiting approval)" if d.awaiting else ")") if d.canary_version else "-",
                          ", ".join(d.shadow_versions) or "-", ", ".join(sorted(d.versions)))
        err.print(table)
        for w in approval.waiting(registry):
            err.print(Text(f"{w.model} {w.version} awaits approval since "
                           f"{datetime.fromtimestamp(w.since / 1000, tz=UTC):%Y-%m-%d %H:%M} UTC: {w.reason}; "
                           + ", ".join(f"{k} {v:g}" for k, v in sorted(w.evidence.items()))))
        return 0
    finally:
        registry.close()


def run_deploy(args, config) -> int:
    check_registered(config, args.model)
    registry = _registry(config)
    try:
        if args.shadow:
            return _done(registry.shadow(args.model, args.version, args.reason))
        return _done(registry.canary(args.model, args.version, args.canary / 100.0, args.reason))
    finally:
        registry.close()


def run_promote(args, config) -> int:
    check_registered(config, args.model)
    registry = _registry(config)
    try:
        return _done(registry.promote(args.model, args.version, args.reason))
    finally:
        registry.close()


def run_rollback(args, config) -> int:
    check_registered(config, args.model)
    registry = _registry(config)
    try:
        return _done(registry.rollback(args.model, args.to, args.reason))
    finally:
        registry.close()


def run_approve(args, config) -> int:
    return _decide(approval.approve, args, config)


def run_reject(args, config) -> int:
    return _decide(approval.reject, args, config)


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):     # no login name here (a container without a passwd entry, say)
        raise DeploymentError("who decides? this machine has no user name for you: name yourself with --by") from None


def _decide(decide, args, config) -> int:
    check_registered(config, args.model)
    registry = _registry(config)
    try:
        event = decide(registry, args.model, args.version, args.by or _user(), args.reason)
        err.print(Text(f"{event['actor']}: {event['reason']}"))
        return _done(event)
    finally:
        registry.close()
