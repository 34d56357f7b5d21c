"""Replay tooling: re-drive a topic's history over a time range into a topic, re-drive dead
letters after a fix, with rate limits, dry runs, and checkpoints per run id (see engine.py for
the resume guarantee and headers.py for the headers every replayed record carries)."""
from flywheel.streams.replay.checkpoint import Checkpoints, Run
from flywheel.streams.replay.engine import Decision, Output, Replay, ReplayOptions, ReplayReport
from flywheel.streams.replay.errors import BadTimeRange, ReplayError, ReplayStalled, RunMismatch
from flywheel.streams.replay.ranges import PartitionRange, TimeRange

__all__ = ["Checkpoints", "Run", "Decision", "Output", "Replay", "ReplayOptions", "ReplayReport",
           "BadTimeRange", "ReplayError", "ReplayStalled", "RunMismatch", "PartitionRange", "TimeRange"]
