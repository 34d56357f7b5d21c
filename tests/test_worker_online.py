"""Online feature enrichment: a request missing a feature gets it from the online store by
entity id, and the Prediction records where each feature came from."""
import time

from flywheel.feature_store import OnlineFeatures, StoreSettings, open_store
from flywheel.feature_store.online import OnlineFeatureLookup
from flywheel.streams.publisher import Publisher, Request

from tests.test_worker_support import RunningWorker, read_topic, register, small_model


def test_missing_feature_filled_from_the_online_store(kafka, registry, data_dir, make_topics):
    catalog = make_topics("m")
    register(kafka, registry, data_dir, "m")
    store = open_store(StoreSettings(), data_dir)
    store.put_online("profile", [OnlineFeatures("known", {"f03": 1.25}, int(time.time() * 1000))])
    row = small_model()[2].rows(0, 1)[0]
    partial = {k: v for k, v in row.items() if k != "f03"}
    publisher = Publisher(kafka, registry, "m")
    publisher.publish(Request(features=partial, entity_id="known", request_id="enriched"))
    publisher.publish(Request(features=partial, entity_id="stranger", request_id="still-missing"))
    publisher.flush()
    online = {"m": OnlineFeatureLookup(store, ["profile"])}
    with RunningWorker(kafka, registry, data_dir, online=online):
        (prediction, _), = read_topic(kafka, registry, catalog.predictions("m"), "Prediction", 1)
        (letter, _), = read_topic(kafka, registry, catalog.deadletter, "DeadLetter", 1)
    assert prediction["request_id"] == "enriched" and prediction["numeric"]["f03"] == 1.25
    assert prediction["feature_sources"]["f03"] == "online:profile"
    assert prediction["feature_sources"]["f00"] == "request"
    assert (letter["reason"], letter["source_offset"] >= 0) == ("missing_feature", True)
