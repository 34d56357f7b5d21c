"""Open a model version with ONNX Runtime and prove it answers as its manifest says, before it
serves anything: the file loads, the declared input takes one row laid out from the feature
spec, and the answer has the declared shape (a probability per label for a classifier, one
value for a regressor). The registry probes at registration, the worker at every load, so a
file that cannot serve is refused alone instead of failing a batch or a whole worker."""
import numpy as np
import onnxruntime as ort
from flywheel.processors.models.encoding import MatrixLayout
from flywheel.processors.models.errors import UnloadableModel
from flywheel.processors.models.manifest import Manifest


def session_options(intra_op_threads: int = 1) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return opts


def open_session(manifest: Manifest, onnx_bytes: bytes, intra_op_threads: int = 1
                 ) -> tuple[ort.InferenceSession, str]:
    """A checked session and the name of the output the worker reads; UnloadableModel otherwise."""
    name = f"{manifest.model}/{manifest.version}"
    try:
        session = ort.InferenceSession(onnx_bytes, session_options(intra_op_threads),
                                       providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own types (Fail, InvalidProtobuf, ...) as well as RuntimeError
        raise UnloadableModel(f"REFUSED {name}: ONNX Runtime cannot load it: {_first_line(e)}") from None
    inputs = [i.name for i in session.get_inputs()]
    if manifest.input_name not in inputs:
        raise UnloadableModel(f"REFUSED {name}: the manifest's input {manifest.input_name!r} is not one of "
                              f"the model's inputs {inputs}")
    outputs = [o.name for o in session.get_outputs()]
    # Classifiers: the probability tensor only (skipping the string label output saves a copy).
    wanted = "probabilities" if manifest.output.task == "classifier" else "variable"
    output = wanted if wanted in outputs else outputs[-1]
    row = np.zeros((1, MatrixLayout(manifest.features, manifest.categorical_encoding).width), dtype=np.float32)
    try:
        answer = np.asarray(session.run([output], {manifest.input_name: row})[0])
    except Exception as e:
        raise UnloadableModel(f"REFUSED {name}: one row laid out from its feature spec "
                              f"({row.shape[1]} columns) fails: {_first_line(e)}") from None
    columns = answer.reshape(1, -1).shape[1] if answer.size else 0
    expected = (len(manifest.output.labels) or columns) if manifest.output.task == "classifier" else 1
    if columns != expected or not np.issubdtype(answer.dtype, np.number):
        raise UnloadableModel(f"REFUSED {name}: output {output!r} gives {columns} {answer.dtype} value(s) a row, "
                              f"the manifest declares {expected} ({manifest.output.task})")
    return session, output


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
