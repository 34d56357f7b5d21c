"""`flywheel.aio`: the asyncio twin against the real broker and a worker serving the demo's churn
model, many requests in flight from one loop."""
import asyncio
import doctest

import pytest

import flywheel
import flywheel.aio
from tests.sdk_stack import CUSTOMER, churn_served


@pytest.fixture
def served(kafka, registry, data_dir, monkeypatch):
    with churn_served(kafka, registry, data_dir, monkeypatch) as env:
        yield env


def test_docstring_examples_run(served):
    failed, tried = doctest.testmod(flywheel.aio, raise_on_error=False)
    assert tried >= 8 and failed == 0


def test_concurrent_predicts_each_get_their_own_answer(served):
    async def main():
        async with flywheel.aio.connect() as client:
            asks = [{**CUSTOMER, "x0": float(i)} for i in range(40)]
            return asks, await asyncio.gather(*(client.predict("churn", f, timeout=60) for f in asks))
    asks, answers = asyncio.run(main())
    assert [a["numeric"]["x0"] for a in answers] == [f["x0"] for f in asks]
    assert len({a["request_id"] for a in answers}) == 40


def test_a_rejection_and_an_unknown_model_raise_as_in_the_sync_client(served):
    async def main():
        async with flywheel.aio.connect() as client:
            with pytest.raises(flywheel.RequestRejected) as info:
                await client.predict("churn", {"x0": 1.0, "plan": "pro"}, timeout=30)
            with pytest.raises(flywheel.UnknownModel, match="registered: churn"):
                await client.predict("churm", CUSTOMER)
            return info.value.reason
    assert asyncio.run(main()) == "missing_feature"
