"""A model in the worker's input layout: one float32 tensor `input`, the numeric features in
declared order, then each categorical feature one-hot over its categories (MatrixLayout).

A scikit-learn model over numbers only is converted with skl2onnx as it is. A model that takes
named columns (a pipeline whose ColumnTransformer one-hot encodes strings itself, or an ONNX file
with one input per column) gets a prefix graph in front of it that cuts `input` back into those
columns: a numeric column is a slice, a categorical one is the category at the one-hot block's
argmax (the empty string when the block is all zeros, so an unseen or missing category reaches
the model's own encoder as unknown)."""
import numpy as np
import onnx
from flywheel.processors.importing.errors import ImportRefused
from flywheel.processors.models.encoding import MatrixLayout
from flywheel.schemas.features import FeatureSpec
from onnx import TensorProto, compose, helper, numpy_helper

INPUT = "input"
OPSET = 17


def from_sklearn(estimator, spec: FeatureSpec, classifier: bool) -> bytes:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    options = {id(estimator): {"zipmap": False}} if classifier else None
    by_column = bool(spec.categorical) or _selects_columns(estimator)
    if by_column:
        types = [(f.name, FloatTensorType([None, 1]) if f.kind == "numeric" else StringTensorType([None, 1]))
                 for f in spec.features]
    else:
        types = [(INPUT, FloatTensorType([None, len(spec.numeric)]))]
    try:
        converted = convert_sklearn(estimator, initial_types=types, options=options, target_opset=OPSET)
    except Exception as e:  # skl2onnx raises many kinds for what it cannot convert
        raise ImportRefused(f"skl2onnx cannot convert {type(estimator).__name__}: {e}") from e
    if not by_column:
        return converted.SerializeToString()
    # skl2onnx keeps the inputs in the given order but may rename them ("mean radius" -> "mean_radius")
    renamed = dict(zip(names(spec), _inputs(converted)))
    return with_layout_input(converted, spec, renamed).SerializeToString()


def from_onnx(onnx_bytes: bytes, spec: FeatureSpec) -> tuple[bytes, str]:
    """The file as it is when it already takes the layout (its one input is that wide); a prefix
    in front when its inputs are the sample's columns by name. Returns the bytes and input name."""
    try:
        model = onnx.load_from_string(onnx_bytes)
    except Exception as e:
        raise ImportRefused(f"not an ONNX model: {e}") from e
    inputs = _inputs(model)
    width = MatrixLayout(spec).width
    if len(inputs) == 1 and _width(model.graph.input[0]) in (width, None) and inputs[0] not in names(spec):
        return onnx_bytes, inputs[0]
    if set(inputs) == set(names(spec)):
        return with_layout_input(model, spec, {n: n for n in inputs}).SerializeToString(), INPUT
    raise ImportRefused(f"the ONNX model's inputs ({', '.join(inputs)}) are neither one tensor of the {width} "
                        f"layout columns nor the sample's columns ({', '.join(names(spec))})")


def with_layout_input(model: onnx.ModelProto, spec: FeatureSpec, inputs: dict[str, str]) -> onnx.ModelProto:
    """`model` behind a prefix that feeds its input inputs[feature] from the layout tensor."""
    layout = MatrixLayout(spec)
    nodes, initializers, io_map = [], [], []
    for i, name in enumerate(layout.numeric):
        out = f"flywheel_column_{name}"
        nodes.append(_slice(f"{out}_slice", INPUT, out, i, i + 1, initializers))
        io_map.append((out, inputs[name]))
    for index, feature in enumerate(layout.categorical):
        start, k, out = layout.first_column[index], len(feature.categories), f"flywheel_column_{feature.name}"
        block, top, none, half, extra, both, arg = (f"{out}_{s}" for s in ("block", "top", "none", "half",
                                                                            "extra", "both", "argmax"))
        nodes += [_slice(f"{out}_slice", INPUT, block, start, start + k, initializers),
                  helper.make_node("ReduceMax", [block], [top], axes=[1], keepdims=1),
                  helper.make_node("Sub", [f"{out}_one", top], [none]),
                  helper.make_node("Mul", [none, f"{out}_half_c"], [half]),
                  helper.make_node("Concat", [block, half], [both], axis=1),
                  helper.make_node("ArgMax", [both], [arg], axis=1, keepdims=1),
                  helper.make_node("Gather", [f"{out}_categories", arg], [out], axis=0)]
        initializers += [numpy_helper.from_array(np.array([1.0], np.float32), f"{out}_one"),
                         numpy_helper.from_array(np.array([0.5], np.float32), f"{out}_half_c"),
                         numpy_helper.from_array(np.array(list(feature.categories) + [""], dtype=object),
                                                 f"{out}_categories")]
        io_map.append((out, inputs[feature.name]))
    outputs = [helper.make_tensor_value_info(out, TensorProto.FLOAT if i < len(layout.numeric) else TensorProto.STRING,
                                             [None, 1]) for i, (out, _) in enumerate(io_map)]
    prefix = helper.make_model(
        helper.make_graph(nodes, "flywheel_layout", [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT,
                                                                                   [None, layout.width])],
                          outputs, initializers),
        opset_imports=list(model.opset_import), ir_version=model.ir_version)
    return compose.merge_models(prefix, model, io_map=io_map)


def _inputs(model: onnx.ModelProto) -> list[str]:
    return [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]


def _slice(name: str, source: str, out: str, start: int, stop: int, initializers: list) -> onnx.NodeProto:
    for suffix, value in (("starts", start), ("ends", stop), ("axes", 1)):
        initializers.append(numpy_helper.from_array(np.array([value], np.int64), f"{name}_{suffix}"))
    return helper.make_node("Slice", [source, f"{name}_starts", f"{name}_ends", f"{name}_axes"], [out], name=name)


def _width(value_info) -> int | None:
    dims = value_info.type.tensor_type.shape.dim
    return dims[1].dim_value if len(dims) == 2 and dims[1].HasField("dim_value") else None


def _selects_columns(estimator) -> bool:
    """Whether the model picks its inputs by column (a ColumnTransformer anywhere in it)."""
    from sklearn.compose import ColumnTransformer
    steps = [step for _, step in getattr(estimator, "steps", [])] or [estimator]
    return any(isinstance(step, ColumnTransformer) for step in steps)


def names(spec: FeatureSpec) -> list[str]:
    return [f.name for f in spec.features]
