"""An import cannot misalign: an ONNX file's inputs are bound to the sample's columns by name, its
answers on the sample are compared with the answers the sample says it gives, integer-coded
categories are one-hot encoded in numeric order, and a scikit-learn pipeline fitted on integer
codes matches the original on held-out rows. No broker: `prepare` stops short of registering."""
import numpy as np
import pytest
from flywheel.processors.importing import ImportRefused
from flywheel.processors.importing.register import prepare
from flywheel.processors.models.encoding import MatrixLayout
from flywheel.processors.worker.sessions import LoadedVersion
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

N = 300
MONTHS = np.arange(1, 13)


@pytest.fixture(scope="module")
def rows():
    """Columns as a model was trained on them: `month` an integer code 1..12 that matters, `x`, `y`."""
    rng = np.random.default_rng(5)
    month, x, y = rng.choice(MONTHS, N), rng.normal(0, 1, N), rng.normal(0, 1, N)
    target = np.where((month > 9) ^ (x > 0.5 * y), "yes", "no")
    return {"month": month, "x": x.round(4), "y": y.round(4)}, target


def _onnx(model, width: int) -> bytes:
    """A one-tensor ONNX file, as a user exports one: their columns in their training order."""
    return convert_sklearn(model, initial_types=[("features", FloatTensorType([None, width]))],
                           options={id(model): {"zipmap": False}}, target_opset=17).SerializeToString()


def _write(tmp_path, name: str, data: bytes):
    (tmp_path / name).write_bytes(data)
    return tmp_path / name


def test_an_onnx_file_fed_its_columns_in_another_order_is_refused_naming_the_layout(rows, tmp_path):
    columns, target = rows
    # trained on (month, x, y) as numbers; the sample has them as (x, y, month)
    model = LogisticRegression().fit(np.c_[columns["month"], columns["x"], columns["y"]], target)
    expected = model.predict_proba(np.c_[columns["month"], columns["x"], columns["y"]])
    sample = {"x": columns["x"], "y": columns["y"], "month": columns["month"], "target": target,
              "p_no": expected[:, 0], "p_yes": expected[:, 1]}
    path = _write(tmp_path, "m.onnx", _onnx(model, 3))
    with pytest.raises(ImportRefused) as refused:
        prepare("m", "v1", sample, onnx_file=path, target="target", expected=("p_no", "p_yes"))
    message = str(refused.value)
    assert "differ from the sample's expected columns p_no, p_yes on" in message and f"of {N} rows" in message
    assert "first on row" in message and "column order" in message and "fed x, y, month" in message
    assert "\n" not in message
    # without the expected columns nothing could tell: this is the silent misalignment of before
    bare = {k: v for k, v in sample.items() if not k.startswith("p_")}
    unchecked = prepare("m", "v1", bare, onnx_file=path, target="target")
    assert unchecked.checked.rows == 0


def test_an_onnx_file_with_named_inputs_is_bound_by_name_whatever_the_sample_order(rows, tmp_path):
    columns, target = rows
    frame_order = ["month", "x", "y"]
    model = LogisticRegression().fit(np.c_[columns["month"], columns["x"], columns["y"]], target)
    # one input per column, named: the prefix hands each its own column
    import onnx
    from onnx import compose, helper
    concat = helper.make_model(helper.make_graph(
        [helper.make_node("Concat", frame_order, ["features"], axis=1)], "named",
        [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [None, 1]) for n in frame_order],
        [helper.make_tensor_value_info("features", onnx.TensorProto.FLOAT, [None, 3])]),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 1)])
    inner = onnx.load_from_string(_onnx(model, 3))
    concat.ir_version = inner.ir_version
    named = compose.merge_models(concat, inner, io_map=[("features", "features")])
    expected = model.predict_proba(np.c_[columns["month"], columns["x"], columns["y"]])
    sample = {"y": columns["y"], "month": columns["month"], "x": columns["x"], "target": target,
              "p_no": expected[:, 0], "p_yes": expected[:, 1]}
    prepared = prepare("m", "v1", sample, onnx_file=_write(tmp_path, "n.onnx", named.SerializeToString()),
                       target="target", expected=("p_no", "p_yes"))
    assert prepared.checked.rows == N and prepared.checked.largest_difference < 1e-5
    gap = {**sample, "p_no": [None, *expected[1:, 0]]}
    with pytest.raises(ImportRefused, match="p_no, p_yes has no answer on 1 rows, first row 1"):
        prepare("m", "v1", gap, onnx_file=tmp_path / "n.onnx", target="target", expected=("p_no", "p_yes"))
    # or the answers computed by a function of the sample's columns, from Python
    bare = {k: v for k, v in sample.items() if not k.startswith("p_")}
    computed = prepare("m", "v1", bare, onnx_file=tmp_path / "n.onnx", target="target",
                       expected=lambda c: model.predict_proba(np.c_[c["month"], c["x"], c["y"]]))
    assert computed.checked.rows == N and computed.checked.against == "the expected answers' function"
    with pytest.raises(ImportRefused, match=f"the expected answers' function gives 2 answers for {N} rows"):
        prepare("m", "v1", bare, onnx_file=tmp_path / "n.onnx", target="target", expected=lambda c: [0.5, 0.5])
    # a sample without one of the model's inputs is refused naming it
    short = {k: v for k, v in sample.items() if k != "y"}
    with pytest.raises(ImportRefused, match="inputs not in the sample: y; sample columns not inputs: none"):
        prepare("m", "v1", short, onnx_file=_write(tmp_path, "n.onnx", named.SerializeToString()),
                target="target", expected=("p_no", "p_yes"))


def test_integer_codes_declared_categorical_are_one_hot_in_numeric_order(rows, tmp_path):
    columns, target = rows
    one_hot = (columns["month"][:, None] == MONTHS).astype(float)        # 1, 2, ..., 12: the model's order
    model = LogisticRegression(max_iter=1000).fit(np.c_[columns["x"], columns["y"], one_hot], target)
    expected = model.predict(np.c_[columns["x"], columns["y"], one_hot])
    sample = {"x": columns["x"], "y": columns["y"], "month": columns["month"].astype(float), "target": target,
              "predicted": expected}
    prepared = prepare("m", "v1", sample, onnx_file=_write(tmp_path, "o.onnx", _onnx(model, 14)),
                       target="target", categorical=("month",), expected=("predicted",))
    month = prepared.manifest.features.get("month")
    assert month.kind == "categorical" and month.categories == tuple(str(m) for m in MONTHS)   # not 1, 10, 11, 12, 2
    assert prepared.checked.rows == N
    # class labels from a numeric target are the classes as scikit-learn orders them: 0, 1, 2, 10
    coded = np.array([0, 1, 2, 10])[columns["month"] % 4]
    four = LogisticRegression(max_iter=1000).fit(np.c_[columns["x"], columns["y"], one_hot], coded)
    numbered = {**sample, "target": coded.astype(float), "predicted": four.predict(np.c_[columns["x"], columns["y"],
                                                                                          one_hot]).astype(float)}
    labelled = prepare("m", "v1", numbered, onnx_file=_write(tmp_path, "c.onnx", _onnx(four, 14)), target="target",
                       categorical=("month",), expected=("predicted",))
    assert labelled.manifest.output.labels == ("0", "1", "2", "10") and labelled.checked.rows == N
    # undeclared, the month is a number and the file's 14 columns cannot be the sample's 3
    with pytest.raises(ImportRefused, match="is 14 columns wide, the sample's features make 3"):
        prepare("m", "v1", sample, onnx_file=tmp_path / "o.onnx", target="target", expected=("predicted",))


def test_a_pipeline_fitted_on_integer_codes_matches_the_original_on_held_out_rows(rows):
    import pandas as pd
    columns, target = rows
    frame = pd.DataFrame(columns)
    pipeline = Pipeline([("prep", ColumnTransformer([("num", "passthrough", ["x", "y"]),
                                                     ("cat", OneHotEncoder(handle_unknown="ignore"), ["month"])])),
                         ("lr", LogisticRegression(max_iter=1000))]).fit(frame[:200], target[:200])
    held_out = frame[200:].reset_index(drop=True)
    prepared = prepare("m", "v1", held_out, estimator=pipeline, categorical=("month",))
    assert prepared.checked.rows == N - 200 and prepared.checked.largest_difference < 1e-6
    assert prepared.manifest.training_metrics["checked_rows"] == N - 200       # kept with the version
    # served as the worker serves it: month 3 sent as 3.0 is month 3
    manifest = prepared.manifest
    numeric, categorical = manifest.features.split({"x": 0.1, "y": -0.2, "month": 3.0})
    matrix = MatrixLayout(manifest.features).build(np.array([[numeric["x"], numeric["y"]]], np.float32),
                                                   [[categorical["month"]]])
    served = LoadedVersion(manifest, prepared.onnx_bytes).run(matrix)
    original = pipeline.predict_proba(pd.DataFrame({"month": [3], "x": [0.1], "y": [-0.2]}))
    assert np.abs(served - original).max() < 1e-6


def test_numbers_written_as_text_are_read_as_numbers_when_declared(rows, tmp_path):
    columns, target = rows
    model = LogisticRegression().fit(np.c_[columns["month"], columns["x"], columns["y"]], target)
    expected = model.predict(np.c_[columns["month"], columns["x"], columns["y"]])
    as_text = {"month": columns["month"], "x": [str(v) for v in columns["x"]], "y": columns["y"],
               "target": target, "predicted": expected}
    path = _write(tmp_path, "t.onnx", _onnx(model, 3))
    with pytest.raises(ImportRefused, match="is 3 columns wide"):       # x as text: a categorical of 300
        prepare("m", "v1", as_text, onnx_file=path, target="target", expected=("predicted",))
    declared = prepare("m", "v1", as_text, onnx_file=path, target="target", expected=("predicted",), numeric=("x",))
    assert declared.manifest.features.get("x").kind == "numeric" and declared.checked.rows == N
    broken = {**as_text, "x": ["n/a?", *as_text["x"][1:]]}
    with pytest.raises(ImportRefused, match="column 'x' is declared numeric, but row 1 holds 'n/a\\?'"):
        prepare("m", "v1", broken, onnx_file=path, target="target", expected=("predicted",), numeric=("x",))
