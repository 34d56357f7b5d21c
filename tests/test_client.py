"""`import flywheel`: the client SDK's calls and its docstring examples, against the real broker
and a worker serving the demo's churn model."""
import doctest

import pytest
from flywheel.streams.subscriber import Subscriber

import flywheel
from flywheel import client as client_module
from tests.sdk_stack import CUSTOMER, churn_served


@pytest.fixture
def served(kafka, registry, data_dir, monkeypatch):
    with churn_served(kafka, registry, data_dir, monkeypatch) as env:
        yield env


def test_docstring_examples_run(served):
    failed, tried = doctest.testmod(client_module, optionflags=doctest.ELLIPSIS, raise_on_error=False)
    assert tried >= 6 and failed == 0


def test_predict_answers_its_own_request_and_the_label_is_keyed_by_it(served, kafka, registry):
    with flywheel.connect() as client:
        other = client.publisher("churn").publish(CUSTOMER)       # someone else's request, in flight too
        prediction = client.predict("churn", {**CUSTOMER, "x0": 2.0}, timeout=30)
        assert prediction["request_id"] != other and prediction["numeric"]["x0"] == 2.0
        client.label(prediction["request_id"], "churn", model="churn")
    with Subscriber(kafka, registry, f"{kafka.topic_prefix}labels", "GroundTruth", start="earliest") as labels:
        got = labels.read(1, timeout=20)
    assert [(r.key, r.value["label"], r.value["model"]) for r in got] == [
        (prediction["request_id"].encode(), "churn", "churn")]


def test_a_rejected_request_raises_its_reason(served):
    with flywheel.connect() as client, pytest.raises(flywheel.RequestRejected) as info:
        client.predict("churn", {"x0": 1.0, "plan": "pro"}, timeout=30)
    assert info.value.reason == "missing_feature"


def test_an_unregistered_model_is_refused_naming_the_registered_ones(served):
    with flywheel.connect() as client:
        with pytest.raises(flywheel.UnknownModel, match=r"model 'churm' is not registered \(registered: churn\)"):
            client.predict("churm", CUSTOMER)
        with pytest.raises(flywheel.UnknownModel):
            client.subscribe("churm")
        assert dict(client.models)["churn"].versions.keys() == {"v1"}
        with pytest.raises(TypeError):
            client.models["x"] = None                               # a read-only view


def test_connect_reads_keywords_over_the_environment(served, kafka, data_dir):
    with flywheel.connect(kafka={"topic_prefix": "elsewhere."}) as client:
        assert client.config.kafka.topic_prefix == "elsewhere." and client.config.data_dir == data_dir
        assert client.models == {}                                 # no `models` topic under that prefix


def test_import_flywheel_loads_no_client_until_asked():
    import subprocess
    import sys
    code = "import sys, flywheel; print('flywheel.client' in sys.modules, 'flywheel.streams' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
