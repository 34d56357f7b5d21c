"""How a fast path checks itself when built: it reads records fastavro wrote and must give them
back as fastavro would, else it switches itself off (a schema changed, a stale build)."""
from collections.abc import Callable

from flywheel.schemas.serde import AvroSerde


def agrees(read: Callable[[list[bytes]], list[dict]], serde: AvroSerde, samples: list[dict]) -> bool:
    """Whether `read` gives back every sample, in order (the fields it returns, NaN equal to NaN)."""
    try:
        got = read([serde.encode(r) for r in samples])
        return len(got) == len(samples) and all(same(mine, {k: r[k] for k in mine}) for mine, r in zip(got, samples))
    except (IndexError, KeyError, ValueError, UnicodeDecodeError):
        return False


def same(a, b) -> bool:
    """Equal, NaN equal to NaN, and of the same types."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and type(a) is type(b):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    return a == b and type(a) is type(b)
