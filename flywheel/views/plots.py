"""The report's plots, drawn with matplotlib's Agg backend (no display needed) and returned as
PNG bytes. Times on every x axis are UTC."""
import io
from datetime import UTC, datetime

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402  (after the backend is chosen)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from flywheel.views import style  # noqa: E402
from flywheel.views.history import LatencyBin, ModelHistory, Point  # noqa: E402
from flywheel.views.timeline import Event  # noqa: E402
from flywheel.views.topics import DeadLetterCount  # noqa: E402

WIDTH = 11.0
MAX_LABEL = 14          # characters of a version name in an event's label


def when(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def performance_plot(h: ModelHistory, metric: str, events: list[Event]) -> bytes:
    colors = style.version_colors([v.version for v in h.versions])
    fig, ax = plt.subplots(figsize=(WIDTH, 3.8))
    for version, points in h.performance(metric).items():
        ax.plot(*_xy(points), marker="o", markersize=3, linewidth=1.6, color=colors.get(version),
                label=f"version {version}")
    _mark_events(ax, events)
    ax.set_ylabel(f"live {metric}")
    ax.set_title(f"{h.model}: live {metric} per model version (per monitor window), events marked")
    ax.legend(loc="lower left", fontsize=8)
    return _png(fig, ax)


def drift_plot(h: ModelHistory, features: list[str], threshold: float | None) -> bytes:
    colors = style.version_colors([v.version for v in h.versions])
    series = h.drift("psi")
    cols = 2 if len(features) > 1 else 1
    rows = (len(features) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(WIDTH, 1.1 + 1.9 * rows), squeeze=False, sharex=True)
    for ax, feature in zip(axes.flat, features):
        for version, points in series[feature].items():
            ax.plot(*_xy(points), linewidth=1.4, color=colors.get(version), label=f"version {version}")
        if threshold is not None:
            ax.axhline(threshold, color="#c0392b", linestyle="--", linewidth=0.9,
                       label=f"threshold (PSI {threshold:g})")
        ax.set_title(feature, fontsize=10)
        ax.set_ylabel("PSI", fontsize=8)
        _time_axis(ax)
    for ax in list(axes.flat)[len(features):]:
        ax.set_visible(False)
    # One legend for all panels: per-panel legends would cover the lines.
    handles = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    fig.legend(handles.values(), handles.keys(), loc="upper center", ncol=min(4, len(handles)), fontsize=8,
               bbox_to_anchor=(0.5, 0.965), frameon=False)
    fig.suptitle(f"{h.model}: drift per feature (PSI against each version's training profile)", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return _png(fig, layout=False)


def latency_plot(model: str, bins: list[LatencyBin]) -> bytes:
    fig, ax = plt.subplots(figsize=(WIDTH, 3.0))
    x = [when((b.start + b.end) // 2) for b in bins]
    for name, values, color in (("p50", [b.p50 for b in bins], "#2980b9"), ("p90", [b.p90 for b in bins], "#d4ac0d"),
                                ("p99", [b.p99 for b in bins], "#c0392b")):
        ax.plot(x, np.asarray(values) * 1000, marker=".", linewidth=1.4, color=color, label=name)
    ax.set_ylabel("ms")
    ax.set_title(f"{model}: request to prediction latency of labelled requests")
    ax.legend(fontsize=8)
    return _png(fig, ax)


def dead_letter_plot(letters: list[DeadLetterCount], start: int, end: int, bins: int = 30) -> bytes:
    reasons = sorted({d.reason for d in letters}, key=lambda r: -sum(d.reason == r for d in letters))
    lo = min(start, min(d.at for d in letters))
    hi = max(end, max(d.at for d in letters) + 1)
    edges = np.linspace(lo, hi, bins + 1)
    fig, ax = plt.subplots(figsize=(WIDTH, 3.2))
    bottom = np.zeros(bins)
    width = (edges[1] - edges[0]) / 86_400_000 * 0.9          # bar width in days (matplotlib's date unit)
    centers = [when(int(c)) for c in (edges[:-1] + edges[1:]) / 2]
    for reason in reasons:
        counts, _ = np.histogram([d.at for d in letters if d.reason == reason], bins=edges)
        ax.bar(centers, counts, width=width, bottom=bottom, label=f"{reason} ({counts.sum()})")
        bottom += counts
    ax.set_ylabel("dead letters")
    ax.set_title("dead letters by reason")
    ax.legend(fontsize=8)
    return _png(fig, ax)


def _xy(points: list[Point]):
    return [when(p.at) for p in points], [p.value for p in points]


def _mark_events(ax, events: list[Event]) -> None:
    for e in events:
        color = style.event_color(e.kind)
        ax.axvline(when(e.at), color=color, linewidth=1.0, linestyle=":", alpha=0.9)
        ax.annotate(style.event_words(e.kind) + (f" {e.version[:MAX_LABEL]}" if e.version else ""),
                    xy=(when(e.at), 1.0), xycoords=("data", "axes fraction"), rotation=90, fontsize=7,
                    va="top", ha="right", color=color, xytext=(-2, -2), textcoords="offset points")


def _time_axis(ax) -> None:
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
    ax.grid(True, alpha=0.3)


def _png(fig, ax=None, layout: bool = True) -> bytes:
    if ax is not None:
        _time_axis(ax)
    if layout:
        fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=100)
    plt.close(fig)
    return out.getvalue()
