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


class TopicsNotCopartitioned(StreamsError):
    pass
