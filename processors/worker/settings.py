"""Worker settings: TOML [worker], env FLYWHEEL_WORKER_<FIELD>, CLI flags."""
from dataclasses import dataclass, field

from processors.runtime.identity import process_instance_id


@dataclass
class WorkerSettings:
    models: list[str] = field(default_factory=list)   # empty: every registered model
    group_id: str = "flywheel-worker"
    # Names the transactional producer: two live workers must not share it, and a restarted
    # worker that reuses it fences its killed predecessor (aborting its open transaction at once).
    # Default: unique per process (host and pid). Whoever restarts a worker in the same slot
    # passes a stable one: the stack per process slot, Kubernetes the pod name (FLYWHEEL_INSTANCE_ID).
    instance_id: str = field(default_factory=process_instance_id)
    instances: int = 1               # processes `flywheel up` runs as one group, each its own instance id
    max_batch: int = 1000            # records per batch at most
    max_wait_ms: float = 0.0         # once a record is in hand, wait this long for more (0: take what is there)
    idle_poll_ms: float = 100.0      # how long to block when nothing is waiting
    exactly_once: bool = True
    intra_op_threads: int = 1        # ONNX Runtime threads per session; scale out with processes
    max_request_bytes: int = 1_000_000
    # A request's event_time may be at most this far ahead of the worker's clock (and not before
    # 1970); else it is a `time_skew` dead letter. Old times are fine (replays, backfills).
    max_clock_skew_seconds: float = 300.0
    cache_size: int = 0              # prediction cache entries per version; 0: off
    commit_timeout_s: float = 30.0
    # Share of each model's predictions that may go to review for low confidence or margin (least
    # confident first); the rest are counted in flywheel_review_dropped_total. Faults always go.
    review_share: float = 0.01
    review_burst: float = 100.0      # unspent review items carried over at most
    online_groups: dict[str, list[str]] = field(default_factory=dict)  # model -> feature groups to enrich from
