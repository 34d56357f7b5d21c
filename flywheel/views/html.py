"""The report page: one self-contained HTML file (plots embedded as base64 PNG, no scripts, no
network), readable in any browser and after the stack is gone. A part without data says so and
why, instead of drawing an empty plot."""
import base64
from datetime import UTC, datetime
from html import escape

from flywheel.views import plots, style
from flywheel.views.gather import ModelView, ReportData

MAX_DRIFT_FEATURES = 6

CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 24px auto;
       max-width: 1160px; color: #222; background: #fff; }
h1 { margin-bottom: 4px; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 4px; margin-top: 36px; }
h3 { margin-bottom: 6px; }
.meta { color: #555; font-size: 14px; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f4f6f8; }
img { max-width: 100%; border: 1px solid #eee; }
.missing { background: #fff8e1; border-left: 4px solid #f1c40f; padding: 8px 12px; margin: 8px 0; }
.source { color: #777; font-size: 12px; margin: 2px 0 10px; }
.kind { font-weight: 600; }
"""


def render(data: ReportData, psi_threshold: float | None = None) -> str:
    body = [_header(data)]
    for view in data.models:
        body.append(_model(view, psi_threshold))
    body.append(_dead_letters(data))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Flywheel report: {escape(', '.join(v.history.model for v in data.models))}</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _header(data: ReportData) -> str:
    stack = (f"a stack is running (broker {escape(data.stack.bootstrap)})" if data.stack
             else "no stack is running: store-backed parts only")
    models = escape(", ".join(v.history.model for v in data.models))
    return (f"<h1>Flywheel report</h1><p class=\"meta\">models: <b>{models}"
            f"</b> &middot; {_t(data.start)} to {_t(data.end)} UTC &middot; generated {_t(data.generated_at)} UTC"
            f"<br>data dir {escape(data.data_dir)} &middot; {stack}</p>")


def _model(view: ModelView, psi_threshold: float | None) -> str:
    h = view.history
    out = [f"<h2>Model {escape(h.model)}</h2>", _versions(view)]
    metric = h.primary_metric
    out.append("<h3>Live performance by version</h3>")
    if metric:
        out.append(_img(plots.performance_plot(h, metric, view.events), f"{h.model} {metric} by version"))
        out.append(_source("the monitor's windows in the store (performance.*), events from the timeline below"))
    else:
        out.append(_missing("no monitor window with labelled feedback in this time range, so no live performance "
                            "(the monitor scores a version once ground truth for its predictions has been joined)"))
    out.append("<h3>Drift per feature</h3>")
    features = h.most_drifted("psi", MAX_DRIFT_FEATURES)
    if features:
        out.append(_img(plots.drift_plot(h, features, psi_threshold), f"{h.model} drift per feature"))
        out.append(_source(f"the monitor's windows in the store (drift.&lt;feature&gt;.psi); the {len(features)} "
                           f"features with the highest PSI; the dashed line is the monitor's PSI threshold"))
    else:
        out.append(_missing("no drift figures in this time range: the monitor computes drift only for versions "
                            "with a reference profile, in windows that closed"))
    out.append("<h3>Latency</h3>")
    if view.latency:
        out.append(_img(plots.latency_plot(h.model, view.latency), f"{h.model} latency"))
        out.append(_source(view.latency_part.source + "; the monitor does not store latency per window, and "
                           "the workers' full latency histogram is in Prometheus (flywheel_e2e_latency_seconds)"))
    else:
        out.append(_missing(view.latency_part.missing))
    out.append("<h3>Timeline</h3>")
    out.append(_timeline(view))
    return "\n".join(out)


def _versions(view: ModelView) -> str:
    h = view.history
    labelled = h.labelled()
    metric = h.primary_metric
    last = {v: points[-1].value for v, points in h.performance(metric).items()} if metric else {}
    rows = []
    for v in h.versions:
        training = ", ".join(f"{k} {val:.3f}" for k, val in sorted(v.training_metrics.items())[:4])
        rows.append(f"<tr><td><b>{escape(v.version)}</b></td><td>{escape(_role(view, v.version))}</td>"
                    f"<td>{_t(v.created_at) if v.created_at else '—'}</td>"
                    f"<td>{escape(v.task or '—')}</td><td>{escape(training or '—')}</td>"
                    f"<td>{len(h.windows.get(v.version, []))}</td><td>{labelled.get(v.version, 0)}</td>"
                    f"<td>{f'{last[v.version]:.3f}' if v.version in last else '—'}</td></tr>")
    retrains = f"{len(h.retrains)} retrain(s) requested in this range" if h.retrains else "no retrain in this range"
    return (f"<p class=\"meta\">{len(h.versions)} version(s); {retrains}</p><table><tr><th>version</th>"
            f"<th>role now</th><th>registered (UTC)</th><th>task</th><th>training metrics</th><th>windows</th>"
            f"<th>labelled</th><th>last {escape(metric or 'metric')}</th></tr>{''.join(rows)}</table>")


def _timeline(view: ModelView) -> str:
    out = []
    if view.events_part.missing:
        out.append(_missing(view.events_part.missing))
    if not view.events:
        out.append(_missing("no events in this time range"))
        return "\n".join(out)
    rows = []
    for e in view.events:
        evidence = ", ".join(f"{k} {v:.3g}" for k, v in sorted(e.evidence.items()))
        rows.append(f"<tr><td>{_t(e.at)}</td><td class=\"kind\" style=\"color:{style.event_color(e.kind)}\">"
                    f"{escape(style.event_words(e.kind))}</td><td>{escape(e.version or '')}</td>"
                    f"<td>{escape(e.detail)}</td><td>{escape(evidence)}</td></tr>")
    out.append("<table><tr><th>time (UTC)</th><th>event</th><th>version</th><th>detail</th><th>evidence</th></tr>"
               + "".join(rows) + "</table>")
    out.append(_source(view.events_part.source))
    return "\n".join(out)


def _dead_letters(data: ReportData) -> str:
    out = ["<h2>Dead letters</h2>"]
    if not data.dead_letters and data.dead_letters_part.source:
        out.append(f"<p>None: every record was handled.</p>{_source(data.dead_letters_part.source)}")
        return "\n".join(out)
    if not data.dead_letters:
        out.append(_missing(data.dead_letters_part.missing))
        return "\n".join(out)
    out.append(_img(plots.dead_letter_plot(data.dead_letters, data.start, data.end), "dead letters by reason"))
    out.append(_source(data.dead_letters_part.source))
    return "\n".join(out)


def _img(png: bytes, alt: str) -> str:
    return f"<img alt=\"{escape(alt)}\" src=\"data:image/png;base64,{base64.b64encode(png).decode()}\">"


def _missing(why: str) -> str:
    return f"<div class=\"missing\"><b>No data.</b> {escape(why)}</div>"


def _source(text: str) -> str:
    return f"<p class=\"source\">Source: {text}</p>"


def _t(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _role(view: ModelView, version: str) -> str:
    role = view.role(version) or "—"
    return f"{role}, awaiting approval" if view.awaiting_approval(version) else role
