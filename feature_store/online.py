"""Online features at inference: one batched store lookup per batch, a short-lived in-process
cache in front of it, and the merge rule. A feature the request brings (non-null) wins over the
stored one; stored values fill what the request lacks. Each feature's origin is returned so the
worker can record it on the Prediction's `feature_sources` ("request" or "online:<group>")."""
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flywheel.feature_store.base import FeatureStore

REQUEST = "request"


@dataclass
class Enriched:
    numeric: dict[str, float | None]
    categorical: dict[str, str | None]
    sources: dict[str, str] = field(default_factory=dict)   # feature -> "request" | "online:<group>"


class OnlineFeatureLookup:
    """`fetch` serves cached entities and asks the store once per feature group for the rest;
    entities the store does not have are cached as absent too, so a hot unknown id costs no
    lookups until the cache entry expires. Earlier groups win over later ones."""

    def __init__(self, store: FeatureStore, groups: Sequence[str], cache_ttl_s: float = 5.0,
                 max_cached: int = 100_000, clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.groups = list(groups)
        self.cache_ttl_s = cache_ttl_s
        self.max_cached = max_cached
        self.clock = clock
        self._cache: OrderedDict[str, tuple[float, dict[str, tuple[Any, str]]]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def fetch(self, entity_ids: Sequence[str]) -> dict[str, dict[str, tuple[Any, str]]]:
        """entity id -> {feature: (value, source)} for every stored feature of every group."""
        now = self.clock()
        found: dict[str, dict[str, tuple[Any, str]]] = {}
        missing = []
        for entity in dict.fromkeys(entity_ids):
            cached = self._cache.get(entity)
            if cached is not None and cached[0] > now:
                found[entity] = cached[1]
                self.hits += 1
            else:
                missing.append(entity)
        self.misses += len(missing)
        if missing:
            fresh = self._load(missing)
            for entity in missing:
                self._remember(entity, now, fresh.get(entity, {}))
            found.update(fresh)
        return {e: f for e, f in found.items() if f}

    def merge(self, numeric: Mapping[str, float | None], categorical: Mapping[str, str | None],
              stored: Mapping[str, tuple[Any, str]] | None) -> Enriched:
        out = Enriched(dict(numeric), dict(categorical))
        out.sources = {name: REQUEST for name, v in {**numeric, **categorical}.items() if v is not None}
        for name, (value, source) in (stored or {}).items():
            if name in out.sources or value is None:
                continue
            target = out.categorical if isinstance(value, str) else out.numeric
            target[name] = value if isinstance(value, str) else float(value)
            out.sources[name] = source
        return out

    def enrich(self, requests: Sequence[Mapping[str, Any]]) -> list[Enriched]:
        """For decoded InferenceRequests (mappings with entity_id, numeric, categorical)."""
        stored = self.fetch([r["entity_id"] for r in requests])
        return [self.merge(r.get("numeric") or {}, r.get("categorical") or {}, stored.get(r["entity_id"]))
                for r in requests]

    def _load(self, entity_ids: list[str]) -> dict[str, dict[str, tuple[Any, str]]]:
        out: dict[str, dict[str, tuple[Any, str]]] = {}
        for group in self.groups:
            source = f"online:{group}"
            for entity, row in self.store.get_online(group, entity_ids).items():
                features = out.setdefault(entity, {})
                for name, value in row.features.items():
                    features.setdefault(name, (value, source))
        return out

    def _remember(self, entity: str, now: float, features: dict) -> None:
        self._cache[entity] = (now + self.cache_ttl_s, features)
        self._cache.move_to_end(entity)
        while len(self._cache) > self.max_cached:
            self._cache.popitem(last=False)
