"""The inference worker: batched, exactly-once ONNX serving of many models and versions
(worker.py), its metrics and its settings, each imported from its own module."""
