"""A review queue a person can keep up with: low-confidence answers go to review within a share of
each model's predictions, least confident first, the rest counted; faults always go; the
low-confidence line comes from the version's validation answers."""
import numpy as np
import pytest
from flywheel.processors.models import MatrixLayout
from flywheel.processors.training import synthetic, train
from flywheel.processors.worker.outputs import Answers, ReviewBudget
from flywheel.processors.worker.settings import WorkerSettings
from flywheel.schemas.setting import for_model
from flywheel.streams.publisher import Publisher, Request

from flywheel.config import ConfigError, load_config
from tests.test_worker_support import RunningWorker, read_topic, register, small_model, wait_for


def _answers(confidence: list[float], faults: tuple[int, ...] = (), flagged: bool = True) -> Answers:
    flags = [["non_finite_output"] if k in faults else ["low_confidence"] if flagged else []
             for k in range(len(confidence))]
    return Answers(True, ("a", "b"), np.zeros((len(confidence), 2)), [0] * len(confidence),
                   np.asarray(confidence), [True] * len(confidence), flags)


def test_least_confident_within_the_share_faults_always_the_rest_counted():
    confidence = np.random.default_rng(0).uniform(0.5, 0.6, 1000)
    selection = ReviewBudget(0.02).select(_answers(confidence.tolist(), faults=(7, 8, 9)))
    rationed = [k for k in selection.items if k not in (7, 8, 9)]
    assert {7, 8, 9} <= set(selection.items) and len(rationed) == 20
    assert set(rationed) == set(np.argsort(np.where(np.isin(np.arange(1000), [7, 8, 9]), 9, confidence))[:20])
    assert selection.dropped == {"low_confidence": 977}


def test_unspent_share_carries_over_between_small_batches_up_to_a_burst():
    budget = ReviewBudget(0.02, burst=5)
    sent = sum(len(budget.select(_answers([0.55])).items) for _ in range(200))
    assert sent == 4                                   # 200 answers at 2%, one batch of one at a time
    for _ in range(1000):                              # a quiet spell banks no more than the burst
        budget.select(_answers([0.9] * 10, flagged=False))
    assert budget.tokens == 5 and len(budget.select(_answers([0.5] * 50)).items) == 5


def test_the_low_confidence_line_is_drawn_from_the_versions_validation_answers():
    data = synthetic(3000, n_numeric=8, seed=1)
    trained = train("m", "v1", data.numeric, data.target, data.spec, hidden=(16,), max_iter=30)
    fresh = synthetic(3000, n_numeric=8, seed=2)
    confidence = trained.estimator.predict_proba(MatrixLayout(data.spec).build(fresh.numeric, [])).max(axis=1)
    share = float(np.mean(confidence < trained.manifest.output.low_confidence))
    assert 0.5 < trained.manifest.output.low_confidence < 1.0 and 0.002 <= share <= 0.03


def test_worker_sends_its_share_and_counts_what_it_drops(kafka, registry, data_dir, make_topics):
    catalog = make_topics("m")
    register(kafka, registry, data_dir, "m", low_confidence=0.999)          # nearly every answer flagged
    _, manifest, data = small_model(low_confidence=0.999)
    publisher = Publisher(kafka, registry, "m", manifest.features)
    publisher.publish_many(Request(features=row, entity_id=f"e{i}") for i, row in enumerate(data.rows(0, 400)))
    publisher.flush()
    with RunningWorker(kafka, registry, data_dir, review_share=0.05, review_burst=20) as worker:
        predictions = read_topic(kafka, registry, catalog.predictions("m"), "Prediction", 400)
        flagged = sum(1 for p, _ in predictions if "low_confidence" in p["flags"])
        dropped = wait_for(lambda: worker.metrics.registry.get_sample_value(
            "flywheel_review_dropped_total", {"model": "m", "reason": "low_confidence"}))
        reviews = read_topic(kafka, registry, catalog.review, "ReviewItem", 1)
    assert len(predictions) == 400 and flagged > 300
    assert 1 <= len(reviews) <= 20 and len(reviews) + dropped == flagged
    confidence = {p["request_id"]: p["confidence"] for p, _ in predictions}
    assert np.mean([r["confidence"] for r, _ in reviews]) < np.mean(list(confidence.values()))


def test_a_model_may_have_its_own_review_budget(kafka, registry, data_dir, make_topics, tmp_path):
    """[worker.review.<model>] (`[worker] models` is the list of models served): loaded and checked
    as the section's own settings, and the worker rations each model by its own."""
    cfg = tmp_path / "f.toml"
    cfg.write_text("[worker]\nmodels = ['m', 'n']\nreview_share = 0.05\nreview_burst = 20\n"
                   "[worker.review.n]\nreview_share = 0.0\nreview_burst = 0\n")
    settings = load_config(cfg, env={}).section(WorkerSettings, "worker")
    assert settings.models == ["m", "n"]
    assert (for_model(settings, "n").review_share, for_model(settings, "m").review_share) == (0.0, 0.05)
    cfg.write_text("[worker.review.n]\nreview_share = 2\nmax_batch = 5\n")
    with pytest.raises(ConfigError) as e:
        load_config(cfg, env={})
    assert "[worker.review.n] review_share = 2: is above its maximum 1 share" in str(e.value)
    assert "[worker.review.n] max_batch is not a setting a model may set for itself" in str(e.value)

    catalog = make_topics("m", "n")
    _, manifest, data = small_model(low_confidence=0.999)                    # nearly every answer flagged
    for model in ("m", "n"):
        register(kafka, registry, data_dir, model, low_confidence=0.999).close()
        publisher = Publisher(kafka, registry, model, manifest.features)
        publisher.publish_many(Request(features=row, entity_id=f"e{i}") for i, row in enumerate(data.rows(0, 400)))
        publisher.flush()
    with RunningWorker(kafka, registry, data_dir, models=["m", "n"], review_share=0.05, review_burst=20,
                       review=settings.review) as worker:
        flagged = {model: sum(1 for p, _ in read_topic(kafka, registry, catalog.predictions(model), "Prediction", 400)
                              if "low_confidence" in p["flags"]) for model in ("m", "n")}
        dropped = {model: wait_for(lambda m=model: worker.metrics.registry.get_sample_value(
            "flywheel_review_dropped_total", {"model": m, "reason": "low_confidence"})) for model in ("m", "n")}
        reviews = read_topic(kafka, registry, catalog.review, "ReviewItem", 1)
    assert min(flagged.values()) > 300
    assert {r["model"] for r, _ in reviews} == {"m"} and 1 <= len(reviews) <= 20
    assert dropped == {"m": flagged["m"] - len(reviews), "n": flagged["n"]}
