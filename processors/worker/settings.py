"""Worker settings: TOML [worker], env FLYWHEEL_WORKER_<FIELD>, CLI flags."""
import socket
from dataclasses import dataclass, field


@dataclass
class WorkerSettings:
    models: list[str] = field(default_factory=list)   # empty: every registered model
    group_id: str = "flywheel-worker"
    # Stable per worker process (restarts reuse it): it names the transactional producer, so a
    # restarted worker fences its killed predecessor and aborts its open transaction at once.
    # Two live workers must not share it. Default: the host name (the pod name on Kubernetes).
    instance_id: str = field(default_factory=socket.gethostname)
    instances: int = 1               # processes `flywheel up` runs as one group (instance ids <id>-1..N)
    max_batch: int = 1000            # records per batch at most
    max_wait_ms: float = 0.0         # once a record is in hand, wait this long for more (0: take what is there)
    idle_poll_ms: float = 100.0      # how long to block when nothing is waiting
    exactly_once: bool = True
    intra_op_threads: int = 1        # ONNX Runtime threads per session; scale out with processes
    max_request_bytes: int = 1_000_000
    cache_size: int = 0              # prediction cache entries per version; 0: off
    commit_timeout_s: float = 30.0
    online_groups: dict[str, list[str]] = field(default_factory=dict)  # model -> feature groups to enrich from
