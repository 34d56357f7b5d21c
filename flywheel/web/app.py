"""The console's pages and forms (Flask): the overview, the review queue, the reviewer's name and
the login a non-loopback console asks for. Everything the handlers need is passed in."""
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import Flask, abort, flash, redirect, render_template, request, session, url_for
from prometheus_client import CollectorRegistry, Counter

from flywheel.errors import Unavailable
from flywheel.processors.models.errors import DeploymentError
from flywheel.web.approvals import Approvals
from flywheel.web.feed import ReviewFeed, Verdict
from flywheel.web.overview import OverviewSource
from flywheel.web.queue import Item, ReviewQueue
from flywheel.web.security import CSRF_HEADER, SECURITY_HEADERS, csrf_matches, is_loopback, new_secret, token_matches
from flywheel.web.settings import ConsoleSettings

MAX_NOTE = 2000
MAX_NAME = 80


@dataclass(frozen=True)
class Budget:
    """What the workers send to review (the [worker] settings the console reads, not enforces)."""
    share: float
    burst: float


class ConsoleMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        self.verdicts = Counter("flywheel_review_verdicts", "Verdicts given in the console and sent as labels",
                                ["model", "verdict"], registry=self.registry)


@dataclass
class Console:
    settings: ConsoleSettings
    queue: ReviewQueue
    feed: ReviewFeed
    overview: OverviewSource
    budget: Budget
    metrics: ConsoleMetrics
    approvals: Approvals


def create_app(console: Console) -> Flask:
    app = Flask(__name__)
    app.secret_key = new_secret()            # sessions last as long as this process
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict",
                      SESSION_COOKIE_NAME="flywheel_console", MAX_CONTENT_LENGTH=64 * 1024)
    app.jinja_env.filters["utc"] = _utc
    guarded = bool(console.settings.token) or not is_loopback(console.settings.host)

    @app.before_request
    def _guard():
        session.setdefault("csrf", new_secret())
        if guarded and not session.get("authed") and request.endpoint not in ("login", "static"):
            return redirect(url_for("login"))
        if request.method == "POST":
            offered = request.form.get("csrf") or request.headers.get(CSRF_HEADER)
            if not csrf_matches(session.get("csrf"), offered):
                abort(403, "missing or wrong CSRF token: reload the page")
        return None

    @app.after_request
    def _headers(response):
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.context_processor
    def _common():
        return {"csrf": session.get("csrf", ""), "reviewer": session.get("reviewer", ""),
                "stats": console.queue.stats(), "refresh": console.settings.refresh_seconds}

    @app.errorhandler(Unavailable)
    def _unavailable(e):              # the store or broker is away: this page now, not the console
        return render_template("message.html", message=f"not available right now: {e}"), 503

    @app.get("/")
    def overview():
        return render_template("overview.html", o=console.overview.gather(), waiting=console.approvals.waiting())

    @app.get("/overview/fragment")
    def overview_fragment():
        return render_template("_overview_body.html", o=console.overview.gather(),
                               waiting=console.approvals.waiting())

    @app.get("/approvals")
    def approvals():
        return render_template("approvals.html", waiting=console.approvals.waiting())

    @app.post("/approvals/decide")
    def decide():
        who = " ".join(request.form.get("name", "").split())[:MAX_NAME]
        reason = " ".join(request.form.get("reason", "").split())[:MAX_NOTE]
        model, version = request.form.get("model", ""), request.form.get("version", "")
        approve = request.form.get("decision") == "approve"
        if not who or not reason:
            flash("a decision needs your name and a reason: both are recorded with it")
            return redirect(url_for("approvals"))
        try:
            console.approvals.decide(model, version, approve, who, reason)
        except DeploymentError as e:       # decided meanwhile, by the rollout or another person
            flash(str(e))
            return redirect(url_for("approvals"))
        session["reviewer"] = who
        session.setdefault("claimant", new_secret())
        flash(f"{'approved: promoted' if approve else 'rejected: rolled back'} {model} version {version}")
        return redirect(url_for("approvals"))

    @app.route("/login", methods=["GET", "POST"])
    def login():
        if request.method == "POST":
            if token_matches(console.settings.token, request.form.get("token", "")):
                session["authed"] = True
                return redirect(url_for("overview"))
            flash("wrong token")
        return render_template("login.html")

    @app.post("/reviewer")
    def set_reviewer():
        name = " ".join(request.form.get("name", "").split())[:MAX_NAME]
        if name:
            session["reviewer"] = name
            session.setdefault("claimant", new_secret())
        return redirect(url_for("review"))

    @app.get("/review")
    def review():
        item = console.queue.claim(session["claimant"]) if session.get("reviewer") else None
        others = console.feed.shadows.of(item.request_id) if item else []
        return render_template("review.html", item=item, others=others, budget=console.budget,
                               caught_up=console.feed.caught_up.is_set())

    @app.post("/review/skip")
    def skip():
        console.queue.release(session.get("claimant", ""), request.form.get("request_id", ""))
        return redirect(url_for("review"))

    @app.post("/review/verdict")
    def verdict():
        item = console.queue.holds(session.get("claimant", ""), request.form.get("request_id", ""))
        if item is None or not session.get("reviewer"):
            flash("that item is no longer yours (its lease ran out, or it was reviewed): here is the next one")
            return redirect(url_for("review"))
        given = _verdict(item, session["reviewer"])
        if given is None:
            flash("a correction needs one of the model's labels, or a number")
            return redirect(url_for("review"))
        console.feed.publish(given)       # DeliveryFailed: a 503; the reviewer keeps the item and tries again
        console.metrics.verdicts.labels(item.model, "confirmed" if given.confirms else "corrected").inc()
        flash(f"{'confirmed' if given.confirms else 'corrected'} {item.request_id}")
        return redirect(url_for("review"))

    return app


def _verdict(item: Item, reviewer: str) -> Verdict | None:
    note = request.form.get("note", "").strip()[:MAX_NOTE]
    if request.form.get("verdict") == "confirm" and (item.label is not None or item.value is not None):
        return Verdict(item, reviewer, item.label, item.value, note)
    label = request.form.get("label")
    if label is not None and label in item.choices:
        return Verdict(item, reviewer, label=label, note=note)
    try:
        value = float(request.form.get("value", ""))
    except ValueError:
        return None
    return Verdict(item, reviewer, value=value, note=note) if not item.choices and value == value else None


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
