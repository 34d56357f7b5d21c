"""The terminal view of a StatusFrame (rich): processes, throughput and latency per model, live
accuracy per version with a sparkline of its windows, the most drifted features, the timeline."""
import time
from datetime import datetime, timezone

from rich import box
from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from flywheel.views import style, timeline
from flywheel.views.gather import ModelView
from flywheel.views.live import StatusFrame

BLOCKS = "▁▂▃▄▅▆▇█"
TIMELINE_ROWS = 12
DRIFT_ROWS = 6
SPARK_WIDTH = 24


def render(frame: StatusFrame) -> Group:
    return Group(_header(frame), _processes(frame), _throughput(frame), _versions(frame), _drift(frame),
                 _timeline(frame))


def sparkline(values: list[float], lo: float, hi: float, width: int = SPARK_WIDTH) -> str:
    """The last `width` values as block characters scaled to [lo, hi]."""
    values = values[-width:]
    span = hi - lo
    if not values:
        return ""
    if span <= 0:
        return BLOCKS[len(BLOCKS) // 2] * len(values)
    return "".join(BLOCKS[min(len(BLOCKS) - 1, max(0, int((v - lo) / span * (len(BLOCKS) - 1) + 0.5)))]
                   for v in values)


def _header(frame: StatusFrame) -> Text:
    up = _duration(time.time() - frame.stack.started_at)
    line = Text.assemble(("flywheel status", "bold"), f"  broker {frame.stack.bootstrap}  ·  up {up}  ·  ",
                         f"data dir {frame.stack.data_dir}  ·  {_clock(frame.at)} UTC", style="")
    return line


def _processes(frame: StatusFrame) -> Panel:
    t = Table(box=box.SIMPLE_HEAD, expand=False, pad_edge=False)
    for name, justify in (("process", "left"), ("pid", "right"), ("state", "left"), ("restarts", "right"),
                          ("records in/s", "right"),
                          ("consumer lag", "right"), ("metrics", "left")):
        t.add_column(name, justify=justify)
    for p in frame.live.processes:
        state = Text(p.state, style={"up": "green", "exited": "bold red"}.get(p.state, "yellow"))
        restarts = Text(str(p.restarts), style="yellow" if p.restarts else "")
        t.add_row(p.name, str(p.pid), state, restarts, _rate(p.records_in_per_s), f"{p.lag:,}", f":{p.port}")
    return Panel(t, title="processes", title_align="left")


def _throughput(frame: StatusFrame) -> Panel:
    live = frame.live
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("model", "requests in/s", "predictions out/s", "latency p50", "latency p99"):
        t.add_column(name, justify="left" if name == "model" else "right")
    models = sorted(set(live.requests_in_per_s) | set(live.predictions_per_s) | set(live.latency))
    for m in models:
        latency = live.latency.get(m)
        t.add_row(m, _rate(live.requests_in_per_s.get(m, 0.0)), _rate(live.predictions_per_s.get(m, 0.0)),
                  _ms(latency.p50 if latency else None), _ms(latency.p99 if latency else None))
    if not models:
        t.add_row("—", "no worker has reported yet", "", "", "")
    dead = ", ".join(f"{reason} {n:,.0f}" for reason, n in sorted(live.dead_letters.items(), key=lambda kv: -kv[1]))
    caption = Text.assemble("dead letters: ", (dead or "none", "yellow" if dead else "dim"),
                            f"  ({live.dead_letters_per_s:.1f}/s)  ·  rates over the last {live.seconds:.1f} s")
    return Panel(Group(t, caption), title="throughput", title_align="left")


def _versions(frame: StatusFrame) -> Panel:
    live = {(v.model, v.version): v for v in frame.live.versions}
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("model", "version", "role", "pred/s", "metric", "last", "windows", "labelled", "drift"):
        t.add_column(name, justify="right" if name in ("pred/s", "last", "labelled") else "left",
                     no_wrap=name == "windows", min_width=SPARK_WIDTH if name == "windows" else None)
    for view in frame.models:
        metric = view.history.primary_metric
        series = view.history.performance(metric) if metric else {}
        values = [p.value for points in series.values() for p in points]
        lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
        names = [v.version for v in view.history.versions]
        names += sorted({k[1] for k in live if k[0] == view.history.model} - set(names))
        for version in names:
            now = live.get((view.history.model, version))
            points = series.get(version, [])
            if now is None and not points:
                continue
            last = points[-1].value if points else (now.metrics.get(metric) if now and metric else None)
            t.add_row(view.history.model, version, _role(view.role(version) or (now.role if now else "")),
                      _rate(now.predictions_per_s) if now else "—", metric or "—",
                      f"{last:.3f}" if last is not None else "—",
                      Text(sparkline([p.value for p in points], lo, hi), style=_version_style(view, version)),
                      f"{view.history.labelled().get(version, 0):,}", _flag(now.drift_flagged if now else None))
    if not t.row_count:
        t.add_row("—", "", "", "", "", "", "no version has served yet", "", "")
    return Panel(t, title=f"models: live performance per monitor window since {_clock(frame.since)} UTC",
                 title_align="left")


def _drift(frame: StatusFrame) -> Panel:
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("model", "version", "feature", "PSI", "KS", "windows"):
        t.add_column(name, justify="right" if name in ("PSI", "KS") else "left", no_wrap=name == "windows")
    rows = []
    for view in frame.models:
        serving = [v.version for v in view.history.versions if view.role(v.version) in ("live", "canary", "shadow")]
        for version in serving or list(view.history.windows):
            for feature, stats in view.history.last_drift(version).items():
                rows.append((stats.get("psi", 0.0), view, version, feature, stats))
    for psi, view, version, feature, stats in sorted(rows, key=lambda r: -r[0])[:DRIFT_ROWS]:
        points = [p.value for p in view.history.drift("psi").get(feature, {}).get(version, [])]
        t.add_row(view.history.model, version, feature, Text(_num(psi), style="bold red" if psi >= 0.2 else ""),
                  _num(stats.get("ks")), sparkline(points, 0.0, max([0.5] + points)))
    if not rows:
        t.add_row("—", "", "the monitor has not closed a window with a reference profile yet", "", "", "")
    return Panel(t, title="most drifted features: each serving version's last window, PSI per window",
                 title_align="left")


def _timeline(frame: StatusFrame) -> Panel:
    events = timeline.merge(*(v.events for v in frame.models))[-TIMELINE_ROWS:]
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("time (UTC)", "model", "event", "version", "detail"):
        t.add_column(name)
    for e in events:
        # Text, not markup: names and reasons may come from an untrusted event.
        t.add_row(_clock(e.at), Text(e.model), Text(style.event_words(e.kind), style=f"bold {style.event_color(e.kind)}"),
                  Text(e.version or ""), Text(e.detail))
    if not events:
        t.add_row("—", "", "nothing happened yet", "", "")
    return Panel(t, title="timeline", title_align="left")


def _version_style(view: ModelView, version: str) -> str:
    return style.version_colors([v.version for v in view.history.versions]).get(version, "")


def _role(role: str) -> Text:
    colors = {"live": "bold green", "canary": "bold yellow", "shadow": "cyan"}
    return Text(role.lower() or "—", style=colors.get(role.lower(), "dim"))


def _flag(flagged: bool | None) -> Text:
    if flagged is None:
        return Text("—", style="dim")
    return Text("DRIFT", style="bold red") if flagged else Text("ok", style="green")


def _rate(per_s: float) -> str:
    return f"{per_s:,.1f}" if per_s < 100 else f"{per_s:,.0f}"


def _ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1000:,.1f} ms"


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%H:%M:%S")


def _duration(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m{s:02d}s" if hours else f"{m}m{s:02d}s"
