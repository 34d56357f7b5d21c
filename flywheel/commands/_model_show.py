"""`flywheel models show MODEL [VERSION]`: what a version (default: the live one) expects and
answers, and its lineage (what trained it: parent, retrain request, trainer and its code's hash,
the feedback range, rows and their content hash). Read from the data dir's artifact store, so it
works without a broker."""

from flywheel.commands._since import utc_text
from flywheel.console import err, print_json_line
from flywheel.errors import BadInput
from flywheel.model_names import check_registered
from flywheel.processors.models.history import EventLog
from flywheel.processors.models.manifest import Lineage, Manifest
from flywheel.processors.models.store import ArtifactStore


def add_parser(actions) -> None:
    s = actions.add_parser("show", help="one version's features, outputs, training figures and lineage")
    s.add_argument("model")
    s.add_argument("version", nargs="?", help="default: the live version")
    s.add_argument("--json", action="store_true", help="the whole manifest as one JSON line")
    s.set_defaults(handler=run_show)


def run_show(args, config) -> int:
    check_registered(config, args.model)
    version = args.version or EventLog(config.data_dir).last().get(args.model, {}).get("live_version")
    if version is None:
        raise BadInput(f"{args.model} has no live version: name one")
    manifest = ArtifactStore(config.data_dir).manifest(args.model, version)
    if args.json:
        print_json_line(manifest.to_dict())
        return 0
    for line in describe(manifest):
        err.print(line, highlight=False, markup=False, soft_wrap=True)   # hashes stay whole
    return 0


def describe(manifest: Manifest) -> list[str]:
    features = ", ".join(f.name if f.kind == "numeric" else f"{f.name} [{', '.join(f.categories)}]"
                         for f in manifest.features.features)
    answers = ", ".join(manifest.output.labels) if manifest.output.task == "classifier" else "a value"
    lines = [f"{manifest.model} {manifest.version}: {manifest.description or 'no description'}",
             f"  features: {features}", f"  answers: {answers}", f"  sha256: {manifest.sha256}",
             "  training: " + (", ".join(f"{k} {v:.4g}" for k, v in sorted(manifest.training_metrics.items()))
                               or "no figures")]
    return lines + lineage_lines(manifest.lineage)


def lineage_lines(lineage: Lineage | None) -> list[str]:
    if lineage is None:
        return ["  lineage: none recorded (imported or registered by hand)"]
    return [f"  parent: {lineage.parent or '-'}; retrain {lineage.retrain_id or '-'} "
            f"for {', '.join(lineage.reasons) or '-'}",
            f"  trainer: {lineage.trainer} (code sha256 {lineage.trainer_sha256 or 'unknown'})",
            f"  data: feedback from {utc_text(lineage.data_start)} to {utc_text(lineage.data_end)}: "
            f"{lineage.train_rows:,} rows trained on (+{lineage.hard_examples:,} hard-example copies), "
            f"{lineage.holdout_rows:,} held out",
            f"  dataset sha256: {lineage.dataset_sha256}"]
