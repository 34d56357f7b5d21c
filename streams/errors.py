"""Typed failures of the Kafka layer. Each message is one line a person can act on; each class
says on which branch of flywheel.errors it sits."""
from flywheel.errors import BadInput, BadRecord, FlywheelError, NotFound, Refused, Unavailable, UserError


class StreamsError(FlywheelError):
    """Base of the Kafka layer's errors; one not on a branch below is a bug."""


class BrokerBinaryNotFound(StreamsError, UserError):
    """The environment has no embedded broker binary: the user installs it or points at a cluster."""


class PortInUse(StreamsError, UserError):
    """A port the user chose (or left at its default) is taken by another process."""


class BrokerUnavailable(StreamsError, Unavailable):
    """The broker did not answer, or not in time: backpressure, retried by every processor."""


class DeliveryFailed(StreamsError, Unavailable):
    """The broker did not acknowledge records (down, timed out, or it refused them: `failures`
    says which and why); nothing is lost that the caller still holds: send them again."""

    def __init__(self, failures: list[str]):
        self.failures = failures
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        super().__init__(f"{len(failures)} record(s) not delivered: {failures[0]}{more}")


class PredictTimeout(StreamsError, Unavailable):
    """No answer in time: no inference worker is running for the model, or it is behind."""


class BadRequest(StreamsError, BadInput, ValueError):
    """A request or label the caller built is malformed (no features, an unknown field, both or
    neither of label and value): the caller's to fix before anything is sent."""


class RecordTooLarge(StreamsError, BadRecord):
    """The Kafka client refused one record as larger than `[kafka] max_message_bytes`: that
    record's content is too big; nothing was sent for it."""

    reason = "oversize"


class UnknownTopic(StreamsError, NotFound):
    """A topic the user named, or one Flywheel needs, does not exist."""


class RequestRejected(StreamsError, Refused):
    """A worker dead-lettered the request: `reason` is the dead letter's tag (missing_feature, ...)."""

    def __init__(self, request_id: str, model: str, reason: str, detail: str):
        self.request_id, self.model, self.reason, self.detail = request_id, model, reason, detail
        super().__init__(f"{reason}: {detail} (request {request_id} to model '{model}')")


class TopicsNotCopartitioned(StreamsError, UserError):
    """An existing cluster's topics disagree in partition count: the operator recreates them."""
