"""Request-reply over Kafka: publish one request, wait for its prediction.

The reply reader is positioned at the end of the prediction topic before the request leaves,
so the answer cannot slip past it; replies are matched by request id.
"""
import time
from typing import Any

from schemas.features import FeatureSpec
from schemas.registry.base import SchemaRegistry
from streams.errors import PredictTimeout
from streams.publisher import Publisher, Request
from streams.settings import KafkaSettings
from streams.subscriber import Subscriber


class Predictor:
    def __init__(self, settings: KafkaSettings, registry: SchemaRegistry, model: str,
                 feature_spec: FeatureSpec | None = None):
        self.model = model
        self._replies = Subscriber.predictions(settings, registry, model, start="latest")
        self._publisher = Publisher(settings, registry, model, feature_spec)
        self._early: dict[str, dict] = {}  # replies that arrived for other callers' requests

    def predict(self, request: Request | dict[str, Any], timeout: float = 10.0) -> dict:
        request_id = self._publisher.publish(request)
        self._publisher.flush(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if request_id in self._early:
                return self._early.pop(request_id)
            for received in self._replies.poll_batch(500, min(0.2, max(0.0, deadline - time.monotonic()))):
                if isinstance(received.value, dict):
                    self._early[received.value["request_id"]] = received.value
        raise PredictTimeout(f"no prediction for request {request_id} from model '{self.model}' "
                             f"within {timeout:g}s: is an inference worker running for it?")

    def close(self) -> None:
        self._replies.close()

    def __enter__(self) -> "Predictor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
