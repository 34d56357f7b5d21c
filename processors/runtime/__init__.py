"""Plumbing every stream processor shares, wired in one place by the base class
(processor.py: `StreamProcessor`): the failure model (failures.py: dead letter,
backpressure or exit) and the size budget (budget.py), Prometheus metrics on their own
registry, dead letters, graceful shutdown, consumer-lag gauges and the commit protocol of a
consume-transform-produce batch loop (exactly-once or at-least-once)."""
from flywheel.processors.runtime.commit import (
                                       BatchCommitter,
                                       CommitError,
                                       CommitTimeout,
                                       DeliveryError,
                                       FatalCommitError,
                                       TransactionAborted,
                                       batch_offsets,
)
from flywheel.processors.runtime.deadletter import DeadLetterWriter
from flywheel.processors.runtime.lag import LagTracker
from flywheel.processors.runtime.metrics import BulkHistogram, ProcessorMetrics, start_metrics_server
from flywheel.processors.runtime.shutdown import stop_on_signals

__all__ = [
    "BatchCommitter", "CommitError", "CommitTimeout", "DeliveryError", "FatalCommitError",
    "TransactionAborted", "batch_offsets", "BulkHistogram", "DeadLetterWriter", "LagTracker", "ProcessorMetrics",
    "start_metrics_server", "stop_on_signals",
]
