"""A trainer plugin that learns nothing: labels shuffled, so its candidate must be rejected."""
import numpy as np
from flywheel.processors.models import MatrixLayout
from flywheel.processors.retrainer import dataset as datasets
from flywheel.processors.training.train import build_estimator
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType


def train(dataset_path: str, output_path: str) -> dict:
    data = datasets.load(dataset_path)
    x = MatrixLayout(data.spec).build(data.numeric, data.categorical)
    y = np.random.default_rng(0).permutation(data.target)
    estimator = build_estimator("mlp", "classifier", max_iter=20).fit(x, y)
    onx = convert_sklearn(estimator, initial_types=[("input", FloatTensorType([None, x.shape[1]]))],
                          options={id(estimator): {"zipmap": False}}, target_opset=17)
    with open(output_path, "wb") as f:
        f.write(onx.SerializeToString())
    return {"shuffled": 1.0}
