"""Online features at inference against the real embedded store: one store lookup per batch
and feature group, a short-lived cache, request features winning, sources recorded."""
from flywheel.feature_store import OnlineFeatures, StoreSettings, open_store
from flywheel.feature_store.online import OnlineFeatureLookup
from store_harness import FakeClock


class CountingStore:
    """The real store, with its batched reads counted."""

    def __init__(self, store):
        self.store, self.calls = store, []

    def get_online(self, group, entity_ids):
        self.calls.append((group, list(entity_ids)))
        return self.store.get_online(group, entity_ids)


def make(tmp_path, groups=("profile",), ttl=5.0):
    store = open_store(StoreSettings(), tmp_path)
    store.put_online("profile", [OnlineFeatures("u1", {"age": 40, "city": "Oslo", "score": None}, 0),
                                 OnlineFeatures("u2", {"age": 22.5}, 0)])
    store.put_online("risk", [OnlineFeatures("u1", {"age": 99.0, "band": "high"}, 0)])
    counting, clock = CountingStore(store), FakeClock(0)
    return OnlineFeatureLookup(counting, groups, cache_ttl_s=ttl, clock=lambda: clock.now / 1000), counting, clock


def test_request_features_win_and_stored_ones_fill_the_gaps(tmp_path):
    lookup, counting, _ = make(tmp_path, groups=("profile", "risk"))
    out = lookup.enrich([
        {"entity_id": "u1", "numeric": {"age": 35.0, "income": None}, "categorical": {}},
        {"entity_id": "u2", "numeric": {"age": None}, "categorical": {"city": "Rome"}},
        {"entity_id": "nobody", "numeric": {"x": 1.0}, "categorical": {}},
    ])
    assert out[0].numeric == {"age": 35.0, "income": None}
    assert out[0].categorical == {"city": "Oslo", "band": "high"}
    assert out[0].sources == {"age": "request", "city": "online:profile", "band": "online:risk"}
    assert out[1].numeric == {"age": 22.5} and out[1].sources == {"age": "online:profile", "city": "request"}
    assert (out[2].numeric, out[2].sources) == ({"x": 1.0}, {"x": "request"})
    assert len(counting.calls) == 2          # one batched read per group for the whole batch
    assert sorted(counting.calls[0][1]) == ["nobody", "u1", "u2"]


def test_the_cache_serves_repeats_until_it_expires(tmp_path):
    lookup, counting, clock = make(tmp_path, ttl=5.0)
    assert lookup.fetch(["u1", "ghost"])["u1"]["age"] == (40, "online:profile")
    assert lookup.fetch(["u1", "ghost", "u1"]).keys() == {"u1"}   # unknown ids are cached as absent too
    assert len(counting.calls) == 1 and (lookup.hits, lookup.misses) == (2, 2)
    counting.store.put_online("profile", [OnlineFeatures("u1", {"age": 41}, 1)])
    clock.now += 6_000
    assert lookup.fetch(["u1"])["u1"]["age"] == (41, "online:profile")
    assert len(counting.calls) == 2 and counting.calls[1][1] == ["u1"]


def test_the_cache_is_bounded(tmp_path):
    lookup, counting, _ = make(tmp_path)
    lookup.max_cached = 2
    lookup.fetch(["a", "b", "c"])
    lookup.fetch(["a"])
    assert counting.calls[-1][1] == ["a"]    # "a" was evicted, so it was read again
