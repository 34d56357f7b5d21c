"""Worker settings: TOML [worker], env FLYWHEEL_WORKER_<FIELD>, CLI flags."""
from dataclasses import dataclass

from flywheel.processors.runtime.identity import process_instance_id
from flywheel.schemas.setting import per_model, setting


@dataclass
class WorkerSettings:
    """TOML [worker], env FLYWHEEL_WORKER_<FIELD>: the inference worker."""
    models: list[str] = setting(factory=list, doc="models served; empty: every registered model")
    group_id: str = setting("flywheel-worker", doc="Kafka consumer group")
    instance_id: str = setting(
        factory=process_instance_id,
        doc="names the transactional producer: two live workers must not share it, and a restarted worker that "
            "reuses it fences its killed predecessor; default: unique per process (the stack passes one per "
            "process slot, Kubernetes the pod name)")
    instances: int = setting(1, unit="processes", min=1, doc="processes `flywheel up` runs as one group, each its "
                                                             "own instance id")
    max_batch: int = setting(1000, unit="records", min=1, doc="records per batch at most")
    max_wait_ms: float = setting(0.0, unit="ms", min=0, doc="once a record is in hand, wait this long for more "
                                                            "(0: take what is there)")
    idle_poll_ms: float = setting(100.0, unit="ms", min=0, doc="how long to block when nothing is waiting")
    exactly_once: bool = setting(True, doc="predictions, dead letters and offsets in one Kafka transaction")
    intra_op_threads: int = setting(1, unit="threads", min=0, doc="ONNX Runtime threads per session; scale out "
                                                                  "with processes")
    max_request_bytes: int = setting(1_000_000, unit="bytes", min=1, doc="a larger request is a dead letter")
    max_clock_skew_seconds: float = setting(
        300.0, unit="s", min=0, doc="a request's event_time may be at most this far ahead of the worker's clock "
                                    "(and not before 1970); else it is a `time_skew` dead letter")
    cache_size: int = setting(0, unit="entries", min=0, doc="prediction cache entries per version; 0: off")
    commit_timeout_s: float = setting(30.0, unit="s", min=0.001, doc="how long a transaction commit may take")
    review_share: float = setting(
        0.01, unit="share", min=0, max=1, doc="share of each model's predictions that may go to review for low "
                                              "confidence or margin (least confident first); faults always go")
    review_burst: float = setting(100.0, unit="items", min=0, doc="unspent review items carried over at most")
    review: dict[str, dict] = per_model(
        "review_share", "review_burst", doc="per-model review budgets, one table each: [worker.review.fraud] "
                                            "review_share = 0.05; a model without one has the section's")
    online_groups: dict[str, list[str]] = setting(factory=dict, doc="model -> feature groups its requests are "
                                                                    "enriched from")
