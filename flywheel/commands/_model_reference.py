"""`flywheel models reference MODEL VERSION`: rebuild a version's drift reference profile from a
file of rows (`--from`) or from its own stored feedback over a time range (`--since`/`--until`),
and replace the stored one (see processors/importing/reference.py). Reads the data dir and the
store only, so it works without a broker."""
import time
from pathlib import Path

from flywheel.commands._since import HELP as SINCE_HELP
from flywheel.commands._since import parse_since, utc_text
from flywheel.console import err
from flywheel.errors import BadInput
from flywheel.feature_store import ReferenceProfile
from flywheel.model_names import check_registered
from flywheel.processors.importing.reference import profile_of_feedback, profile_of_rows
from flywheel.processors.models.store import ArtifactStore
from flywheel.processors.monitor.profile import PREDICTED_LABEL, PREDICTED_SCORE, Profile, ProfileError
from flywheel.processors.monitor.settings import MonitorSettings
from flywheel.wiring import feature_store_for


def add_parser(actions) -> None:
    r = actions.add_parser("reference", help="rebuild a version's drift reference profile from a file or its feedback",
                           description="Profile a version's features and its own answers (what the monitor judges "
                                       "drift against) from a CSV file in its sample's columns, the version run on "
                                       "them as `flywheel import` runs it, or from its stored feedback over a time "
                                       "range (the features it saw and the answers it gave), and replace its stored "
                                       "profile. The monitor reads it within [monitor] reference_refresh_seconds.")
    r.add_argument("model")
    r.add_argument("version")
    source = r.add_mutually_exclusive_group(required=True)
    source.add_argument("--from", dest="rows", type=Path, metavar="CSV",
                        help="rows with a header naming every feature of the version (other columns are ignored); "
                             "rows it was not trained on, such as validation rows")
    source.add_argument("--since", metavar="WHEN", help=f"profile the version's feedback from then: {SINCE_HELP}")
    r.add_argument("--until", metavar="WHEN", help="with --since: up to then, in the same forms (default: now)")
    r.add_argument("--dry-run", action="store_true", help="print the profile's summary without storing it")
    r.set_defaults(handler=run_reference)


def run_reference(args, config) -> int:
    if args.until and not args.since:
        raise BadInput("--until needs --since: it ends a range of the version's feedback")
    refresh = config.section(MonitorSettings, "monitor").reference_refresh_seconds
    check_registered(config, args.model)
    manifest, onnx_bytes = ArtifactStore(config.data_dir).load(args.model, args.version)
    with feature_store_for(config) as store:
        if args.rows:
            profile, source = profile_of_rows(manifest, onnx_bytes, args.rows), str(args.rows)
        else:
            now = int(time.time() * 1000)
            start, end = parse_since(args.since, now), parse_since(args.until, now) if args.until else now
            source = f"feedback from {utc_text(start)} to {utc_text(end)}"
            profile = profile_of_feedback(manifest, store.feedback(args.model, start, end, args.version),
                                          where=source.removeprefix("feedback "))
        summary = f"{args.model} {args.version}: {summary_of(profile)}, from {source}"
        if args.dry_run:
            err.print(f"not stored (--dry-run) {summary}", markup=False, highlight=False, soft_wrap=True)
            return 0
        before = store.get_profile(args.model, args.version)
        store.put_profile(ReferenceProfile(args.model, args.version, int(time.time() * 1000), profile.to_bytes()))
    replaced = (f"replaces the one of {utc_text(before.created_at)} ({_rows(before)})" if before
                else "the version had none")
    err.print(f"stored the reference profile of {summary}; {replaced}; the monitor reads it within {refresh:g} s "
              f"([monitor] reference_refresh_seconds) and judges the windows it closes after that against it",
              markup=False, highlight=False, soft_wrap=True)
    return 0


def summary_of(profile: Profile) -> str:
    """Rows, features by kind, and the answers' part: the score's median and the labels' shares."""
    numeric = [n for n in profile.numeric if n != PREDICTED_SCORE]
    categorical = [n for n in profile.categorical if n != PREDICTED_LABEL]
    parts = [f"{profile.rows:,} rows, {len(numeric) + len(categorical)} features ({len(numeric)} numeric, "
             f"{len(categorical)} categorical)"]
    score = profile.numeric.get(PREDICTED_SCORE)
    if score is not None and score.count:
        parts.append(f"prediction.score median {score.sketch.get_quantile(0.5):.4g}")
    label = profile.categorical.get(PREDICTED_LABEL)
    if label is not None and label.count:
        shares = sorted(label.counts().items(), key=lambda kv: -kv[1])
        parts.append("prediction.label " + ", ".join(f"{k} {v / label.count:.0%}" for k, v in shares[:5]))
    return ", ".join(parts)


def _rows(stored: ReferenceProfile) -> str:
    try:
        return f"{Profile.from_bytes(stored.profile).rows:,} rows"
    except ProfileError:
        return "unusable"
