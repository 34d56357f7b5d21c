"""The asyncio twin of the client SDK: `flywheel.aio.connect()` and the `AsyncClient` it returns.

Many requests can be in flight from one event loop: each model's answers are read by one reply
router, which hands each prediction to the request waiting for it. Kafka's clients block, so
their calls run on the client's own small thread pool (the same bridge confluent_kafka.aio
builds; see docs/guide/sdk.md for why and what it costs).

The examples run against a stack that serves the demo's `churn` model (`flywheel up --demo`).
"""
from __future__ import annotations

import asyncio
import dataclasses
import os
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from flywheel.client import Client, Features
from flywheel.config import Config, load_config
from flywheel.processors.models.deployment import Deployment
from flywheel.streams.errors import RequestRejected
from flywheel.streams.predictor import Answer, Replies, no_answer
from flywheel.streams.publisher import Publisher, Request
from flywheel.streams.subscriber import Received, Start, Subscriber

T = TypeVar("T")


def connect(config: str | os.PathLike | Config | None = None, *, threads: int = 8,
            **overrides: Any) -> AsyncClient:
    """An asyncio client configured as `flywheel.connect()` is; `threads` bounds the pool that
    runs Kafka's blocking calls (one per model is busy reading answers).

    >>> import asyncio, flywheel.aio
    >>> async def main():
    ...     async with flywheel.aio.connect() as client:
    ...         print("churn" in await client.models())
    >>> asyncio.run(main())
    True
    """
    if not isinstance(config, Config):
        config = load_config(config, **overrides)
    return AsyncClient(Client(config), ThreadPoolExecutor(threads, thread_name_prefix="flywheel-aio"))


class AsyncClient:
    """One connection to a Flywheel deployment for code that lives in an event loop."""

    def __init__(self, client: Client, pool: ThreadPoolExecutor):
        self.client = client
        self._pool = pool
        self._setup = asyncio.Lock()   # one publisher and one router per model, even when raced
        self._routers: dict[str, ReplyRouter] = {}

    async def models(self) -> Mapping[str, Deployment]:
        """The registered models as they are now (see `Client.models`)."""
        return await self._run(lambda: self.client.models)

    async def publisher(self, model: str) -> Publisher:
        """`model`'s publisher (see `Client.publisher`); its `publish` only queues, so it may be
        called from the loop; `await client.flush()` waits for delivery."""
        async with self._setup:
            return await self._run(self.client.publisher, model)

    async def predict(self, model: str, features: Features, timeout: float = 10.0) -> dict[str, Any]:
        """Publish one request and wait for ITS prediction, without blocking the loop; raises
        RequestRejected or PredictTimeout as `Client.predict` does.

        >>> import asyncio, flywheel.aio
        >>> customer = {f"x{i}": 0.1 for i in range(8)} | {"plan": "pro"}
        >>> async def main():
        ...     async with flywheel.aio.connect() as client:
        ...         answers = await asyncio.gather(*(client.predict("churn", customer, timeout=30)
        ...                                          for _ in range(3)))
        ...         print(len({a["request_id"] for a in answers}))
        >>> asyncio.run(main())
        3
        """
        request = _with_id(features)
        router = await self._router(model)
        publisher = await self.publisher(model)
        answer = router.expect(request.request_id)
        try:
            await self._run(_publish_now, publisher, request, timeout)
            return await asyncio.wait_for(answer, timeout)
        except TimeoutError:
            raise no_answer(request.request_id, model, timeout) from None
        finally:
            router.forget(request.request_id)

    def subscribe(self, model: str, start: Start = "latest", group_id: str | None = None) -> Subscription:
        """`model`'s predictions as an async iterator of `Received` (see `Client.subscribe`); it
        starts reading when first used, so `start="latest"` means from then.

        >>> import asyncio, flywheel.aio
        >>> customer = {f"x{i}": 0.1 for i in range(8)} | {"plan": "pro"}
        >>> async def main():
        ...     async with flywheel.aio.connect() as client, client.subscribe("churn") as predictions:
        ...         request_id = (await client.publisher("churn")).publish(customer)
        ...         async for p in predictions:
        ...             if p.value["request_id"] == request_id:
        ...                 return p.value["model_version"]
        >>> asyncio.run(main())
        'v1'
        """
        return Subscription(lambda: self.client.subscribe(model, start, group_id), self._run)

    async def label(self, request_id: str, label: str | None = None, *, value: float | None = None,
                    model: str | None = None) -> None:
        """Record the truth of one request and wait until the broker has it.

        >>> import asyncio, flywheel.aio
        >>> customer = {f"x{i}": 0.1 for i in range(8)} | {"plan": "pro"}
        >>> async def main():
        ...     async with flywheel.aio.connect() as client:
        ...         answer = await client.predict("churn", customer, timeout=30)
        ...         await client.label(answer["request_id"], "churn", model="churn")
        >>> asyncio.run(main())
        """
        self.client.label(request_id, label, value=value, model=model)
        await self.flush()

    async def flush(self, timeout: float = 30.0) -> None:
        """Wait until every request and label queued so far has reached the broker."""
        await self._run(self.client.flush, timeout)

    async def close(self) -> None:
        """Stop the reply routers, deliver what is queued, close every reader."""
        try:
            for router in self._routers.values():
                await router.stop()
            await self._run(self.client.close)
        finally:
            self._routers.clear()
            self._pool.shutdown(wait=False)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _router(self, model: str) -> ReplyRouter:
        async with self._setup:
            if model not in self._routers:
                await self._run(self.client.check_registered, model)
                replies = await self._run(Replies, self.client.config.kafka, self.client.registry, model)
                self._routers[model] = ReplyRouter(replies, self._run)
            return self._routers[model]

    async def _run(self, call: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, call, *args)


class ReplyRouter:
    """Reads one model's answers while any request waits, and resolves each waiting request's
    future with its own answer; everyone else's answers are dropped as they pass."""

    def __init__(self, replies: Replies, run: Callable[..., Any]):
        self._replies = replies
        self._run = run
        self._waiting: dict[str, asyncio.Future] = {}
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self._route())

    def expect(self, request_id: str) -> asyncio.Future:
        """The future of `request_id`'s answer: ask before publishing, so it cannot pass unseen."""
        future = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        return future

    def forget(self, request_id: str) -> None:
        self._waiting.pop(request_id, None)

    async def _route(self) -> None:
        while not self._stopping:
            for request_id, answer in (await self._run(self._replies.poll, 0.1)).items():
                future = self._waiting.pop(request_id, None)
                if future is not None and not future.done():
                    _resolve(future, answer)

    async def stop(self) -> None:
        self._stopping = True
        await self._task
        await self._run(self._replies.close)


class Subscription:
    """An async iterator over a Subscriber's records; close it, or use `async with`."""

    def __init__(self, open_subscriber: Callable[[], Subscriber], run: Callable[..., Any]):
        self._open = open_subscriber
        self._run = run
        self._subscriber: Subscriber | None = None
        self._batch: deque[Received] = deque()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Received:
        if self._subscriber is None:
            self._subscriber = await self._run(self._open)
        while not self._batch:
            self._batch.extend(await self._run(self._subscriber.poll_arrived, 500, 0.2))
        return self._batch.popleft()

    async def close(self) -> None:
        if self._subscriber is not None:
            await self._run(self._subscriber.close)

    async def __aenter__(self) -> Subscription:
        if self._subscriber is None:
            self._subscriber = await self._run(self._open)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _with_id(features: Features) -> Request:
    """The request with its id fixed now, so its answer can be expected before it is sent."""
    request = features if isinstance(features, Request) else Request(features=features)
    return request if request.request_id else dataclasses.replace(request, request_id=uuid.uuid4().hex)


def _publish_now(publisher: Publisher, request: Request, timeout: float) -> None:
    publisher.publish(request)
    publisher.flush(timeout)


def _resolve(future: asyncio.Future, answer: Answer) -> None:
    if isinstance(answer, RequestRejected):
        future.set_exception(answer)
    else:
        future.set_result(answer)
