"""One writer per model's state: the rollout and the retrainer change one model at the same
moment, from their own registries (as from their own processes), and no event undoes another."""
import threading
from dataclasses import replace
from functools import partial

import pytest
from flywheel.processors.models import DeploymentError, EventLog, ModelFollower, ModelRegistry

from tests.test_worker_support import small_model

ROUNDS = 20


def _act(start: threading.Barrier, call, failures: list[BaseException]) -> None:
    start.wait()
    try:
        call()
    except DeploymentError:              # refused on the winner's state: fine
        pass
    except BaseException as e:
        failures.append(e)


def test_a_promotion_is_never_undone_by_a_concurrent_register(kafka, registry, data_dir, make_topics):
    make_topics()
    onnx, manifest, _ = small_model("v1")
    retrainer = ModelRegistry(kafka, registry, data_dir, actor="retrainer")
    rollout = ModelRegistry(kafka, registry, data_dir, actor="rollout")
    failures: list[BaseException] = []
    for round_ in range(ROUNDS):
        model = f"race{round_}"
        for version in ("v1", "v2"):
            retrainer.register(onnx, replace(manifest, model=model, version=version))
        retrainer.canary(model, "v2", 0.2)
        start = threading.Barrier(2)
        threads = [threading.Thread(target=_act, args=(start, partial(rollout.promote, model, "v2"), failures)),
                   threading.Thread(target=_act, args=(start, partial(
                       retrainer.register, onnx, replace(manifest, model=model, version="v3")), failures))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failures, failures
    retrainer.close()
    rollout.close()

    follower = ModelFollower(kafka, registry)    # what every worker ends up with
    follower.catch_up()
    final = follower.deployments()
    follower.close()
    log = EventLog(data_dir)
    for round_ in range(ROUNDS):
        model = f"race{round_}"
        assert (final[model].live_version, final[model].canary_version) == ("v2", None), model
        assert set(final[model].versions) == {"v1", "v2", "v3"}
        events = log.events(model)
        assert [e["state_version"] for e in sorted(events, key=lambda e: e["state_version"])] == \
            list(range(1, len(events) + 1))
        promoted = next(e["state_version"] for e in events if e["kind"] == "PROMOTED")
        assert all(e["live_version"] == "v2" for e in events if e["state_version"] > promoted)


def test_an_undecided_canary_is_not_replaced(kafka, registry, data_dir, make_topics):
    make_topics()
    onnx, manifest, _ = small_model("v1")
    models = ModelRegistry(kafka, registry, data_dir, actor="test")
    for version in ("v1", "v2", "v3"):
        models.register(onnx, replace(manifest, model="m", version=version))
    models.canary("m", "v2", 0.2)
    with pytest.raises(DeploymentError, match="v2 is still an undecided canary"):
        models.canary("m", "v3", 0.2)
    models.canary("m", "v2", 0.5)                # its own share may change
    assert models.deployment("m").canary_version == "v2"
    models.close()
