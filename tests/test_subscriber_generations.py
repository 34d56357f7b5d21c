"""A standalone reader of a topic written as generations (the embedded stack's feedback, which
the trigger follows by `catch_up`) reads each new generation as it comes: a reader caught up on
the old one polled no more, so it never learnt of the new one and read nothing after a rotation."""
import time

from flywheel.streams.generations import REFRESH_SECONDS, generation_name
from flywheel.streams.subscriber import Subscriber

from tests.test_rotation import rotating, write  # noqa: F401 (a fixture)


def caught_up(reader: Subscriber, count: int, timeout: float = 30.0) -> list:
    got, deadline = [], time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += reader.catch_up(5.0)[0]
        time.sleep(0.5)
    return got


def test_catch_up_reads_a_new_generation_after_a_rotation(rotating, registry):  # noqa: F811
    kafka, catalog, rotator = rotating
    reader = Subscriber(kafka, registry, catalog.labels, "GroundTruth", start="latest")
    try:
        write(kafka, catalog.labels, range(10))
        assert len(caught_up(reader, 10)) == 10
        assert reader.catch_up(5.0) == ([], True)
        rotator.rotate(time.monotonic())              # 10 records held: generation 1 starts
        time.sleep(REFRESH_SECONDS + 0.5)             # a producer sees the new generation
        write(kafka, catalog.labels, range(10, 20))
        got = caught_up(reader, 10)
        assert len(got) == 10 and {m.topic for m in got} == {generation_name(catalog.labels, 1)}
    finally:
        reader.close()
