"""`flywheel report --html`: rendered from a real SQLite store filled with a realistic story
(drift, a rejected candidate, a retrain, canary, promotion), after the stack has stopped and
while a broker holds dead letters; the page opens in headless Chromium and its screenshot
shows the plots."""
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from flywheel.feature_store import FeedbackRecord, RetrainRecord, StoreSettings, WindowMetrics, open_store
from flywheel.processors.models.history import EventLog
from flywheel.processors.models.manifest import Manifest, OutputSpec
from flywheel.processors.models.store import ArtifactStore
from flywheel.schemas import AvroSerde
from flywheel.schemas.features import Feature, FeatureSpec
from flywheel.streams.clients import make_producer
from flywheel.streams.topics import TopicCatalog

from flywheel.cli import main
from flywheel.commands._since import BadTime, parse_since
from flywheel.views.gather import report_data
from flywheel.wiring import register_all_schemas

MINUTE = 60_000
WINDOW = 5 * MINUTE
CHROMIUM = "/usr/bin/chromium"
SPEC = FeatureSpec((Feature("tenure_months", min=0, max=120), Feature("monthly_spend", min=0),
                    Feature("support_calls", min=0),
                    Feature("plan", "categorical", categories=("basic", "plus", "pro")),
                    Feature("region", "categorical", categories=("eu", "us", "apac"))))


@dataclass
class Story:
    """Times of what happened, relative to t0 (the first version's registration)."""
    t0: int
    drift_at: int
    retrain_at: int
    registered_at: int
    promoted_at: int
    end: int


def fill_story(data_dir: Path, model: str = "churn", seed: int = 7) -> Story:
    """Three hours of a model's life written through the real store and registry files: v1 serves,
    a manual retrain's candidate is rejected, the data drifts, the trigger asks for a retrain, v2
    is accepted, runs as canary and is promoted, and accuracy recovers."""
    rng = np.random.default_rng(seed)
    t0 = (int(np.datetime64("now", "ms").astype(np.int64)) - 3 * 3_600_000) // WINDOW * WINDOW
    s = Story(t0, t0 + 80 * MINUTE, t0 + 95 * MINUTE, t0 + 105 * MINUTE, t0 + 125 * MINUTE, t0 + 180 * MINUTE)
    artifacts, log = ArtifactStore(data_dir), EventLog(data_dir)
    for version, at, accuracy in (("1", s.t0, 0.912), ("2", s.registered_at, 0.905)):
        artifacts.save(b"onnx-bytes-" + version.encode(), Manifest(
            model, version, SPEC, OutputSpec("classifier", ("stay", "churn")),
            training_metrics={"accuracy": accuracy, "f1": accuracy - 0.03}, created_at=at))
    events = [("REGISTERED", "1", s.t0, "first version", {}),
              ("REJECTED", "1b", s.t0 + 35 * MINUTE, "candidate accuracy 0.897 does not beat 0.911 by 0.01",
               {"candidate_accuracy": 0.897, "incumbent_accuracy": 0.911}),
              ("REGISTERED", "2", s.registered_at, "retrain r-2 accepted", {"candidate_accuracy": 0.893,
                                                                         "incumbent_accuracy": 0.741}),
              ("CANARY", "2", s.registered_at + MINUTE, "10% of traffic", {}),
              ("PROMOTED", "2", s.promoted_at, "canary better on live feedback",
               {"canary_accuracy": 0.9, "live_accuracy": 0.73, "p_value": 0.0004})]
    for kind, version, at, reason, evidence in events:
        registered = ["1", "2"] if at >= s.registered_at else ["1"]
        log.append({"model": model, "kind": kind, "version": version, "at": at, "actor": "test", "reason": reason,
                    "evidence": evidence, "live_version": "2" if at >= s.promoted_at else "1",
                    "canary_version": "2" if s.registered_at < at < s.promoted_at else None,
                    "canary_share": 0.1 if s.registered_at < at < s.promoted_at else 0.0, "shadow_versions": [],
                    "versions": {v: {"manifest_path": f"models/{model}/{v}/manifest.json", "sha256": "0" * 64}
                                 for v in registered}})
    with open_store(StoreSettings(), data_dir) as store:
        store.put_retrain(RetrainRecord(model, "r-1", "failed", s.t0 + 30 * MINUTE, s.t0 + 35 * MINUTE, "1",
                                        None, ["manual"], "candidate rejected"))
        store.put_retrain(RetrainRecord(model, "r-2", "done", s.retrain_at, s.registered_at, "1", "2",
                                        ["drift", "performance"], "accepted; canary at 10%"))
        windows, feedback = [], []
        for start in range(s.t0, s.end, WINDOW):
            for version in ("1", "2"):
                serving = start < s.promoted_at if version == "1" else start >= s.registered_at
                if not serving:
                    continue
                canary = version == "2" and start < s.promoted_at
                drifted = start >= s.drift_at
                own_reference = version == "2"
                accuracy = (0.9 if version == "2" else 0.735 if drifted else 0.91) + rng.normal(0, 0.012)
                psi = {"monthly_spend": 0.55 if drifted and not own_reference else 0.03,
                       "support_calls": 0.34 if drifted and not own_reference else 0.02,
                       "tenure_months": 0.04, "plan": 0.12 if drifted and not own_reference else 0.01,
                       "region": 0.01}
                psi = {f: max(0.0, v + rng.normal(0, 0.01 + v * 0.08)) for f, v in psi.items()}
                labelled = int(rng.integers(40, 60) * (0.25 if canary else 1))
                flagged = [f for f, v in psi.items() if v > 0.2]
                values = {"rows": labelled * 3, "labelled": labelled, "late": 0, "drift_flagged": float(bool(flagged)),
                          "performance.accuracy": accuracy, "performance.f1": accuracy - 0.04,
                          **{f"drift.{f}.psi": v for f, v in psi.items()},
                          **{f"drift.{f}.ks": min(1.0, v / 2) for f, v in psi.items()}}
                windows.append(WindowMetrics(model, version, start, start + WINDOW, values,
                                             {"has_reference": True, "flagged_features": flagged}))
                for i in range(labelled):
                    event_time = start + int(rng.integers(0, WINDOW))
                    delay = rng.lognormal(np.log(0.012), 0.6)
                    truth = "churn" if rng.random() < 0.3 else "stay"
                    right = rng.random() < accuracy
                    feedback.append(FeedbackRecord(
                        f"req-{version}-{start}-{i}", f"cust-{rng.integers(10_000)}", model, version, event_time,
                        event_time + int(delay * 1000) + 1, event_time + int(rng.integers(60_000, 600_000)),
                        {"tenure_months": float(rng.integers(1, 72)), "monthly_spend": float(rng.gamma(4, 20)),
                         "support_calls": float(rng.poisson(1.5))}, {"plan": "plus", "region": "eu"},
                        predicted_label=truth if right else ("stay" if truth == "churn" else "churn"),
                        true_label=truth, confidence=float(rng.uniform(0.5, 1.0))))
        store.put_metrics(windows)
        store.put_feedback(feedback)
    return s


def produce_dead_letters(kafka, registry, story: Story, n: int = 60, seed: int = 3) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    register_all_schemas(registry)
    serde = AvroSerde(registry, "DeadLetter")
    producer = make_producer(kafka)
    reasons = ["missing_feature"] * 5 + ["unseen_category"] * 3 + ["non_finite"] * 2
    counts: dict[str, int] = {}
    for i in range(n):
        reason = reasons[i % len(reasons)]
        counts[reason] = counts.get(reason, 0) + 1
        at = story.t0 + int(rng.integers(0, story.end - story.t0))
        producer.produce(TopicCatalog(kafka).deadletter, serde.encode({
            "reason": reason, "detail": "", "processor": "worker", "source_topic": "churn.requests",
            "source_partition": 0, "source_offset": i, "source_timestamp": at, "key": None,
            "payload": b"{}", "headers": {}, "failed_at": at, "attempt": 1}))
    producer.flush(10)
    return counts


def images(page: str) -> list[bytes]:
    import base64
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def test_report_after_the_stack_stopped_shows_the_story_and_says_what_is_missing(tmp_path, data_dir, monkeypatch):
    monkeypatch.delenv("FLYWHEEL_BOOTSTRAP", raising=False)
    fill_story(data_dir)
    out = tmp_path / "report.html"
    assert main(["--data-dir", str(data_dir), "report", "--html", str(out)]) == 0
    page = out.read_text()
    assert "Model churn" in page and "http" not in page.split("<body>")[1].split("Source:")[0]
    pngs = images(page)
    assert len(pngs) == 3, "accuracy, drift and latency plots; no dead-letter plot without a broker"
    assert all(p.startswith(b"\x89PNG") and len(p) > 10_000 for p in pngs)
    for words in ("drift flagged", "retrain requested", "candidate rejected", "candidate accepted", "canary",
                  "promoted",
                  "drift, performance", "monthly_spend", "canary better on live feedback"):
        assert words in page, words
    assert "No data." in page and "deadletter topic" in page      # the part it cannot show, and why
    assert page.index("Model churn") < page.index("Dead letters")
    assert "1b" in page                                          # the rejected candidate's version


def test_report_data_reads_the_store_the_event_log_and_the_dead_letter_topic(config, registry, make_topics):
    make_topics("churn")
    story = fill_story(config.data_dir)
    sent = produce_dead_letters(config.kafka, registry, story)
    with open_store(StoreSettings(), config.data_dir) as store:
        data = report_data(config, store, [], None)
    (view,) = data.models
    h = view.history
    assert [v.version for v in h.versions] == ["1", "2"]
    assert data.start == story.t0
    accuracy = h.performance("accuracy")
    before = np.mean([p.value for p in accuracy["1"] if p.at <= story.drift_at])
    during = np.mean([p.value for p in accuracy["1"] if p.at > story.drift_at + WINDOW])
    after = np.mean([p.value for p in accuracy["2"] if p.at > story.promoted_at])
    assert before > 0.88 and during < 0.78 and after > 0.87
    assert h.most_drifted()[:2] == ["monthly_spend", "support_calls"]
    kinds = [e.kind for e in view.events]
    drift_retrain = next(i for i, e in enumerate(view.events) if e.kind == "RETRAIN_REQUESTED" and "drift" in e.detail)
    assert kinds.index("DRIFT_FLAGGED") < drift_retrain < kinds.index("CANARY") < kinds.index("PROMOTED")
    assert kinds.index("REJECTED") < kinds.index("DRIFT_FLAGGED") and "RETRAIN_FAILED" in kinds
    first_flag = next(e for e in view.events if e.kind == "DRIFT_FLAGGED")
    assert story.drift_at < first_flag.at <= story.drift_at + 2 * WINDOW and "monthly_spend" in first_flag.detail
    assert 5 <= np.median([b.p50 for b in view.latency]) * 1000 <= 30     # lognormal around 12 ms
    assert all(b.p50 <= b.p90 <= b.p99 for b in view.latency)
    got: dict[str, int] = {}
    for d in data.dead_letters:
        got[d.reason] = got.get(d.reason, 0) + 1
    assert got == sent and data.dead_letters_part.source.endswith("deadletter topic")


def test_since_accepts_durations_iso_times_and_epoch_ms():
    now = 1_700_000_000_000
    assert parse_since("30m", now) == now - 30 * MINUTE
    assert parse_since("2h", now) == now - 2 * 3_600_000
    assert parse_since("2023-11-14T22:13:20", now) == now
    assert parse_since(str(now - 5), now) == now - 5
    with pytest.raises(BadTime):
        parse_since("yesterday", now)


def test_report_without_any_model_is_a_one_line_error(tmp_path, capsys):
    assert main(["--data-dir", str(tmp_path / "empty"), "report", "--html", str(tmp_path / "r.html")]) == 1
    assert "no registered model" in capsys.readouterr().err


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (infra/install-test-tools.sh)")
def test_report_opens_in_headless_chromium_and_the_screenshot_shows_the_plots(tmp_path, config, registry,
                                                                              make_topics):
    import matplotlib.image
    make_topics("churn")
    story = fill_story(config.data_dir)
    produce_dead_letters(config.kafka, registry, story)
    with open_store(StoreSettings(), config.data_dir) as store:
        from flywheel.views import html
        page = html.render(report_data(config, store, [], None), psi_threshold=0.2)
    report = tmp_path / "report.html"
    report.write_text(page)
    shot = screenshot(report, tmp_path / "report.png")
    pixels = matplotlib.image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (2400, 1280)
    not_white = (pixels.min(axis=2) < 0.9).mean()
    assert not_white > 0.03, f"only {not_white:.1%} of the screenshot is not white"
    assert pixels.std() > 0.1
    # the plot lines' colours are there (matplotlib's default blue, the versions' green)
    blueish = ((pixels[..., 2] > 0.55) & (pixels[..., 0] < 0.3)).mean()
    assert blueish > 0.0005
    if os.environ.get("FLYWHEEL_SAVE_DOCS"):
        shutil.copy(shot, Path(__file__).parent.parent / "docs" / "report.png")


def screenshot(page: Path, png: Path) -> Path:
    profile = tempfile.mkdtemp(prefix="chromium-")
    try:
        subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={profile}", f"--screenshot={png}", "--window-size=1280,2400",
                        "--hide-scrollbars", page.resolve().as_uri()],
                       capture_output=True, timeout=120, check=True)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert png.exists(), "chromium wrote no screenshot"
    return png
