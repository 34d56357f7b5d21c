"""Typed failures of the Kafka layer. Each message is one line a person can act on."""


class StreamsError(Exception):
    pass


class BrokerBinaryNotFound(StreamsError):
    pass


class PortInUse(StreamsError):
    pass


class BrokerUnavailable(StreamsError):
    pass


class DeliveryFailed(StreamsError):
    def __init__(self, failures: list[str]):
        self.failures = failures
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        super().__init__(f"{len(failures)} record(s) not delivered: {failures[0]}{more}")


class PredictTimeout(StreamsError):
    pass


class UnknownTopic(StreamsError):
    pass


class RequestRejected(StreamsError):
    """A worker dead-lettered the request: `reason` is the dead letter's tag (missing_feature, ...)."""

    def __init__(self, request_id: str, model: str, reason: str, detail: str):
        self.request_id, self.model, self.reason, self.detail = request_id, model, reason, detail
        super().__init__(f"{reason}: {detail} (request {request_id} to model '{model}')")


class TopicsNotCopartitioned(StreamsError):
    pass
