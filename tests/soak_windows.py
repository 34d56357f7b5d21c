"""Monitor windows recomputed without the monitor's code, for the kill rotation
(tests/test_soak_kill_rotation.py): plain counting over the predictions a raw read_committed reader
decoded and over the feedback rows SQL reads from the store file (no test here).

What a stored window (`metrics_by_window`) of a model version over [start, end) holds
(processors/monitor/windows.py): the version's predictions with `predicted_at` in it, every
record, the embedded broker's exposed in-flight batches included (the raw reader reads those
too), and the version's feedback with `labelled_at` in it, once per request id (`labelled`, and
accuracy over those); replays are left out, and only as far as the monitor read them before the
window was merged. A record read after its window was merged is late: it is counted in the
version's oldest window not yet merged, and in that window's `late`. Hence, per version, windows
in order, with D = the running sum of (stored - recount):

- rows: D <= 0 (no prediction counted twice), D >= -(late records stored in later windows) (a
  shortfall is records folded forward, which later windows counted as late), and D = 0 after the
  last window (every prediction counted once). Without late records every window equals its
  recount.
- labelled and correct answers: the same, except that a request whose feedback reached the
  feedback topic twice (a killed joiner's batch the embedded broker exposed, then joined again by
  its successor) is counted once per window its copies fell in (a copy read late lands in a later
  window, or two copies in two partitions' partials): D may exceed 0 by the extra copies the raw
  reader found up to that window, no more.

Drift statistics are not recomputed: they compare a window's sketches with the version's
reference profile, whose bytes only the monitor's own code reads.
"""
import json
import sqlite3
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

Version = tuple[str, str]          # (model, model version)
FIGURES = ("rows", "labelled", "correct")


@dataclass(frozen=True)
class Recount:
    """Per version and window start: what each figure must be, recounted from raw records."""
    rows: Counter
    labelled: Counter
    correct: Counter
    extra_feedback: Counter      # copies of a request's feedback beyond the first, by labelled_at's window


@dataclass(frozen=True)
class Stored:
    """Per version and window start: the monitor's stored figures and its late records."""
    rows: Counter
    labelled: Counter
    correct: Counter
    late: Counter


def window_of(t_ms: int, window_ms: int) -> int:
    return t_ms - t_ms % window_ms


def stored(db: Path) -> Stored:
    out = Stored(Counter(), Counter(), Counter(), Counter())
    with sqlite3.connect(db) as conn:
        for model, version, start, values in conn.execute(
                "SELECT model, model_version, window_start, metric_values FROM metrics_by_window"):
            values, key = json.loads(values), (model, version, start)
            labelled = int(values.get("labelled", 0))
            out.rows[key] = int(values["rows"])
            out.labelled[key] = labelled
            out.correct[key] = round(values.get("performance.accuracy", 0.0) * labelled)
            out.late[key] = int(values.get("late", 0))
    return out


def recount(predictions: Iterable[tuple[str, str, int]], feedback_copies: Iterable[tuple[str, str, str, int]],
            db: Path, window_ms: int) -> Recount:
    """`predictions`: (model, version, predicted_at) of every live prediction record read raw;
    `feedback_copies`: (model, version, request id, labelled_at) of every live feedback record read
    raw from the feedback topic; the labelled requests themselves are the store's feedback rows."""
    out = Recount(Counter(), Counter(), Counter(), Counter())
    for model, version, predicted_at in predictions:
        out.rows[(model, version, window_of(predicted_at, window_ms))] += 1
    with sqlite3.connect(db) as conn:
        for model, version, labelled_at, true_label, predicted_label, flags in conn.execute(
                "SELECT model, model_version, labelled_at, true_label, predicted_label, flags "
                "FROM feedback_by_time_shard WHERE true_label IS NOT NULL AND predicted_label IS NOT NULL"):
            if "replay" in json.loads(flags or "[]"):
                continue
            key = (model, version, window_of(labelled_at, window_ms))
            out.labelled[key] += 1
            out.correct[key] += true_label == predicted_label
    seen: set[tuple[str, str, str]] = set()
    for model, version, request_id, labelled_at in feedback_copies:
        if (model, version, request_id) in seen:
            out.extra_feedback[(model, version, window_of(labelled_at, window_ms))] += 1
        seen.add((model, version, request_id))
    return out


def differences(stored_: Stored, recount_: Recount) -> list[str]:
    """Every way the stored windows break the rules of the module text; empty when they hold."""
    problems = []
    versions = {key[:2] for c in (stored_.rows, recount_.rows, recount_.labelled) for key in c}
    for version in sorted(versions):
        starts = sorted({key[2] for c in (stored_.rows, recount_.rows, recount_.labelled) for key in c
                         if key[:2] == version})
        for figure in FIGURES:
            problems += _running(version, starts, figure, getattr(stored_, figure), getattr(recount_, figure),
                                 stored_.late, recount_.extra_feedback if figure != "rows" else Counter())
    return problems


def _running(version: Version, starts: list[int], figure: str, kept: Counter, truth: Counter, late: Counter,
             extra: Counter) -> list[str]:
    problems, running, extras = [], 0, 0
    late_after = sum(late[(*version, s)] for s in starts)
    for start in starts:
        key = (*version, start)
        running += kept[key] - truth[key]
        extras += extra[key]
        late_after -= late[key]
        if not -late_after <= running <= extras:
            problems.append(f"{version[0]} {version[1]} window {start} {figure}: stored {kept[key]}, recounted "
                            f"{truth[key]}; running difference {running} outside [-{late_after}, {extras}] "
                            f"(late records after it, extra feedback copies up to it)")
    return problems   # after the last window no late record remains: its bounds say D = 0 (rows)


def summary(stored_: Stored, recount_: Recount) -> str:
    """One line: windows stored, how many equal their recount in every figure, late records."""
    keys = set(stored_.rows)
    equal = sum(all(getattr(stored_, f)[k] == getattr(recount_, f)[k] for f in FIGURES) for k in keys)
    return (f"{len(keys)} windows stored, {equal} equal to their recount in rows, labelled and correct answers; "
            f"{sum(stored_.late.values())} late records folded forward, "
            f"{sum(recount_.extra_feedback.values())} extra feedback copies")
