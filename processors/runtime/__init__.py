"""Plumbing every stream processor shares: the failure model (failures.py: dead letter,
backpressure or exit) and the size budget (budget.py), Prometheus metrics on their own
registry, dead letters, graceful shutdown, consumer-lag gauges and the commit protocol of a
consume-transform-produce batch loop (exactly-once or at-least-once)."""
from processors.runtime.commit import (BatchCommitter, CommitError, CommitTimeout, DeliveryError,
                                       FatalCommitError, TransactionAborted, batch_offsets)
from processors.runtime.deadletter import DeadLetterWriter
from processors.runtime.lag import LagTracker
from processors.runtime.metrics import BulkHistogram, ProcessorMetrics, start_metrics_server
from processors.runtime.shutdown import stop_on_signals

__all__ = [
    "BatchCommitter", "CommitError", "CommitTimeout", "DeliveryError", "FatalCommitError",
    "TransactionAborted", "batch_offsets", "BulkHistogram", "DeadLetterWriter", "LagTracker", "ProcessorMetrics",
    "start_metrics_server", "stop_on_signals",
]
