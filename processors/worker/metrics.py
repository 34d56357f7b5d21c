"""The worker's Prometheus metrics (names are a contract; see processors/runtime/metrics.py)."""
from flywheel.processors.runtime.metrics import BulkHistogram, ProcessorMetrics
from prometheus_client import Counter, Gauge

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
ORT_BUCKETS = (0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


class WorkerMetrics(ProcessorMetrics):
    def __post_init__(self):
        super().__post_init__()
        r = self.registry
        self.predictions = Counter("flywheel_predictions", "Predictions made", ["model", "version", "role"], registry=r)
        self.batch_size = BulkHistogram("flywheel_batch_size", "Records per model per batch", ["model"],
                                        BATCH_BUCKETS, r)
        self.ort_seconds = BulkHistogram("flywheel_ort_seconds", "ONNX Runtime time per call", ["model", "version"],
                                         ORT_BUCKETS, r)
        self.e2e_latency = BulkHistogram("flywheel_e2e_latency_seconds",
                                         "Request event_time to prediction produced", ["model"], LATENCY_BUCKETS, r)
        self.version_info = Gauge("flywheel_model_version_info", "Model versions in service (1)",
                                  ["model", "version", "role"], registry=r)
        self.cache_lookups = Counter("flywheel_prediction_cache_lookups", "Prediction cache lookups", ["model"],
                                     registry=r)
        self.cache_hits = Counter("flywheel_prediction_cache_hits", "Prediction cache hits", ["model"], registry=r)
        self.review_dropped = Counter("flywheel_review_dropped", "Flagged answers over the review budget, per reason",
                                      ["model", "reason"], registry=r)
        self.model_events = Counter("flywheel_model_events", "ModelEvents seen, of models registered in the store",
                                    ["model", "kind"], registry=r)
        self.model_refusals = Counter("flywheel_model_refusals", "ModelEvents and model versions refused "
                                      "(see data_dir/models/refusals.jsonl)", ["reason"], registry=r)
