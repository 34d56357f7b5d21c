"""`flywheel import`: a scikit-learn model (pickle or joblib file) or an ONNX file, plus a CSV
of rows it was not trained on, registered as a serving version (see processors/importing)."""
import sys
from pathlib import Path

from flywheel.errors import open_user_file
from flywheel.own_model import register_own_model
from flywheel.processors.importing import ImportRefused


def register(sub) -> None:
    p = sub.add_parser("import", help="register your own scikit-learn or ONNX model with a sample of validation rows",
                       description="Turn a fitted scikit-learn model or pipeline (OneHotEncoder included; a "
                                   "pickle or joblib file) or an ONNX file into a serving version: the feature "
                                   "spec is inferred from the sample (numbers are numeric features unless named "
                                   "by --categorical, anything else categorical with the categories seen, numbers "
                                   "in numeric order), the model is converted to the worker's input layout with "
                                   "its inputs bound by name, its class labels come from the model (or the target "
                                   "column, for ONNX), the drift reference profile from the sample (or "
                                   "--reference), and the converted model must answer every sample row as the "
                                   "original does (an ONNX file: as its --expected columns say). Give rows the "
                                   "model was not trained on, such as its validation set: its answers on "
                                   "training rows are more confident than on live ones and would read as drift.")
    p.add_argument("model", help="model name (its topics are created)")
    p.add_argument("version", help="version name (the first version of a model goes live)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--sklearn", metavar="FILE", help="a fitted scikit-learn model or pipeline (pickle/joblib)")
    source.add_argument("--onnx", metavar="FILE", help="an ONNX model")
    p.add_argument("--sample", metavar="CSV", required=True,
                   help="validation rows with a header row (rows the model was not trained on): the feature "
                        "spec, drift reference and conversion check come from them")
    p.add_argument("--reference", metavar="CSV",
                   help="the rows the model was trained on, in the sample's columns: the drift reference profiles "
                        "their features (and the feature spec takes their categories too); default: the sample")
    p.add_argument("--target", metavar="COLUMN", help="the sample's label column (left out of the features)")
    p.add_argument("--labels", metavar="A,B,…", help="an ONNX classifier's class labels, in its output order")
    p.add_argument("--regressor", action="store_true", help="an ONNX model that answers a value, not classes")
    p.add_argument("--categorical", metavar="COL[,COL…]", default="",
                   help="number columns that are category codes (a month, a zip code): one-hot encoded over "
                        "their values in numeric order, not treated as quantities")
    p.add_argument("--numeric", metavar="COL[,COL…]", default="",
                   help="columns that are numbers even where the sample writes them as text; a value that is "
                        "not a number is refused, naming its row")
    p.add_argument("--expected", metavar="COL[,COL…]", default="",
                   help="an ONNX model's known answers on the sample: one probability column per label (in "
                        "the labels' order) or one column of predicted labels or values; the import is refused "
                        "unless the model, fed as the worker feeds it, answers every row the same")
    p.add_argument("--description", default="", help="recorded in the manifest and the model event")
    p.set_defaults(handler=run)


def run(args, config) -> int:
    estimator = _load(Path(args.sklearn)) if args.sklearn else None
    imported = register_own_model(args.model, args.version, Path(args.sample), estimator=estimator,
                                  reference=Path(args.reference) if args.reference else None,
                                  onnx_file=args.onnx, target=args.target,
                                  labels=args.labels.split(",") if args.labels else None,
                                  regressor=True if args.regressor else None, description=args.description,
                                  categorical=_names(args.categorical), numeric=_names(args.numeric),
                                  expected=_names(args.expected) or None,
                                  config=config)
    m = imported.manifest
    kinds = f"{len(m.features.numeric)} numeric, {len(m.features.categorical)} categorical"
    answers = ", ".join(m.output.labels) if m.output.task == "classifier" else "a value"
    check = imported.checked
    checked = (f"; answers the {check.rows:,} sample rows as {check.against} (largest difference "
               f"{check.largest_difference:.1e})" if check.rows else
               "; its answers were not checked (give --expected columns of the sample)")
    live = "live" if imported.event["live_version"] == m.version else "not live (deploy it with `flywheel models`)"
    print(f"registered {m.model} {m.version}: {kinds} features, answers {answers}{checked}; {live}", file=sys.stderr)
    return 0


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _load(path: Path):
    import joblib  # scikit-learn's own persistence; reads plain pickles too
    with open_user_file(path, "rb") as file:
        try:
            return joblib.load(file)
        except Exception as e:   # joblib raises whatever unpickling meets
            raise ImportRefused(f"{path} is not a pickled scikit-learn model: {e}") from e
