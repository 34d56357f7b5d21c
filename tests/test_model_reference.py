"""`flywheel models reference`: a version's drift reference rebuilt from a file of rows (the
version run on them) or from its stored feedback over a time range, replacing the stored profile;
refusals in one line. And the monitor's cache of profiles, which reads a rebuilt one again.
From the store and the data dir alone (no broker)."""
import csv
import threading
import time

from flywheel.feature_store import FeedbackRecord, ReferenceProfile, StoreSettings, open_store
from flywheel.processors.models.store import ArtifactStore
from flywheel.processors.monitor.profile import PREDICTED_LABEL, PREDICTED_SCORE, Profile
from flywheel.processors.monitor.references import References
from flywheel.processors.training import synthetic, train

from flywheel.cli import main

NOW = int(time.time() * 1000)
HOUR = 3_600_000


def _write_rows(path, n: int, seed: int, drop: str | None = None, text_in: str | None = None):
    """n rows of m v1's features (plus a target column the command leaves out)."""
    data = synthetic(n, seed=seed)
    names = [f.name for f in data.spec.numeric if f.name != drop]
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow([*names, "target"])
        for row, target in zip(data.numeric, data.target):
            values = [f"{v:.6f}" for f, v in zip(data.spec.numeric, row) if f.name != drop]
            if text_in:
                values[names.index(text_in)] = "high"
            out.writerow([*values, target])
    return path


def _stored(data_dir) -> tuple[Profile, int] | None:
    with open_store(StoreSettings(), data_dir) as store:
        row = store.get_profile("m", "v1")
    return (Profile.from_bytes(row.profile), row.created_at) if row else None


def _reference(data_dir, *flags) -> int:
    return main(["--data-dir", str(data_dir), "models", "reference", *flags])


def test_a_file_of_rows_becomes_the_stored_profile_and_a_second_replaces_it(registered, data_dir, tmp_path,
                                                                            capsys):
    assert _reference(data_dir, "m", "v1", "--from", str(_write_rows(tmp_path / "a.csv", 150, seed=2))) == 0
    said = capsys.readouterr().err
    assert "m v1: 150 rows, 32 features (32 numeric, 0 categorical)" in said and "the version had none" in said
    first, _ = _stored(data_dir)
    assert first.rows == 150 and first.numeric[PREDICTED_SCORE].count == 150
    assert sum(first.categorical[PREDICTED_LABEL].counts().values()) == 150     # the version's answers
    assert _reference(data_dir, "m", "v1", "--from", str(_write_rows(tmp_path / "b.csv", 80, seed=3))) == 0
    assert "replaces the one of" in capsys.readouterr().err
    second, _ = _stored(data_dir)
    assert second.rows == 80 and second.numeric["f00"].count == 80
    assert second.numeric["f00"].sketch.get_quantile(0.5) != first.numeric["f00"].sketch.get_quantile(0.5)


def test_a_file_that_does_not_fit_the_version_is_refused_in_one_line(registered, data_dir, tmp_path, capsys):
    empty = tmp_path / "empty.csv"
    empty.write_text("f00,f01,target\n")
    cases = [(_write_rows(tmp_path / "short.csv", 20, seed=2, drop="f03"), "lack 1 of m v1's feature columns: f03"),
             (_write_rows(tmp_path / "text.csv", 20, seed=2, text_in="f05"), "'f05' is declared numeric, but row 1"),
             (empty, "has a header but no rows")]
    for path, why in cases:
        assert _reference(data_dir, "m", "v1", "--from", str(path)) == 1
        said = capsys.readouterr().err.strip()
        assert why in said and len(said.splitlines()) == 1, said
    assert _reference(data_dir, "m", "v9", "--from", str(cases[0][0])) == 1
    assert "m/v9: not registered" in capsys.readouterr().err
    assert _reference(data_dir, "nosuch", "v1", "--from", str(cases[0][0])) == 1
    assert "model 'nosuch' is not registered" in capsys.readouterr().err
    assert _stored(data_dir) is None


def test_integer_codes_of_a_categorical_feature_are_its_categories_and_other_values_refused(data_dir, tmp_path,
                                                                                         capsys):
    plans = {"plan": ("1", "2", "10")}      # codes, in the order an encoder sorts them
    data = synthetic(200, n_numeric=2, categories=plans, seed=1)
    trained = train("c", "v1", data.numeric, data.target, data.spec, data.categorical, kind="mlp")
    ArtifactStore(data_dir).save(trained.onnx_bytes, trained.manifest)
    rows = tmp_path / "rows.csv"
    rows.write_text("f00,f01,plan\n" + "".join(f"0.5,-1,{code}\n" for code in ("1", "2", "10", "10")))
    assert _reference(data_dir, "c", "v1", "--from", str(rows)) == 0
    assert "4 rows, 3 features (2 numeric, 1 categorical)" in capsys.readouterr().err
    with open_store(StoreSettings(), data_dir) as store:
        profile = Profile.from_bytes(store.get_profile("c", "v1").profile)
    assert profile.categorical["plan"].counts() == {"1": 1.0, "2": 1.0, "10": 2.0}
    rows.write_text("f00,f01,plan\n0.5,-1,gold\n0.5,-1,silver\n")
    assert _reference(data_dir, "c", "v1", "--from", str(rows)) == 1
    said = capsys.readouterr().err.strip()
    assert "column 'plan' holds none of the version's categories (1, 2, 10), first 'gold'" in said
    assert len(said.splitlines()) == 1


def _feedback(version: str, at: int, i: int, label: str) -> FeedbackRecord:
    return FeedbackRecord(f"r{version}{at}{i}", "e", "m", version, at + i, at + i, at + i,
                          {"f00": float(i), "f01": 1.0}, {}, label, None, {}, 0.6 + i / 100, "class_1")


def test_a_range_of_the_versions_feedback_becomes_its_profile(registered, data_dir, capsys):
    with open_store(StoreSettings(), data_dir) as store:
        store.put_feedback([_feedback("v1", NOW - HOUR, i, "class_1" if i < 6 else "class_0") for i in range(8)]
                           + [_feedback("v1", NOW - 3 * HOUR, i, "class_1") for i in range(5)]     # before the range
                           + [_feedback("v2", NOW - HOUR, i, "class_0") for i in range(4)])        # another version
    assert _reference(data_dir, "m", "v1", "--since", "2h", "--dry-run") == 0
    assert "not stored (--dry-run) m v1: 8 rows" in capsys.readouterr().err and _stored(data_dir) is None
    assert _reference(data_dir, "m", "v1", "--since", "2h") == 0
    assert "prediction.label class_1 75%, class_0 25%" in capsys.readouterr().err
    profile, _ = _stored(data_dir)
    assert profile.rows == 8 and profile.numeric["f00"].sketch.get_max_value() == 7.0
    assert profile.numeric["f02"].missing == 8          # a feature the rows lack is missing, not dropped
    assert profile.categorical[PREDICTED_LABEL].counts() == {"class_1": 6.0, "class_0": 2.0}
    assert _reference(data_dir, "m", "v1", "--since", "20m") == 1
    said = capsys.readouterr().err.strip()
    assert "m v1 has no feedback from" in said and len(said.splitlines()) == 1
    assert _stored(data_dir)[0].rows == 8


def test_the_monitor_reads_a_rebuilt_profile_once_its_cache_expires(data_dir):
    now = [0.0]
    with open_store(StoreSettings(), data_dir) as store:
        references = References(store, 30.0, threading.Event(), "monitor", clock=lambda: now[0])
        assert references("m", "v1") is None
        spec = synthetic(1).spec
        store.put_profile(ReferenceProfile("m", "v1", 1, Profile(spec, rows=10).to_bytes()))
        assert references("m", "v1") is None               # a miss is looked for again later
        now[0] = 31.0
        first = references("m", "v1")
        assert first.rows == 10 and references("m", "v1") is first
        store.put_profile(ReferenceProfile("m", "v1", 2, Profile(spec, rows=20).to_bytes()))
        assert references("m", "v1") is first              # cached until it expires
        now[0] = 62.0
        assert references("m", "v1").rows == 20
        now[0] = 93.0
        assert references("m", "v1").rows == 20
