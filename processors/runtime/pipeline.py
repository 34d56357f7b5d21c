"""Overlapping one batch's commit with the next batch's work.

A commit is several broker round trips (offsets into the transaction, the flush of the batch's
outputs, EndTxn; or flush and offset commit at-least-once) during which a batch loop's one
thread would only wait. `CommitPipeline` runs each commit on a background thread while the loop
consumes and computes the next batch:

1. consume batch N+1 and compute its outputs into an `Outbox` (nothing is produced yet) while
   batch N's commit runs;
2. `settle(N+1's records)`: wait for N's commit. If it failed, the committer has aborted N;
   N+1's records come after N's on every partition they share, so both batches are rewound
   together (each partition to its earliest offset of the two), N+1's outbox is dropped and
   the CommitError is raised;
3. `commit(N+1's records, outbox)`: begin, produce the outbox, hand the commit to the thread.

Invariants: at most one transaction is open and at most one commit in flight; a batch's outputs
are produced only after every earlier batch committed, so outputs keep their inputs' order and
the guarantees are BatchCommitter's. Whatever changes what the loop serves, and shutdown, settle
first.

A commit that outlives `stuck_after_s` (twice the committer's own timeout, plus a margin) raises
`CommitStuck`: the Kafka client is hung (librdkafka #5456: `send_offsets_to_transaction` ignores
its timeout when the group coordinator restarts mid-transaction), and only a new process gets
out of it; its successor's `init_transactions` fences the open transaction. Commits run on daemon
threads, so a hung one cannot keep the exiting process alive.
"""
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Message
from flywheel.processors.runtime.commit import BatchCommitter, CommitError, FatalCommitError

Headers = list[tuple[str, bytes | None]] | None


@dataclass
class Outbox:
    """A batch's outputs, held until the previous batch has committed."""

    chunks: list[tuple[str, list[bytes], list[bytes | None], list[Headers]]] = field(default_factory=list)

    def produce(self, topic: str, value: bytes, key: bytes | None = None, headers: Headers = None) -> None:
        self.chunks.append((topic, [value], [key], [headers]))

    def produce_many(self, topic: str, values: list[bytes], keys: list[bytes | None], headers: list[Headers]) -> None:
        self.chunks.append((topic, values, keys, headers))

    def __len__(self) -> int:
        return sum(len(values) for _, values, _, _ in self.chunks)

    def write(self, committer: BatchCommitter) -> None:
        """Produce every output into the committer's open transaction (or its queue)."""
        for topic, values, keys, headers in self.chunks:
            committer.produce_many(topic, values, keys, headers)


@dataclass
class Settled:
    finished_at: float        # time.time() when the commit returned
    tag: Any                  # what the loop handed over with the batch


class CommitStuck(FatalCommitError):
    """A commit outlived every timeout inside the Kafka client: exit, a new process fences it."""


class CommitPipeline:
    def __init__(self, committer: BatchCommitter, stuck_after_s: float | None = None):
        self.committer = committer
        self.stuck_after_s = stuck_after_s or 2 * committer.timeout_s + 10
        self._inflight: tuple[Future, list[Message], Any] | None = None

    def settle(self, holding: list[Message] = ()) -> Settled | None:
        """Wait for the commit in flight (None if there is none). If it failed, rewind it
        together with `holding` (records consumed since, none of their outputs produced) and
        raise its CommitError; if it hangs, raise CommitStuck."""
        if self._inflight is None:
            return None
        future, messages, tag = self._inflight
        self._inflight = None
        try:
            return Settled(future.result(self.stuck_after_s), tag)
        except FutureTimeout:
            self.committer.abandon()
            raise CommitStuck(f"a commit has not returned in {self.stuck_after_s:g}s, past the Kafka "
                              f"client's own timeouts (librdkafka #5456): exiting, so that a restarted "
                              f"process fences its open transaction") from None
        except CommitError:
            self.committer.rewind(messages + list(holding))
            raise

    def commit(self, messages: list[Message], outbox: Outbox, tag: Any = None) -> None:
        """Produce the batch's outputs in a new transaction and start committing it. The caller
        has settled the previous batch."""
        assert self._inflight is None, "settle() the batch in flight first"
        self.committer.begin()
        outbox.write(self.committer)
        future = Future()
        threading.Thread(target=self._commit, args=(future, messages), name="commit", daemon=True).start()
        self._inflight = (future, messages, tag)

    def abort(self, messages: list[Message]) -> None:
        """Give up on a batch whose outputs were being produced (an error mid-produce)."""
        self.committer.abort(messages)

    def close(self) -> None:
        self.settle()

    def _commit(self, future: Future, messages: list[Message]) -> None:
        future.set_running_or_notify_cancel()
        try:
            self.committer.commit(messages)
            future.set_result(time.time())
        except BaseException as e:   # handed to settle(), which decides
            future.set_exception(e)
