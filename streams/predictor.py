"""Request-reply over Kafka: publish one request, wait for its prediction or its dead letter.

The reply readers (the model's prediction topic and the dead-letter topic) are positioned at
their ends before the request leaves, so the answer cannot slip past them; replies are matched
by request id. A request the worker refuses (a missing feature, a wrong type, ...) raises
RequestRejected with the dead letter's reason at once instead of waiting for the timeout.
"""
import time
from typing import Any

from schemas import AvroSerde
from schemas.errors import SerdeError
from schemas.features import FeatureSpec
from schemas.registry.base import SchemaRegistry
from streams.errors import PredictTimeout, RequestRejected
from streams.publisher import Publisher, Request
from streams.settings import KafkaSettings
from streams.subscriber import Received, Subscriber
from streams.topics import TopicCatalog


class Predictor:
    def __init__(self, settings: KafkaSettings, registry: SchemaRegistry, model: str,
                 feature_spec: FeatureSpec | None = None):
        self.model = model
        catalog = TopicCatalog(settings)
        self._requests_topic = catalog.requests(model)
        self._replies = Subscriber.predictions(settings, registry, model, start="latest")
        self._rejections = Subscriber(settings, registry, catalog.deadletter, "DeadLetter", start="latest")
        self._requests = AvroSerde(registry, "InferenceRequest")
        self._publisher = Publisher(settings, registry, model, feature_spec)
        # answers that arrived for other callers' requests: a prediction, or the rejection
        self._early: dict[str, dict | RequestRejected] = {}

    def predict(self, request: Request | dict[str, Any], timeout: float = 10.0) -> dict:
        """The prediction for one request; RequestRejected if a worker dead-lettered it,
        PredictTimeout if neither arrived within `timeout` seconds."""
        request_id = self._publisher.publish(request)
        self._publisher.flush(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if request_id in self._early:
                answer = self._early.pop(request_id)
                if isinstance(answer, RequestRejected):
                    raise answer
                return answer
            wait = min(0.2, max(0.0, deadline - time.monotonic()))
            for received in self._replies.poll_batch(500, wait):
                if isinstance(received.value, dict):
                    self._early[received.value["request_id"]] = received.value
            for received in self._rejections.poll_batch(500, 0.0):
                self._note_rejection(received)
        raise PredictTimeout(f"no prediction for request {request_id} from model '{self.model}' "
                             f"within {timeout:g}s: is an inference worker running for it?")

    def _note_rejection(self, received: Received) -> None:
        letter = received.value
        if not isinstance(letter, dict) or letter["source_topic"] != self._requests_topic:
            return
        try:
            request_id = self._requests.decode(letter["payload"])["request_id"]
        except SerdeError:  # a payload that never was a request: not one of ours
            return
        self._early[request_id] = RequestRejected(request_id, self.model, letter["reason"], letter["detail"])

    def close(self) -> None:
        self._replies.close()
        self._rejections.close()

    def __enter__(self) -> "Predictor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
