"""The client SDK: `flywheel.connect()` and the `Client` it returns.

A client publishes requests, reads predictions, asks for one prediction and waits for it
(request-reply), and labels what it learns later. It needs only the broker and the schema
registry: nothing here imports ONNX Runtime, scikit-learn or the store, so `pip install flywheel`
without extras is enough (see docs/guide/sdk.md).

The examples below run against a stack that serves the demo's `churn` model (`flywheel up --demo`).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from flywheel.config import Config, load_config
from flywheel.processors.models.deployment import Deployment
from flywheel.processors.models.errors import UnknownModel
from flywheel.processors.models.follower import ModelFollower
from flywheel.schemas.registry.base import SchemaRegistry
from flywheel.streams.errors import UnknownTopic
from flywheel.streams.labels import LabelPublisher
from flywheel.streams.predictor import Predictor
from flywheel.streams.publisher import Publisher, Request
from flywheel.streams.subscriber import Start, Subscriber
from flywheel.wiring import schema_registry

Features = Request | dict[str, Any]


def connect(config: str | os.PathLike | Config | None = None, **overrides: Any) -> Client:
    """A client configured as the `flywheel` command is: `config` is a TOML file (default
    $FLYWHEEL_CONFIG, else ./flywheel.toml if present) or a loaded `Config`; FLYWHEEL_*
    environment variables come next, then `overrides` (load_config's keywords, such as
    `data_dir=...` or `kafka={"bootstrap": "host:9092"}`).

    >>> import flywheel
    >>> with flywheel.connect() as client:
    ...     print("churn" in client.models)
    True
    """
    if not isinstance(config, Config):
        config = load_config(config, **overrides)
    return Client(config)


class Client:
    """One connection to a Flywheel deployment. Thread-safe only as its parts are: use one
    client per thread, or the asyncio twin (`flywheel.aio`) for many requests in flight."""

    def __init__(self, config: Config):
        self.config = config
        self.registry: SchemaRegistry = schema_registry(config)
        self._publishers: dict[str, Publisher] = {}
        self._predictors: dict[str, Predictor] = {}
        self._labels: LabelPublisher | None = None
        self._follower: ModelFollower | None = None

    @property
    def models(self) -> Mapping[str, Deployment]:
        """The registered models as they are now, read-only: each one's live, canary and shadow
        versions and every version registered.

        >>> import flywheel
        >>> with flywheel.connect() as client:
        ...     print(client.models["churn"].live_version)
        v1
        """
        if self._follower is None:
            try:
                self._follower = ModelFollower(self.config.kafka, self.registry)
            except UnknownTopic:        # no `models` topic yet: nothing was ever registered
                return MappingProxyType({})
        self._follower.catch_up()
        return MappingProxyType(self._follower.deployments())

    def publisher(self, model: str) -> Publisher:
        """The publisher of `model`'s requests (one per model, kept by the client). Its
        `publish` queues a request and returns its id; `flush` (or closing the client) waits
        until the broker has them all.

        >>> import flywheel
        >>> customer = {f"x{i}": 0.1 for i in range(8)} | {"plan": "pro"}
        >>> with flywheel.connect() as client:
        ...     request_id = client.publisher("churn").publish(customer)
        ...     print(len(request_id))
        32
        """
        if model not in self._publishers:
            self.check_registered(model)
            self._publishers[model] = Publisher(self.config.kafka, self.registry, model)
        return self._publishers[model]

    def subscribe(self, model: str, start: Start = "latest", group_id: str | None = None) -> Subscriber:
        """`model`'s predictions from `start` ("latest": from now; "earliest"; or epoch
        milliseconds), each a `Received` whose `value` is the Prediction record. Without a
        `group_id` the reader sees every partition; with one, it shares them with the group's
        other members. Close it (or use `with`) when done.

        >>> import flywheel
        >>> customer = {f"x{i}": 0.1 for i in range(8)} | {"plan": "pro"}
        >>> with flywheel.connect() as client, client.subscribe("churn") as predictions:
        ...     request_id = client.publisher("churn").publish(customer)
        ...     mine = next(p for p in predictions if p.value["request_id"] == request_id)
        ...     print(mine.value["model_version"])
        v1
        """
        self.check_registered(model)
        return Subscriber.predictions(self.config.kafka, self.registry, model, start=start, group_id=group_id)

    def predict(self, model: str, features: Features, timeout: float = 10.0) -> dict[str, Any]:
        """Publish one request and wait for ITS prediction (matched by request id). Raises
        RequestRejected at once if the worker refused it (a missing feature, ...), and
        PredictTimeout if no answer came within `timeout` seconds.

        >>> import flywheel
        >>> customer = {f"x{i}": 0.1 for i in range(8)} | {"plan": "pro"}
        >>> with flywheel.connect() as client:
        ...     prediction = client.predict("churn", customer, timeout=30)
        ...     print(prediction["label"] in ("churn", "stay"), prediction["model_version"])
        True v1
        """
        if model not in self._predictors:
            self.check_registered(model)
            self._predictors[model] = Predictor(self.config.kafka, self.registry, model)
        return self._predictors[model].predict(features, timeout)

    def label(self, request_id: str, label: str | None = None, *, value: float | None = None,
              model: str | None = None) -> None:
        """Record the truth of one request: its class (`label`) or, for a regressor, its
        `value`. Queued; `flush` or closing the client delivers it.

        >>> import flywheel
        >>> customer = {f"x{i}": 0.1 for i in range(8)} | {"plan": "pro"}
        >>> with flywheel.connect() as client:
        ...     request_id = client.predict("churn", customer, timeout=30)["request_id"]
        ...     client.label(request_id, "churn", model="churn")
        """
        if self._labels is None:
            self._labels = LabelPublisher(self.config.kafka, self.registry)
        self._labels.label(request_id, label, value, model)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every request and label queued so far has reached the broker; raise
        DeliveryFailed naming what did not."""
        for publisher in self._publishers.values():
            publisher.flush(timeout)
        if self._labels is not None:
            self._labels.flush(timeout)

    def close(self) -> None:
        """Deliver what is queued, then close every reader the client opened."""
        try:
            self.flush()
        finally:
            for predictor in self._predictors.values():
                predictor.close()
            if self._follower is not None:
                self._follower.close()
            self._predictors.clear()
            self._follower = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_registered(self, model: str) -> None:
        """Raise UnknownModel, naming the registered ones, unless `model` is registered: a model
        nobody registered has no worker, and its requests would wait forever."""
        known = self.models
        if model not in known:
            raise UnknownModel(f"model {model!r} is not registered (registered: {', '.join(sorted(known)) or 'none'})")
