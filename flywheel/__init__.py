"""Flywheel: streaming inference and feedback over Kafka.

`import flywheel` is the client SDK; it costs little, because its names load on first use
(PEP 562), and `flywheel.errors` and the other leaf modules import without pulling the client in.

    import flywheel
    with flywheel.connect() as client:               # flywheel.toml, FLYWHEEL_* env, keywords
        prediction = client.predict("churn", {"x0": 0.3, "x1": -1.2, ..., "plan": "pro"})
        client.label(prediction["request_id"], "churn")

`flywheel.aio` is its asyncio twin; docs/guide/sdk.md shows both.

The rest of the package is the application: the CLI, configuration, and the embedded stack's
supervisor, which wire schemas/, streams/, feature_store/ and processors/ together.
"""
import importlib
from typing import TYPE_CHECKING, Any

# public name -> the module that defines it
_EXPORTS = {
    "connect": "flywheel.client",
    "Client": "flywheel.client",
    "Request": "flywheel.streams.publisher",
    "RequestRejected": "flywheel.streams.errors",
    "PredictTimeout": "flywheel.streams.errors",
    "DeliveryFailed": "flywheel.streams.errors",
    "UnknownModel": "flywheel.processors.models.errors",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from flywheel.client import Client, connect
    from flywheel.processors.models.errors import UnknownModel
    from flywheel.streams.errors import DeliveryFailed, PredictTimeout, RequestRejected
    from flywheel.streams.publisher import Request


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'flywheel' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value      # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
