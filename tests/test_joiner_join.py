"""The join against the real embedded store: labels before and after their prediction, twice,
late, for unknown requests; every version of a request joined; replays flagged."""
import pytest
from flywheel.feature_store import StoreSettings, open_store
from flywheel.feature_store.errors import StoreUnavailable
from flywheel.feature_store.sqlite import MAX_KEYS
from flywheel.processors.joiner.join import REPLAY_FLAG, Held, Join, Label, prediction_record
from flywheel.processors.joiner.settings import JoinerSettings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

T0 = 1_700_000_000_000
HOUR = 3_600_000


def prediction(request_id: str, version: str = "1", predicted_at: int = T0, replay: bool = False, **extra):
    return prediction_record({"request_id": request_id, "entity_id": f"e-{request_id}", "model": "m",
                              "model_version": version, "event_time": predicted_at - 5, "predicted_at": predicted_at,
                              "label": "yes", "scores": {"yes": 0.7, "no": 0.3}, "confidence": 0.7,
                              "numeric": {"x": 1.5}, "categorical": {"c": "a"}, **extra}, replay)


def label(request_id: str, value: str = "yes", at: int = T0 + HOUR, replay: bool = False, model: str | None = "m"):
    return Label(request_id, at, model, value, None, "test", replay)


@pytest.fixture
def join(data_dir):
    with open_store(StoreSettings(), data_dir) as store:
        yield Join(store, JoinerSettings(join_window_seconds=86_400))


def stored(join: Join, request_id: str):
    return [f for f in join.store.feedback("m", T0 - HOUR, T0 + HOUR) if f.request_id == request_id]


def test_label_after_prediction_joins_with_features_and_times(join):
    join.add_predictions([prediction("r1")])
    result = join.add_labels([label("r1")])
    assert [f.request_id for f in result.feedback] == ["r1"] and not result.held
    [record] = stored(join, "r1")
    assert (record.predicted_label, record.true_label, record.label_count) == ("yes", "yes", 1)
    assert record.numeric == {"x": 1.5} and record.categorical == {"c": "a"} and record.scores["yes"] == 0.7
    assert (record.event_time, record.predicted_at, record.labelled_at) == (T0 - 5, T0, T0 + HOUR)


def test_label_before_prediction_is_held_then_joins_every_version_that_comes(join):
    early = label("r2", at=T0 - 1000)
    result = join.add_labels([early])
    assert result.held == [early] and not result.feedback and join.held["r2"] == Held(early)
    joined = join.add_predictions([prediction("r2")])
    assert [f.request_id for f in joined.feedback] == ["r2"] and join.held["r2"] == Held(early, met=True)
    assert joined.met == [early]        # the caller shortens its hold (held_after_join_seconds)
    assert stored(join, "r2")[0].true_label == "yes"
    assert [f.model_version for f in join.add_predictions([prediction("r2", "2")]).feedback] == ["2"]
    # Its hold ends: it met predictions, so it is not unknown, and it is held no more.
    assert join.add([], [], [early]).unknown == [] and "r2" in join.held
    join.release([early])
    assert "r2" not in join.held and join.add_predictions([prediction("r2", "3")]).feedback == []


def test_a_label_read_again_after_a_restart_is_held_for_the_versions_still_to_come(data_dir):
    """A label made before its request's version 1 was predicted met it while held; the joiner
    restarts (a new Join, nothing held) and reads the label again: it finds version 1 in the store
    and is held on, as before, so version 2 coming after the restart is joined with it."""
    early = label("r9", at=T0 - 1000)
    with open_store(StoreSettings(), data_dir) as store:
        before = Join(store, JoinerSettings(join_window_seconds=86_400))
        before.add_labels([early])
        before.add_predictions([prediction("r9")])
        after = Join(store, JoinerSettings(join_window_seconds=86_400))
        again = after.add_labels([early])
        assert again.held == again.met == [early] and after.held["r9"] == Held(early, met=True)
        assert [f.model_version for f in after.add_predictions([prediction("r9", "2")]).feedback] == ["2"]
        assert sorted((f.model_version, f.label_count) for f in store.feedback("m", T0 - HOUR, T0 + HOUR)) == \
            [("1", 1), ("2", 1)]


def test_redelivered_label_changes_nothing_and_a_new_label_replaces_and_counts(join):
    join.add_predictions([prediction("r3")])
    join.add_labels([label("r3", "no")])
    join.add_labels([label("r3", "no")])
    assert [(f.true_label, f.label_count) for f in stored(join, "r3")] == [("no", 1)]
    join.add_labels([label("r3", "yes", at=T0 + 2 * HOUR)])
    assert [(f.true_label, f.label_count) for f in stored(join, "r3")] == [("yes", 2)]


def test_second_held_label_replaces_the_first(join):
    join.add_labels([label("r4", "no", at=T0 - 2000)])
    result = join.add_labels([label("r4", "yes", at=T0 - 1000)])
    assert result.replaced_held == [label("r4", "yes", at=T0 - 1000)]
    join.add_predictions([prediction("r4")])
    assert [f.true_label for f in stored(join, "r4")] == ["yes"]
    # A label that finds the prediction takes the held one's place for versions still to come.
    replacing = join.add_labels([label("r4", "no", at=T0)])
    assert replacing.held == replacing.met == [label("r4", "no", at=T0)]
    assert [f.true_label for f in join.add_predictions([prediction("r4", "2")]).feedback] == ["no"]


def test_label_past_the_window_is_late(join):
    join.add_predictions([prediction("r5")])
    result = join.add_labels([label("r5", at=T0 + 25 * HOUR)])
    assert [(lb.request_id, p.model_version) for lb, p in result.late] == [("r5", "1")]
    assert not result.feedback and stored(join, "r5") == []


def test_label_without_prediction_after_its_wait_is_unknown(join):
    join.add_labels([label("r6")])
    assert join.add([], [], [label("r6")]).unknown == [label("r6")]
    # Given up on twice (its batch was redone): unknown again, until it is released.
    assert join.add([], [], [label("r6")]).unknown == [label("r6")]
    join.release([label("r6")])
    assert join.held == {} and join.add([], [], [label("r6")]).unknown == []
    # One replaced meanwhile by a later label is not given up on: the later one is held.
    join.add_labels([label("r7", "no")])
    join.add_labels([label("r7", "yes")])
    assert join.add([], [], [label("r7", "no")]).unknown == []
    join.release([label("r7", "no")])
    assert join.held == {"r7": Held(label("r7", "yes"))}


def test_holds_change_only_when_the_store_took_the_batch(join, monkeypatch):
    join.add_labels([label("r14")])

    def down(*args, **kwargs):
        raise StoreUnavailable("down")
    monkeypatch.setattr(join.store, "put_feedback", down)
    with pytest.raises(StoreUnavailable):
        join.add([prediction("r14")], [label("r15")])
    assert join.held == {"r14": Held(label("r14"))}
    monkeypatch.undo()
    result = join.add([prediction("r14")], [label("r15")])        # the same batch again
    assert [f.request_id for f in result.feedback] == ["r14"] and result.held == [label("r15")]
    assert join.held == {"r14": Held(label("r14"), met=True), "r15": Held(label("r15"))}


def test_every_version_of_a_request_is_joined_and_other_models_are_not(join):
    join.add_predictions([prediction("r8", "1"), prediction("r8", "2", role="CANARY")])
    result = join.add_labels([label("r8")])
    assert sorted(f.model_version for f in result.feedback) == ["1", "2"]
    assert join.add_labels([label("r8", model="other")]).held != []


def test_replays_are_stored_flagged(join):
    join.add_predictions([prediction("r9", replay=True)])
    join.add_labels([label("r9")])
    join.add_predictions([prediction("r10")])
    join.add_labels([label("r10", replay=True)])
    assert REPLAY_FLAG in stored(join, "r9")[0].flags and REPLAY_FLAG in stored(join, "r10")[0].flags
    join.add_labels([label("r11", replay=True)])
    assert join.add_predictions([prediction("r11")]).feedback[0].flags == [REPLAY_FLAG]


def test_replays_do_not_overwrite_live_rows_but_live_traffic_overwrites_replays(join):
    join.add_predictions([prediction("r12")])
    join.add_labels([label("r12", "no")])
    join.add_predictions([prediction("r12", predicted_at=T0 + 5000, replay=True)])
    join.add_labels([label("r12", "yes", replay=True)])
    assert [(f.flags, f.true_label, f.predicted_at) for f in stored(join, "r12")] == [([], "no", T0)]
    assert [p.replay for p in join.store.get_predictions(["r12"])["r12"]] == [False]
    join.add_predictions([prediction("r13", replay=True)])
    join.add_labels([label("r13", replay=True)])
    join.add_labels([label("r13", "no")])
    assert [(f.flags, f.true_label) for f in stored(join, "r13")] == [([REPLAY_FLAG], "no")]


def store_calls(join: Join, batch) -> tuple[int, dict[str, int]]:
    """The write transactions and the SELECT statements per table the embedded store ran for one batch."""
    statements: list[str] = []
    join.store._db.set_trace_callback(statements.append)
    try:
        batch()
    finally:
        join.store._db.set_trace_callback(None)
    selects = [s.split(" FROM ")[1].split()[0] for s in statements if s.startswith("SELECT")]
    return statements.count("BEGIN IMMEDIATE"), {t: selects.count(t) for t in selects}


@pytest.mark.parametrize("n", [3, 250])
def test_a_batch_is_one_read_and_one_write_whatever_its_size(join, n):
    join.add([prediction(f"early{i}") for i in range(n)])                  # stored: labels will find them
    join.add([], [label(f"first{i}") for i in range(n)])                   # held: predictions will find them
    join.add([], [label(f"gone{i}") for i in range(n)])                    # held: their wait will end
    batch = lambda: join.add([prediction(f"first{i}") for i in range(n)] + [prediction(f"new{i}") for i in range(n)],  # noqa: E731
                             [label(f"early{i}") for i in range(n)] + [label(f"later{i}") for i in range(n)],
                             [label(f"gone{i}") for i in range(n)])
    results = []
    transactions, selects = store_calls(join, lambda: results.append(batch()))
    (result,) = results
    assert len(result.feedback) == 2 * n and len(result.held) == n and len(result.unknown) == n
    # The stored predictions of the batch's labels and the stored labels of its feedback (for
    # counting): one read each (an IN query per MAX_KEYS request ids), and one write transaction.
    # Predictions and given-up labels read nothing: the labels held for them are in memory.
    assert transactions == 1
    assert selects == {"predictions_by_request": -(-2 * n // MAX_KEYS), "feedback_by_request": -(-2 * n // MAX_KEYS)}
    join.release([label(f"gone{i}") for i in range(n)])
    assert sorted(join.held) == sorted([f"first{i}" for i in range(n)] + [f"later{i}" for i in range(n)])


event = st.one_of(
    st.tuples(st.just("prediction"), st.sampled_from(["r0", "r1", "r2"]), st.sampled_from(["1", "2"])),
    st.tuples(st.just("label"), st.sampled_from(["r0", "r1", "r2"]), st.sampled_from(["yes", "no"]),
              st.sampled_from([None, "m", "other"])))


def _records(events: list[tuple], first: int) -> tuple[list, list]:
    predictions = [prediction(e[1], e[2]) for e in events if e[0] == "prediction"]
    labels = [Label(e[1], T0 + HOUR + first + i, e[3], e[2], None, "test")
              for i, e in enumerate(events) if e[0] == "label"]
    return predictions, labels


def _state(join: Join) -> tuple:
    feedback = sorted((f.request_id, f.model_version, f.true_label, f.labelled_at, f.label_count)
                      for f in join.store.feedback("m", T0 - HOUR, T0 + HOUR))
    return feedback, sorted(join.held.items())


def _states(tmp_path_factory, events: list[tuple], cuts: set[int]) -> list[tuple]:
    """The store's end state with the events in batches cut at `cuts`, then one at a time."""
    bounds = [0, *sorted(c for c in cuts if c < len(events)), len(events)]
    batches = [(events[a:b], a) for a, b in zip(bounds, bounds[1:])]
    states = []
    for batched in (True, False):
        with open_store(StoreSettings(), tmp_path_factory.mktemp("store")) as store:
            join = Join(store, JoinerSettings(join_window_seconds=86_400))
            for part, first in batches:
                predictions, labels = _records(part, first)
                if batched:
                    join.add(predictions, labels)
                else:
                    for p in predictions:
                        join.add([p])
                    for lb in labels:
                        join.add([], [lb])
            states.append(_state(join))
    return states


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(event, min_size=1, max_size=12), cuts=st.sets(st.integers(1, 11)))
def test_a_batch_leaves_the_store_as_its_records_one_at_a_time_do(tmp_path_factory, events, cuts):
    """Whatever the batches, the store ends as if each record came alone, in the batch's order:
    its predictions, then its labels as they came (the docstring of Join.add)."""
    before, after = _states(tmp_path_factory, events, cuts)
    assert before == after


def test_a_label_that_came_first_joins_versions_that_come_in_later_batches(tmp_path_factory):
    """Found by the test above with two versions, when a label that came first was a pending row
    in the store, removed once the first batch with any of its predictions had joined it: version
    2's prediction, in a later batch, then found no label. A held label stays held for its wait."""
    events = [("label", "r1", "yes", None), ("prediction", "r1", "1"), ("prediction", "r1", "2")]
    together, apart = _states(tmp_path_factory, events, {1}), _states(tmp_path_factory, events, {1, 2})
    assert together[0] == apart[0]
