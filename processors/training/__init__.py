"""Reference trainer (scikit-learn MLP and gradient-boosted trees, converted with skl2onnx) and
a synthetic dataset generator."""
from flywheel.processors.training.data import Dataset, synthetic
from flywheel.processors.training.train import TrainedModel, review_line, train

__all__ = ["Dataset", "synthetic", "TrainedModel", "review_line", "train"]
