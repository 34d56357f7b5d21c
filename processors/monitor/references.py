"""The monitor's reference profiles, read from the store per model version and cached. A version's
row is read again every `refresh_seconds`, found or not: a missing profile may have been stored
since (an import or retrain finishing), a stored one rebuilt (`flywheel models reference`). The
profile takes effect for the windows closed after that read; an unchanged row (same created_at) is
not parsed again."""
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from flywheel.feature_store import FeatureStore, ReferenceProfile
from flywheel.processors.monitor.profile import Profile, ProfileError
from flywheel.processors.runtime.failures import hold_back

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Cached:
    profile: Profile | None       # None: none stored, or an unusable one
    created_at: int | None        # of the stored row it was parsed from
    expires: float                # on the monotonic clock


class References:
    def __init__(self, store: FeatureStore, refresh_seconds: float, stop: threading.Event, processor: str,
                 clock: Callable[[], float] = time.monotonic):
        self.store, self.refresh_seconds, self.stop, self.processor = store, refresh_seconds, stop, processor
        self.clock = clock
        self._cached: dict[tuple[str, str], _Cached] = {}

    def __call__(self, model: str, version: str) -> Profile | None:
        cached = self._cached.get((model, version), _Cached(None, None, 0.0))
        if self.clock() < cached.expires:
            return cached.profile
        row = hold_back(lambda: self.store.get_profile(model, version), self.stop, self.processor)
        profile, created_at = cached.profile, cached.created_at
        if row is None:
            profile, created_at = None, None
        elif row.created_at != created_at:
            profile, created_at = _parse(row), row.created_at
        self._cached[(model, version)] = _Cached(profile, created_at, self.clock() + self.refresh_seconds)
        return profile


def _parse(row: ReferenceProfile) -> Profile | None:
    try:
        return Profile.from_bytes(row.profile)
    except ProfileError as e:
        log.warning("reference profile of %s/%s is unusable: %s", row.model, row.model_version, e)
        return None
