"""The web console in a real browser (Playwright driving Debian's Chromium) on a real broker and
store: a worker sends low-confidence answers to review, a person confirms three and corrects two,
and five labels with source `review` reach the labels topic and five feedback rows the store; the
shadow version's answer to the same request is shown beside it; two reviewers never hold the same
item; a canary waiting for approval stays a canary until a person approves it on the approvals
page, then is promoted and the timeline names who approved; a form without its CSRF token and a
console beyond loopback without a token are refused. The run's screenshots are the docs'
(FLYWHEEL_SAVE_DOCS=1)."""
import os
import shutil
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from flywheel.feature_store import StoreSettings, open_store
from flywheel.schemas.secret import Secret
from flywheel.streams.broker import free_port
from flywheel.streams.publisher import Publisher, Request

from flywheel.cli import main
from flywheel.web.queue import Item, ReviewQueue
from flywheel.web.server import running_console
from flywheel.web.settings import ConsoleSettings
from tests.retrain_helpers import churn_world, register_model
from tests.test_hostile_corpus import Joiner
from tests.test_report_html import fill_story
from tests.test_rollout_approval import _passes
from tests.test_worker_support import RunningWorker, read_topic, register, small_model, wait_for

CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"]
DOCS = Path(__file__).parent.parent / "docs"


def item(rid: str, confidence: float | None, reasons=("low_confidence",), at: int = 0) -> Item:
    return Item(rid, "m", "v1", tuple(reasons), "a", None, confidence, (), at, ("a", "b"))


def test_claims_go_least_confident_first_faults_before_all_and_a_lease_runs_out():
    clock = [0]
    queue = ReviewQueue(lease_ms=1000, clock=lambda: clock[0])
    for rid, confidence in (("sure", 0.9), ("unsure", 0.51), ("middling", 0.7)):
        queue.add(item(rid, confidence))
    queue.add(item("fault", None, reasons=("non_finite_output",)))
    assert queue.claim("ana").request_id == "fault"
    assert queue.claim("ana").request_id == "fault"            # her item until she answers or it expires
    assert queue.claim("bo").request_id == "unsure"
    queue.reviewed("fault", 0)
    assert queue.claim("ana").request_id == "middling" and queue.holds("bo", "unsure")
    clock[0] = 1001                                            # bo's lease ran out: the item is free again
    assert queue.holds("bo", "unsure") is None and queue.claim("cy").request_id == "unsure"
    queue.add(item("fault", None))                             # re-read from the topic after its verdict
    stats = queue.stats()
    assert (stats.depth, stats.reviewed, stats.claimed) == (3, 1, 1)


def test_a_console_beyond_loopback_without_a_token_is_refused_in_one_line(tmp_path, capsys):
    port = str(free_port())
    assert main(["--data-dir", str(tmp_path), "console", "--host", "0.0.0.0", "--port", port]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "only with a token" in err and "Traceback" not in err


@pytest.fixture
def served(config, registry, make_topics):
    """A worker flagging nearly every answer for review (v1, live; v2 answers as a shadow), a joiner,
    and the console on a free port."""
    catalog = make_topics("m")
    models = register(config.kafka, registry, config.data_dir, "m", low_confidence=0.999)
    onnx, manifest_v2, _ = small_model("v2", seed=1, low_confidence=0.999)
    models.register(onnx, manifest_v2)
    models.shadow("m", "v2")
    models.close()
    fill_story(config.data_dir)                                  # a model with history for the overview
    _, manifest, data = small_model(low_confidence=0.999)
    publisher = Publisher(config.kafka, registry, "m", manifest.features)
    publisher.publish_many(Request(features=row, entity_id=f"e{i}") for i, row in enumerate(data.rows(0, 60)))
    publisher.flush()
    settings = ConsoleSettings(port=free_port(), refresh_seconds=2, lease_seconds=60)
    stop = threading.Event()
    with RunningWorker(config.kafka, registry, config.data_dir, review_share=0.5, review_burst=20), \
            Joiner(config.kafka, registry, config.data_dir):
        read_topic(config.kafka, registry, catalog.review, "ReviewItem", 10, settle=0)
        with running_console(config, settings, stop):
            url = f"http://127.0.0.1:{settings.port}/"
            wait_for(lambda: "Still reading" not in fetch(url + "review"), timeout=30)
            yield url, catalog


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (infra/install-test-tools.sh)")
def test_five_verdicts_in_the_browser_become_five_review_labels_and_five_feedback_rows(served, config, registry,
                                                                                       tmp_path):
    from playwright.sync_api import sync_playwright
    url, catalog = served
    given: dict[str, str] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
        ana = start_reviewing(browser, url, "Ana")
        bo = start_reviewing(browser, url, "Bo")
        assert current(ana) != current(bo), "two reviewers hold the same item"
        assert "v2" in ana.inner_text("#others")                 # the shadow's answer to the same request
        for n in range(5):
            rid, model_said = current(ana), ana.inner_text("#answer")
            if n == 0:
                ana.fill("#note", "checked against the account")
            with ana.expect_navigation():                       # the verdict posted, the next item shown
                if n < 3:
                    ana.keyboard.press("c") if n % 2 else ana.click("#confirm")
                    given[rid] = model_said
                else:
                    button = ana.locator(".correct").first
                    given[rid] = button.get_attribute("value")
                    button.click()
            assert current(ana) != rid
        assert "Reviewed: 5" in ana.inner_text("#queue-stats")
        ana.set_viewport_size({"width": 1280, "height": 900})
        ana.screenshot(path=str(tmp_path / "console-review.png"), full_page=True)
        ana.goto(url)
        ana.wait_for_selector("#model-churn img")
        text = ana.inner_text("main")
        assert text.count("Model churn") == 1 and "Drift now" in text and "candidate rejected" in text
        ana.screenshot(path=str(tmp_path / "console-overview.png"), full_page=True)
        browser.close()
    labels = [v for v, _ in read_topic(config.kafka, registry, catalog.labels, "GroundTruth", 5)
              if v["source"] == "review"]
    assert {v["request_id"]: v["label"] for v in labels} == given
    assert {v["reviewer"] for v in labels} == {"Ana"}
    assert [v["note"] for v in labels if v["note"]] == ["checked against the account"]
    corrected = sum(1 for v in labels if v["label"] != model_answer(config, v["request_id"]))
    assert corrected == 2
    with open_store(StoreSettings(), config.data_dir) as store:
        rows = wait_for(lambda: [r for r in store.feedback("m", 0, int(time.time() * 1000) + 1)
                                 if r.request_id in given] if len(joined(store, given)) == 5 else None, 30)
    assert {r.request_id: r.true_label for r in rows} == given
    if os.environ.get("FLYWHEEL_SAVE_DOCS"):
        for name in ("console-review.png", "console-overview.png"):
            shutil.copy(tmp_path / name, DOCS / name)


@pytest.fixture
def console_only(config, make_topics):
    make_topics("m")
    settings = ConsoleSettings(port=free_port())
    with running_console(config, settings, threading.Event()):
        yield f"http://127.0.0.1:{settings.port}/"


def test_a_verdict_without_the_csrf_token_is_refused(console_only):
    url = console_only
    form = urllib.parse.urlencode({"request_id": "x", "verdict": "confirm"}).encode()
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(url + "review/verdict", data=form), timeout=10)
    assert refused.value.code == 403 and "CSRF" in refused.value.read().decode()


def test_a_token_guarded_console_asks_for_it_once_and_never_shows_it(config, make_topics):
    import http.cookiejar
    import re
    make_topics("m")
    settings = ConsoleSettings(port=free_port(), token=Secret("s3cret-token-value"))
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def login(token: str) -> tuple[str, str]:
        form = browser.open(base + "login", timeout=10).read().decode()
        csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
        with browser.open(base + "login", urllib.parse.urlencode({"csrf": csrf, "token": token}).encode(),
                          timeout=10) as page:
            return page.url, page.read().decode()

    with running_console(config, settings, threading.Event()):
        base = f"http://127.0.0.1:{settings.port}/"
        with browser.open(base, timeout=10) as page:                  # redirected to the login form
            landed, body = page.url, page.read().decode()
        wrong_url, wrong = login("guess")
        right_url, right = login("s3cret-token-value")
    assert landed.endswith("/login") and 'name="token"' in body
    assert wrong_url.endswith("/login") and "wrong token" in wrong
    assert right_url == base and "Processes" not in right and "No model is registered" in right
    assert not any("s3cret" in page for page in (body, wrong, right))


def test_up_serves_the_console_unless_it_is_turned_off(config):
    from dataclasses import replace

    from flywheel.commands.console import stack_processes
    (spec,) = stack_processes(replace(config, env={**config.env, "FLYWHEEL_CONSOLE_PORT": "18555"}))
    assert spec.args == ["console"] and spec.port == 18555            # checked with the stack's ports before start
    assert stack_processes(replace(config, env={**config.env, "FLYWHEEL_CONSOLE_ENABLED": "false"})) == []


@pytest.fixture
def awaiting(config, registry, make_topics):
    """churn: v1 live, canary v2 passed its live evidence under manual approval, judged twice (it
    waits, it is not promoted); the console on a free port."""
    with churn_world(config.kafka, registry, make_topics, config.data_dir) as w:
        new = register_model(w.models, w.concept, "v2", seed=5)
        w.models.canary("churn", "v2", 0.2)
        rollout = _passes((w.store, w.models, w.concept, w.v1, new))
        for _ in range(2):
            rollout.evaluate(w.models.deployment("churn"))
        assert w.models.deployment("churn").canary_version == "v2"
        settings = ConsoleSettings(port=free_port(), refresh_seconds=2)
        with running_console(config, settings, threading.Event()):
            yield f"http://127.0.0.1:{settings.port}/", w.models


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (infra/install-test-tools.sh)")
def test_a_waiting_canary_is_promoted_when_a_person_approves_it_and_the_timeline_names_them(awaiting, tmp_path):
    from playwright.sync_api import sync_playwright
    url, models = awaiting
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        assert "Canary v2 passed its live evidence" in page.inner_text("#awaiting-churn")
        page.click("#awaiting-churn a")
        page.fill("#approval-churn .name", "Ana")
        page.fill("#approval-churn .reason", "fewer churners missed")
        page.screenshot(path=str(tmp_path / "console-approvals.png"), full_page=True)
        assert models.deployment("churn").canary_version == "v2"            # nothing decided before the click
        with page.expect_navigation():
            page.click("#approve-churn")
        assert "approved: promoted churn version v2" in page.inner_text(".flash")
        assert page.is_visible("#none-waiting")
        page.goto(url)
        assert "by Ana: fewer churners missed" in page.inner_text("#model-churn")
        browser.close()
    deployment = models.deployment("churn")
    assert (deployment.live_version, deployment.canary_version) == ("v2", None)
    event = models.history.events("churn")[-1]
    assert (event["kind"], event["actor"], event["reason"]) == ("APPROVED", "Ana", "fewer churners missed")
    if os.environ.get("FLYWHEEL_SAVE_DOCS"):
        shutil.copy(tmp_path / "console-approvals.png", DOCS / "console-approvals.png")


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as page:
        return page.read().decode()


def start_reviewing(browser, url: str, name: str):
    page = browser.new_context().new_page()
    page.goto(url + "review")
    page.fill("#name", name)
    page.click("#start")
    page.wait_for_selector("#item")
    return page


def current(page) -> str:
    return page.get_attribute("#item", "data-request")


def joined(store, given: dict[str, str]) -> list:
    return [r for r in store.feedback("m", 0, int(time.time() * 1000) + 1) if r.request_id in given]


def model_answer(config, request_id: str) -> str:
    with open_store(StoreSettings(), config.data_dir) as store:
        return next(r.predicted_label for r in store.feedback("m", 0, int(time.time() * 1000) + 1)
                    if r.request_id == request_id)


def test_a_restarted_console_loses_no_item_and_shows_no_reviewed_one(config, registry, make_topics):
    """The queue lives on the topics: a new reader finds every item without a `review` label."""
    from flywheel.schemas import AvroSerde
    from flywheel.streams.clients import make_producer

    from flywheel.web.feed import ReviewFeed, Verdict
    from flywheel.wiring import register_all_schemas
    catalog = make_topics("m")
    register_all_schemas(registry)
    serde, producer = AvroSerde(registry, "ReviewItem"), make_producer(config.kafka)
    for i in range(6):
        producer.produce(catalog.review, serde.encode({
            "request_id": f"r{i}", "entity_id": f"e{i}", "model": "m", "model_version": "v1",
            "reasons": ["low_confidence"], "label": "a", "value": None, "confidence": 0.5 + i / 100,
            "numeric": {}, "categorical": {}, "created_at": i}), key=f"r{i}".encode())
    producer.flush(10)

    def console_queue() -> tuple[ReviewQueue, ReviewFeed, threading.Event]:
        queue, stop = ReviewQueue(60_000), threading.Event()
        feed = ReviewFeed(config.kafka, registry, config.data_dir, queue, stop).start()
        wait_for(lambda: feed.caught_up.is_set() and queue.stats().depth + queue.stats().reviewed == 6, 30)
        return queue, feed, stop

    queue, feed, stop = console_queue()
    first = queue.claim("ana")
    assert first.request_id == "r0"                                 # the least confident
    feed.publish(Verdict(first, "Ana", label="b"))
    queue.claim("bo")                                               # claimed, unanswered, when the console stops
    stop.set()
    feed.join()
    queue, feed, stop = console_queue()
    try:
        assert (queue.stats().depth, queue.stats().reviewed) == (5, 1)
        claims = [queue.claim(f"reviewer-{i}") for i in range(6)]
    finally:
        stop.set()
        feed.join()
    assert [c.request_id for c in claims[:5]] == ["r1", "r2", "r3", "r4", "r5"] and claims[5] is None
