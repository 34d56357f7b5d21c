"""The terminal view of a StatusFrame (rich): processes, throughput and latency per model, live
accuracy per version with a sparkline of its windows, the most drifted features, the timeline.

Given the terminal's size, a frame taller than the terminal is drawn compact instead: sections
under one-line rules instead of panels, processes two to a row, one line per table row, the
drifted features cut first, and the timeline's latest events kept (a live view is cut at the
bottom, where the newest events are)."""
import io
import time
from datetime import UTC, datetime

from rich import box
from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
from rich.panel import Panel
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from flywheel.views import style, timeline
from flywheel.views.gather import ModelView
from flywheel.views.live import StatusFrame

BLOCKS = "▁▂▃▄▅▆▇█"
TIMELINE_ROWS = 12
DRIFT_ROWS = 6
SPARK_WIDTH = 24
VERSION_COLUMNS = ("model", "version", "role", "pred/s", "metric", "last", "windows", "labelled", "drift")
# What a narrow terminal loses first: the model, its versions, their roles, metric and drift stay.
DROPPED_FIRST = ("windows", "labelled", "pred/s", "last")
RIGHT_ALIGNED = ("pred/s", "last", "labelled")
PANEL_EDGES = 4                  # a panel's border and padding, both sides


def render(frame: StatusFrame, width: int | None = None, height: int | None = None) -> RenderableType:
    """The full view, or the compact one when the full one is taller than `height` rows."""
    full = Group(_header(frame), _processes(frame), _throughput(frame), _versions(frame, width), _drift(frame),
                 _timeline(frame))
    if height is None or rows(full, width) <= height:
        return full
    return _compact(frame, width, height)


def fitted(frame: StatusFrame, console: Console) -> RenderableType:
    """The frame for a live view on `console`: compact when the terminal is too short for it all."""
    return render(frame, console.width, console.height if console.is_terminal else None)


def rows(renderable: RenderableType, width: int | None) -> int:
    """How many terminal rows `renderable` takes at `width` columns."""
    console = Console(width=width or 120, file=io.StringIO(), color_system=None)
    return len(console.render_lines(renderable, console.options, pad=False))


def _compact(frame: StatusFrame, width: int | None, height: int) -> Group:
    fixed = [_header(frame), _compact_processes(frame), _compact_throughput(frame), _compact_versions(frame, width)]
    left = height - rows(Group(*fixed), width) - 1  # one row spare: a live view redraws below its last line
    events = _events(frame)
    timeline_rows = max(1, min(len(events), left - 2))
    drift_rows = min(DRIFT_ROWS, left - 2 - timeline_rows - 2)
    tail = [_compact_drift(frame, drift_rows)] if drift_rows > 0 else []
    return Group(*fixed, *tail, _compact_timeline(events[len(events) - timeline_rows:]))


def _section(title: str, *parts: RenderableType) -> Group:
    return Group(Rule(Text(title, style="bold"), align="left", style="dim"), *parts)


def _one_line_table(*columns: str, right: tuple[str, ...] = (), header: bool = True) -> Table:
    t = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0), show_header=header, header_style="bold")
    for name in columns:
        t.add_column(name, justify="right" if name in right else "left", no_wrap=True, overflow="ellipsis")
    return t


def _keep_whole(t: Table, *shrinkable: str) -> Table:
    """Columns other than `shrinkable` keep their widest cell when the table is too wide: a time
    or a version cut to '13:…' says nothing, a detail or sparkline cut short still does."""
    for column in t.columns:
        if column.header not in shrinkable:
            column.min_width = max([Text.from_markup(str(column.header)).cell_len] +
                                   [c.cell_len if isinstance(c, Text) else len(str(c)) for c in column.cells])
    return t


def _compact_processes(frame: StatusFrame) -> Group:
    per_row = 2
    t = _one_line_table(*(["process", "state", "records/s", "lag"] * per_row), right=("records/s", "lag"))
    cells = [(p.name, _state(p.state, p.restarts), _records(p), f"{p.lag:,}") for p in frame.live.processes]
    for i in range(0, len(cells), per_row):
        chunk = cells[i:i + per_row]
        t.add_row(*[c for cell in chunk for c in cell], *([""] * 4 * (per_row - len(chunk))))
    return _section("processes", t)


def _compact_throughput(frame: StatusFrame) -> Group:
    live = frame.live
    lines = []
    for m in sorted(set(live.requests_in_per_s) | set(live.predictions_per_s) | set(live.latency)):
        latency = live.latency.get(m)
        lines.append(Text(f"{m}: requests {_rate(live.requests_in_per_s.get(m, 0.0))}/s, predictions "
                          f"{_rate(live.predictions_per_s.get(m, 0.0))}/s, latency p50 "
                          f"{_ms(latency.p50 if latency else None)}, p99 {_ms(latency.p99 if latency else None)}",
                          no_wrap=True, overflow="ellipsis"))
    lines.append(_dead_letters(live))
    return _section("throughput", *lines)


def _compact_versions(frame: StatusFrame, width: int | None) -> Group:
    rows = _version_rows(frame)
    if not rows:
        return _section("models", Text("no version has served yet", style="dim"))

    def table(columns: list[str]) -> Table:
        t = _one_line_table(*columns, right=RIGHT_ALIGNED)
        for row in rows:
            t.add_row(*_pick(row, columns))
        return _keep_whole(t, "windows", "metric")
    return _section("models", _fitting(table, width or 120))


def _fitting(table, width: int) -> Table:
    """`table(columns)` with every version column, or without the first of DROPPED_FIRST, the
    first two, ... until it fits `width`."""
    columns = list(VERSION_COLUMNS)
    t = table(columns)
    for drop in DROPPED_FIRST:
        if _width(t) <= width:
            break
        columns.remove(drop)
        t = table(columns)
    return t


def _pick(row: tuple, columns: list[str]) -> list:
    return [cell for name, cell in zip(VERSION_COLUMNS, row, strict=True) if name in columns]


def _width(t: Table) -> int:
    """The columns a table takes when nothing constrains it."""
    console = Console(width=1000, file=io.StringIO(), color_system=None)
    return Measurement.get(console, console.options, t).maximum


def _compact_drift(frame: StatusFrame, limit: int) -> Group:
    t = _one_line_table("model", "version", "feature", "PSI", "KS", "windows", right=("PSI", "KS"))
    for row in _drift_rows(frame)[:limit]:
        t.add_row(*row)
    return _section("most drifted features", _keep_whole(t, "windows", "feature"))


def _compact_timeline(events: list) -> Group:
    t = _one_line_table("time", "model", "event", "version", "detail")
    for e in events:
        t.add_row(*_event_row(e))
    if not events:
        t.add_row("—", "", "nothing happened yet", "", "")
    return _section("timeline (latest)", _keep_whole(t, "detail"))


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
    # One row whatever the width: the data dir, last, is what a narrow terminal cuts.
    return Text.assemble(("flywheel status", "bold"), f"  broker {frame.stack.bootstrap}  ·  up {up}  ·  ",
                         f"{_clock(frame.at)} UTC  ·  data dir {frame.stack.data_dir}", no_wrap=True,
                         overflow="ellipsis")


def _processes(frame: StatusFrame) -> Panel:
    t = Table(box=box.SIMPLE_HEAD, expand=False, pad_edge=False)
    for name, justify in (("process", "left"), ("pid", "right"), ("state", "left"), ("restarts", "right"),
                          ("records/s", "right"), ("consumer lag", "right"), ("metrics", "left")):
        t.add_column(name, justify=justify)
    for p in frame.live.processes:
        restarts = Text(str(p.restarts), style="yellow" if p.restarts else "")
        t.add_row(p.name, str(p.pid), _state(p.state), restarts, _records(p), f"{p.lag:,}", f":{p.port}")
    return Panel(t, title="processes", title_align="left")


def _state(state: str, restarts: int = 0) -> Text:
    text = Text(state, style={"up": "green", "exited": "bold red"}.get(state, "yellow"))
    if restarts:  # the compact view has no restarts column
        text.append(f" ↻{restarts}", style="yellow")
    return text


def _records(p) -> str:
    """Records consumed per second; for a process that only produces (the simulator), what it sends."""
    if p.records_out_per_s and not p.records_in_per_s:
        return f"{_rate(p.records_out_per_s)} out"
    return _rate(p.records_in_per_s)


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
    return Panel(Group(t, _dead_letters(live)), title="throughput", title_align="left")


def _dead_letters(live) -> Text:
    dead = ", ".join(f"{reason} {n:,.0f}" for reason, n in sorted(live.dead_letters.items(), key=lambda kv: -kv[1]))
    return Text.assemble("dead letters: ", (dead or "none", "yellow" if dead else "dim"),
                         f"  ({live.dead_letters_per_s:.1f}/s)  ·  rates over the last {live.seconds:.1f} s",
                         no_wrap=True, overflow="ellipsis")


def _versions(frame: StatusFrame, width: int | None) -> Panel:
    rows = _version_rows(frame)

    def table(columns: list[str]) -> Table:
        t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        for name in columns:
            t.add_column(name, justify="right" if name in RIGHT_ALIGNED else "left",
                         no_wrap=name == "windows", min_width=SPARK_WIDTH if name == "windows" else None)
        for row in rows:
            t.add_row(*_pick(row, columns))
        if not rows:
            t.add_row("—", "no version has served yet", *[""] * (len(columns) - 2))
        return t
    return Panel(_fitting(table, width - PANEL_EDGES) if width else table(list(VERSION_COLUMNS)),
                 title=f"models: live performance per monitor window since {_clock(frame.since)} UTC",
                 title_align="left")


def _version_rows(frame: StatusFrame) -> list[tuple]:
    live = {(v.model, v.version): v for v in frame.live.versions}
    out = []
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
            out.append((view.history.model, version, _role(_role_of(view, version, now)),
                        _rate(now.predictions_per_s) if now else "—", metric or "—",
                        f"{last:.3f}" if last is not None else "—",
                        Text(sparkline([p.value for p in points], lo, hi), style=_version_style(view, version)),
                        f"{view.history.labelled().get(version, 0):,}", _flag(now.drift_flagged if now else None)))
    return out


def _role_of(view: ModelView, version: str, now) -> str:
    """The registry's role; a canary waiting for a person says so."""
    if view.awaiting_approval(version):
        return "awaiting"
    return view.role(version) or (now.role if now else "")


def _drift(frame: StatusFrame) -> Panel:
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("model", "version", "feature", "PSI", "KS", "windows"):
        t.add_column(name, justify="right" if name in ("PSI", "KS") else "left", no_wrap=name == "windows")
    for row in _drift_rows(frame)[:DRIFT_ROWS]:
        t.add_row(*row)
    if not t.row_count:
        t.add_row("—", "", "the monitor has not closed a window with a reference profile yet", "", "", "")
    return Panel(t, title="most drifted features: each serving version's last window, PSI per window",
                 title_align="left")


def _drift_rows(frame: StatusFrame) -> list[tuple]:
    """Each serving version's features by their last window's PSI, the most drifted first."""
    found = []
    for view in frame.models:
        serving = [v.version for v in view.history.versions if view.role(v.version) in ("live", "canary", "shadow")]
        for version in serving or list(view.history.windows):
            for feature, stats in view.history.last_drift(version).items():
                found.append((stats.get("psi", 0.0), view, version, feature, stats))
    out = []
    for psi, view, version, feature, stats in sorted(found, key=lambda r: -r[0]):
        points = [p.value for p in view.history.drift("psi").get(feature, {}).get(version, [])]
        out.append((view.history.model, version, feature, Text(_num(psi), style="bold red" if psi >= 0.2 else ""),
                    _num(stats.get("ks")), sparkline(points, 0.0, max([0.5] + points))))
    return out


def _events(frame: StatusFrame) -> list:
    return timeline.merge(*(v.events for v in frame.models))


def _event_row(e) -> tuple:
    # Text, not markup: names and reasons may come from an untrusted event.
    return (_clock(e.at), Text(e.model), Text(style.event_words(e.kind), style=f"bold {style.event_color(e.kind)}"),
            Text(e.version or ""), Text(e.detail))


def _timeline(frame: StatusFrame) -> Panel:
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("time (UTC)", "model", "event", "version", "detail"):
        t.add_column(name)
    for e in _events(frame)[-TIMELINE_ROWS:]:
        t.add_row(*_event_row(e))
    if not t.row_count:
        t.add_row("—", "", "nothing happened yet", "", "")
    return Panel(t, title="timeline", title_align="left")


def _version_style(view: ModelView, version: str) -> str:
    return style.version_colors([v.version for v in view.history.versions]).get(version, "")


def _role(role: str) -> Text:
    colors = {"live": "bold green", "canary": "bold yellow", "shadow": "cyan", "awaiting": "bold magenta"}
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
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%H:%M:%S")


def _duration(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m{s:02d}s" if hours else f"{m}m{s:02d}s"
