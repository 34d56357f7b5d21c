"""A model in the worker's input layout: one float32 tensor `input`, the numeric features in
declared order, then each categorical feature one-hot over its categories (MatrixLayout).

A scikit-learn model over numbers only is converted with skl2onnx as it is. A model that takes
named columns (a pipeline whose ColumnTransformer one-hot encodes strings itself, or an ONNX file
with one input per column) gets a prefix graph in front of it that cuts `input` back into those
columns, bound by name: a numeric column is a slice, a categorical one is the category at the
one-hot block's argmax, in the type the model's input declares (text, or an integer for integer
codes; when the block is all zeros, a value no encoder knows, so an unseen or missing category
reaches the model's own encoder as unknown)."""
import numpy as np
import onnx
from flywheel.processors.importing.errors import ImportRefused
from flywheel.processors.models.encoding import MatrixLayout
from flywheel.schemas.features import FeatureSpec
from onnx import TensorProto, compose, helper, numpy_helper

INPUT = "input"
OPSET = 17


# what the prefix hands a categorical input when the one-hot block is all zeros, by input type
UNKNOWN = {TensorProto.STRING: "", TensorProto.INT64: np.iinfo(np.int64).min, TensorProto.INT32: np.iinfo(np.int32).min,
           TensorProto.FLOAT: np.nan, TensorProto.DOUBLE: np.nan}


def from_sklearn(estimator, spec: FeatureSpec, classifier: bool, integer_coded: set[str] = frozenset()) -> bytes:
    """`integer_coded`: categorical features the estimator was fitted on as integers."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType
    options = {id(estimator): {"zipmap": False}} if classifier else None
    by_column = bool(spec.categorical) or _selects_columns(estimator)
    if by_column:
        types = [(f.name, FloatTensorType([None, 1]) if f.kind == "numeric" else
                  Int64TensorType([None, 1]) if f.name in integer_coded else StringTensorType([None, 1]))
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
    if len(inputs) == 1 and inputs[0] not in names(spec):
        found = _width(_input(model, inputs[0]))
        if found in (width, None):
            return onnx_bytes, inputs[0]
        raise ImportRefused(f"the ONNX model's one input {inputs[0]!r} is {found} columns wide, the sample's "
                            f"features make {width} ({layout_text(spec)}); name the model's inputs after the "
                            f"sample's columns, or give the sample the columns it was trained on")
    missing, extra = [n for n in inputs if n not in names(spec)], [n for n in names(spec) if n not in inputs]
    if missing or extra:
        raise ImportRefused(f"the ONNX model's inputs do not match the sample's columns by name: "
                            f"inputs not in the sample: {', '.join(missing) or 'none'}; "
                            f"sample columns not inputs: {', '.join(extra) or 'none'}")
    return with_layout_input(model, spec, {n: n for n in inputs}).SerializeToString(), INPUT


def layout_text(spec: FeatureSpec) -> str:
    """The worker's input columns in order, as a person checks them against a model's training."""
    layout = MatrixLayout(spec)
    parts = list(layout.numeric) + [f"{f.name} one-hot [{', '.join(f.categories)}]" for f in layout.categorical]
    return ", ".join(parts)


def with_layout_input(model: onnx.ModelProto, spec: FeatureSpec, inputs: dict[str, str]) -> onnx.ModelProto:
    """`model` behind a prefix that feeds its input inputs[feature] from the layout tensor."""
    layout = MatrixLayout(spec)
    nodes, initializers, io_map, types = [], [], [], []
    for i, name in enumerate(layout.numeric):
        out, wanted = f"flywheel_column_{name}", _elem_type(model, inputs[name])
        if wanted == TensorProto.FLOAT:
            nodes.append(_slice(f"{out}_slice", INPUT, out, i, i + 1, initializers))
        else:
            nodes += [_slice(f"{out}_slice", INPUT, f"{out}_float", i, i + 1, initializers),
                      helper.make_node("Cast", [f"{out}_float"], [out], to=wanted)]
        io_map.append((out, inputs[name]))
        types.append(wanted)
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
        wanted = _elem_type(model, inputs[feature.name])
        initializers += [numpy_helper.from_array(np.array([1.0], np.float32), f"{out}_one"),
                         numpy_helper.from_array(np.array([0.5], np.float32), f"{out}_half_c"),
                         numpy_helper.from_array(_categories(feature, wanted), f"{out}_categories")]
        io_map.append((out, inputs[feature.name]))
        types.append(wanted)
    outputs = [helper.make_tensor_value_info(out, kind, [None, 1]) for (out, _), kind in zip(io_map, types)]
    prefix = helper.make_model(
        helper.make_graph(nodes, "flywheel_layout", [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT,
                                                                                   [None, layout.width])],
                          outputs, initializers),
        opset_imports=list(model.opset_import), ir_version=model.ir_version)
    return compose.merge_models(prefix, model, io_map=io_map)


def _categories(feature, elem_type: int) -> np.ndarray:
    """The feature's categories, then the unknown value, as the model's input type holds them."""
    if elem_type not in UNKNOWN:
        raise ImportRefused(f"the model's input {feature.name!r} is of ONNX type "
                            f"{TensorProto.DataType.Name(elem_type)}, which a category cannot be given as")
    values = list(feature.categories) + [UNKNOWN[elem_type]]
    if elem_type == TensorProto.STRING:
        return np.array(values, dtype=object)
    try:
        return np.array([float(v) for v in values]).astype(helper.tensor_dtype_to_np_dtype(elem_type))
    except ValueError:
        raise ImportRefused(f"the model takes {feature.name!r} as numbers, but the sample has categories "
                            f"that are not: {', '.join(feature.categories)}") from None


def _input(model: onnx.ModelProto, name: str):
    return next(i for i in model.graph.input if i.name == name)


def _elem_type(model: onnx.ModelProto, name: str) -> int:
    return _input(model, name).type.tensor_type.elem_type


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
