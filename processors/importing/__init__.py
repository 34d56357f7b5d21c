"""Bring your own model: a scikit-learn model or pipeline (OneHotEncoder included), or any ONNX
file, plus a sample of its training data, become a serving version with nothing written by hand:
the feature spec is inferred from the sample, the model is converted to the worker's input
layout, the output labels come from the model, the drift reference profile from the sample, and
the converted model is test-loaded and checked against the original before it is registered."""
from flywheel.processors.importing.errors import ImportRefused
from flywheel.processors.importing.register import Imported, import_model
from flywheel.processors.importing.sample import Sample, TrainingData

__all__ = ["ImportRefused", "Imported", "Sample", "TrainingData", "import_model"]
