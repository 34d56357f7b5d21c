"""The commit protocol of a consume-transform-produce batch loop.

A processor's loop is: consume a batch, transform it, produce the outputs (results, review
items, dead letters), commit the input offsets. `BatchCommitter` does the Kafka half, in one of
two modes chosen by one flag.

Exactly-once (default; Kafka transactions, readers use isolation.level=read_committed):

1. Once, before the first batch: `init_transactions()`. This also fences any earlier producer
   with the same `transactional.id` and aborts its open transaction, so a restarted instance
   must reuse its id (a killed worker's half-done batch is then aborted at once, not after the
   transaction timeout).
2. `begin()`: `begin_transaction()`.
3. `produce()` each output. Records are written to the broker but invisible to read_committed
   readers until the commit.
4. `commit(messages)`: `send_offsets_to_transaction(next offsets of the batch, group metadata)`
   then `commit_transaction()`. The outputs and the consumer group's offsets become visible
   together or not at all. The group metadata carries the consumer's generation, so a member
   that lost its partitions in a rebalance is fenced instead of committing twice (KIP-447).
5. Failures, each a typed exception after the committer has done what it can:
   - retriable (timeouts, coordinator moving): the step is retried until `timeout_s` is spent,
     then `CommitTimeout` (after aborting and rewinding, as below).
   - abortable (a produce failed, the offsets were refused): `abort_transaction()`, then every
     partition of the batch is rewound (`seek`) to the batch's first offset, and
     `TransactionAborted` is raised. Nothing of the batch is visible; the loop simply goes on
     and will consume and process the same records again.
   - fatal (fenced by a newer instance with the same transactional.id, or a producer fatal
     error): `FatalCommitError`. The producer is unusable; the process must exit and restart.

At-least-once (`exactly_once=False`): `begin()` does nothing; `produce()` is a plain produce;
`commit()` flushes the producer, checks every delivery report, then commits the offsets
synchronously. A failed delivery rewinds the batch and raises `DeliveryError` (the batch is
redone, so some outputs may be written twice); a failed offset commit raises `CommitError`
after rewinding. Duplicates are possible after a crash between flush and commit; loss is not.

In both modes a crash at any point loses nothing: the group restarts from the last committed
offsets, which never run ahead of outputs that are safely written.
"""
import time
from typing import Iterable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from flywheel.errors import FlywheelError, Unavailable


class CommitError(Unavailable):
    """The batch was not committed (the broker aborted, timed out or did not deliver). Its
    partitions have been rewound: process it again, after a wait like any unavailability."""


class TransactionAborted(CommitError):
    """The transaction was aborted (a produce failed, the broker refused the offsets) and the batch
    rewound: redo it."""


class CommitTimeout(CommitError):
    """The commit did not finish in time (the broker slow or away): aborted, rewound, redone."""


class DeliveryError(CommitError):
    """The broker did not acknowledge every output of the batch: the batch is rewound and redone."""


class FatalCommitError(FlywheelError):
    """The producer cannot go on (fenced by a newer instance, or fatal error): not the user's and
    not to be waited out; the process exits with a traceback and its supervisor restarts it."""


def batch_offsets(messages: Iterable[Message]) -> tuple[list[TopicPartition], list[TopicPartition]]:
    """(first offset, next offset to consume) of every partition in a batch."""
    first: dict[tuple[str, int], int] = {}
    last: dict[tuple[str, int], int] = {}
    for m in messages:
        tp = (m.topic(), m.partition())
        off = m.offset()
        if tp not in first or off < first[tp]:
            first[tp] = off
        if tp not in last or off > last[tp]:
            last[tp] = off
    return ([TopicPartition(t, p, o) for (t, p), o in first.items()],
            [TopicPartition(t, p, o + 1) for (t, p), o in last.items()])


class BatchCommitter:
    def __init__(self, consumer: Consumer, producer: Producer, exactly_once: bool = True,
                 timeout_s: float = 30.0):
        self.consumer = consumer
        self.producer = producer
        self.exactly_once = exactly_once
        self.timeout_s = timeout_s
        self._initialised = False
        self._open = False
        self._abandoned = False
        self._failures: list[str] = []
        self._produce_kwargs = {} if exactly_once else {"on_delivery": self._on_delivery}

    def start(self) -> None:
        """Step 1, once (later calls do nothing; `begin` calls it too). Worth calling at start-up:
        it fences a killed predecessor at once and keeps the first batch from paying for it."""
        if self.exactly_once and not self._initialised:
            self._call(self.producer.init_transactions, self.timeout_s)
            self._initialised = True

    def begin(self) -> None:
        if not self.exactly_once:
            return
        self.start()
        self._call(self.producer.begin_transaction)
        self._open = True

    def produce(self, topic: str, value: bytes, key: bytes | None = None, headers=None) -> None:
        self.produce_many(topic, [value], [key], [headers])

    def produce_many(self, topic: str, values: list[bytes], keys: list, headers: list) -> None:
        produce, kwargs = self.producer.produce, self._produce_kwargs
        for value, key, h in zip(values, keys, headers):
            while True:
                try:
                    produce(topic, value, key, headers=h, **kwargs)
                    break
                except BufferError:  # local queue full: serve delivery reports, then retry
                    self.producer.poll(0.01)

    def commit(self, messages: list[Message], upto: list[TopicPartition] | None = None) -> None:
        """Commit the batch's outputs and offsets. `upto` overrides the offsets committed: a
        processor that holds some records back (the joiner's waiting labels) commits less."""
        first, batch_upto = batch_offsets(messages)
        upto = batch_upto if upto is None else upto
        if self.exactly_once:
            self._commit_transaction(first, upto)
        else:
            self._commit_plain(first, upto)

    def abort(self, messages: list[Message]) -> None:
        """Give up on the batch: abort its transaction (if any) and rewind its partitions."""
        self._abort_open()
        self.rewind(messages)

    def rewind(self, messages: list[Message]) -> None:
        """Seek every partition of `messages` back to its earliest offset among them."""
        first, _ = batch_offsets(messages)
        self._rewind(first)

    def close(self) -> None:
        """Abort a transaction left open (shutdown mid-batch), flush what is queued; after
        `abandon()`, neither (the client is hung: the successor fences the transaction)."""
        if self._abandoned:
            return
        self._abort_open()
        self.producer.flush(self.timeout_s)

    def abandon(self) -> None:
        """Leave the open transaction to the broker: a client hung inside a commit can neither
        abort nor flush it. The next instance's `init_transactions` fences and aborts it."""
        self._abandoned = True
        self._open = False

    # -- exactly-once ----------------------------------------------------------------------------

    def _commit_transaction(self, first: list[TopicPartition], upto: list[TopicPartition]) -> None:
        deadline = time.monotonic() + self.timeout_s
        try:
            if upto:
                meta = self.consumer.consumer_group_metadata()
                self._retry(lambda: self.producer.send_offsets_to_transaction(upto, meta, self._left(deadline)),
                            deadline)
            self._retry(lambda: self.producer.commit_transaction(self._left(deadline)), deadline)
            self._open = False
        except _Abortable as e:
            self._abort_open()
            self._rewind(first)
            raise TransactionAborted(f"transaction aborted, batch will be redone: {e}") from None
        except _Expired as e:
            self._abort_open()
            self._rewind(first)
            raise CommitTimeout(f"commit did not finish in {self.timeout_s:g}s: {e}") from None

    def _abort_open(self) -> None:
        if self._open:
            self._open = False
            try:
                self.producer.abort_transaction(self.timeout_s)
            except KafkaException as e:
                err: KafkaError = e.args[0]
                if err.fatal():
                    raise FatalCommitError(f"cannot abort transaction: {err.str()}") from None
                raise CommitTimeout(f"cannot abort transaction: {err.str()}") from None

    # -- at-least-once ---------------------------------------------------------------------------

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._failures.append(f"{msg.topic()}: {err.str()}")

    def _commit_plain(self, first: list[TopicPartition], upto: list[TopicPartition]) -> None:
        remaining = self.producer.flush(self.timeout_s)
        if remaining or self._failures:
            failures, self._failures = self._failures, []
            self._rewind(first)
            what = failures[0] if failures else f"{remaining} record(s) still queued after {self.timeout_s:g}s"
            raise DeliveryError(f"{len(failures) or remaining} output(s) not delivered ({what}); batch will be redone")
        if not upto:
            return
        try:
            self.consumer.commit(offsets=upto, asynchronous=False)
        except KafkaException as e:
            self._rewind(first)
            raise CommitError(f"offset commit failed, batch will be redone: {e.args[0].str()}") from None

    # -- shared ----------------------------------------------------------------------------------

    def _rewind(self, first: list[TopicPartition]) -> None:
        for tp in first:
            try:
                self.consumer.seek(tp)
            except KafkaException:
                pass  # partition revoked meanwhile: its new owner starts from the committed offset

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except KafkaException as e:
            err: KafkaError = e.args[0]
            raise FatalCommitError(f"{fn.__name__} failed: {err.str()}") from None

    @staticmethod
    def _left(deadline: float) -> float:
        return max(0.1, deadline - time.monotonic())

    def _retry(self, step, deadline: float) -> None:
        while True:
            try:
                return step()
            except KafkaException as e:
                err: KafkaError = e.args[0]
                if err.fatal():
                    raise FatalCommitError(f"producer fenced or failed: {err.str()}") from None
                if err.txn_requires_abort():
                    raise _Abortable(err.str()) from None
                if not err.retriable() or time.monotonic() >= deadline:
                    raise _Expired(err.str()) from None
                time.sleep(0.05)


class _Abortable(FlywheelError):
    """Inside the committer only: the transaction must be aborted and the batch redone."""


class _Expired(FlywheelError):
    """Inside the committer only: a retriable call ran out of time."""
