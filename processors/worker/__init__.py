"""The inference worker: batched, exactly-once ONNX serving of many models and versions."""
from processors.worker.metrics import WorkerMetrics
from processors.worker.settings import WorkerSettings
from processors.worker.worker import InferenceWorker

__all__ = ["InferenceWorker", "WorkerMetrics", "WorkerSettings"]
