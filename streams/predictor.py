"""Request-reply over Kafka: publish one request, wait for its prediction or its dead letter.

The reply readers (the model's prediction topic and the dead-letter topic) are positioned at
their ends before the request leaves, so the answer cannot slip past them; replies are matched
by request id. A request the worker refuses (a missing feature, a wrong type, ...) raises
RequestRejected with the dead letter's reason at once instead of waiting for the timeout.
"""
import time
from typing import Any

from flywheel.schemas import AvroSerde
from flywheel.schemas.errors import SerdeError
from flywheel.schemas.features import FeatureSpec
from flywheel.schemas.registry.base import SchemaRegistry
from flywheel.streams.errors import PredictTimeout, RequestRejected
from flywheel.streams.publisher import Publisher, Request
from flywheel.streams.settings import KafkaSettings
from flywheel.streams.subscriber import Received, Subscriber
from flywheel.streams.topics import TopicCatalog

Answer = dict | RequestRejected     # a Prediction record, or why the worker refused the request


class Replies:
    """The answers to one model's requests from the moment it is built: predictions and the
    dead letters of its requests, by request id. Both `Predictor` and the asyncio client's
    reply router read through it, so they match answers the same way."""

    def __init__(self, settings: KafkaSettings, registry: SchemaRegistry, model: str):
        self.model = model
        catalog = TopicCatalog(settings)
        self._requests_topic = catalog.requests(model)
        self._predictions = Subscriber.predictions(settings, registry, model, start="latest")
        self._rejections = Subscriber(settings, registry, catalog.deadletter, "DeadLetter", start="latest")
        self._requests = AvroSerde(registry, "InferenceRequest")

    def poll(self, wait: float) -> dict[str, Answer]:
        """What arrived within `wait` seconds, by request id (anyone's requests, not only ours)."""
        answers: dict[str, Answer] = {}
        for received in self._predictions.poll_arrived(500, wait):
            if isinstance(received.value, dict):
                answers[received.value["request_id"]] = received.value
        for received in self._rejections.poll_batch(500, 0.0):
            rejection = self._rejection(received)
            if rejection is not None:
                answers[rejection.request_id] = rejection
        return answers

    def _rejection(self, received: Received) -> RequestRejected | None:
        letter = received.value
        if not isinstance(letter, dict) or letter["source_topic"] != self._requests_topic:
            return None
        try:
            request_id = self._requests.decode(letter["payload"])["request_id"]
        except SerdeError:  # a payload that never was a request: not one of ours
            return None
        return RequestRejected(request_id, self.model, letter["reason"], letter["detail"])

    def close(self) -> None:
        self._predictions.close()
        self._rejections.close()


class Predictor:
    def __init__(self, settings: KafkaSettings, registry: SchemaRegistry, model: str,
                 feature_spec: FeatureSpec | None = None):
        self.model = model
        self._replies = Replies(settings, registry, model)
        self._publisher = Publisher(settings, registry, model, feature_spec)

    def predict(self, request: Request | dict[str, Any], timeout: float = 10.0) -> dict:
        """The prediction for one request; RequestRejected if a worker dead-lettered it,
        PredictTimeout if neither arrived within `timeout` seconds."""
        request_id = self._publisher.publish(request)
        self._publisher.flush(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # Only this request's answer is kept: one predict is in flight at a time, and keeping
            # everyone else's (the topic is shared) would grow without bound in a long-lived client.
            answer = self._replies.poll(min(0.2, max(0.0, deadline - time.monotonic()))).get(request_id)
            if isinstance(answer, RequestRejected):
                raise answer
            if answer is not None:
                return answer
        raise no_answer(request_id, self.model, timeout)

    def close(self) -> None:
        self._replies.close()

    def __enter__(self) -> "Predictor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def no_answer(request_id: str, model: str, timeout: float) -> PredictTimeout:
    return PredictTimeout(f"no prediction for request {request_id} from model '{model}' "
                          f"within {timeout:g}s: is an inference worker running for it?")
