"""Action timelines: each person's top action over the video's time, one lane per track, drawn as a PNG
(matplotlib's Agg canvas, no pyplot) and as rows of coloured blocks for the terminal (rich).

Encoding: a lane is one track ("#<id>"); every scored keyframe is a block from its time to the next keyframe's,
coloured by the person's top action, its opacity ``0.12 + 0.88 * score`` (a present person never vanishes).
Persons without a track id: in a video with tracks, they share one "untracked" lane (last) showing the most
confident one per keyframe (ByteTrack gives no id at a person's first sighting); in a video without any track ids
(no ``--track``), lane k holds the k-th person from the left in each keyframe ("P1", "P2", ...).
"""

from __future__ import annotations

import colorsys
import json
import math
import textwrap
import unicodedata
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

import numpy as np

from stclip_cli.sinks.destinations import Destination, FileSink, Target, classify
from stclip_cli.errors import StclipError, first_line
from stclip_cli.records import SCORES, FrameResult, ModelInfo, Sink, VideoInfo
from stclip_cli.sinks.result_format import load_json, parse_result

UNTRACKED = "untracked"
NOBODY = "nobody found"
DPI = 100
FIG_WIDTH_IN = 12.0
MAX_PLOT_LANES = 60
MAX_PLOT_BLOCKS = 2000  # per lane: about twice the PNG's pixels across
MAX_TEXT_ROWS = 10
MIN_ALPHA = 0.12
SHADES = "░▒▓█"  # terminal intensity: score < 0.25, < 0.5, < 0.75, above
# Hex copies of matplotlib's tab10 and tab20, so the terminal shares the PNG's colours without importing matplotlib.
TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
TAB20 = ["#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896", "#9467bd", "#c5b0d5",
         "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#7f7f7f", "#c7c7c7", "#bcbd22", "#dbdb8d", "#17becf", "#9edae5"]


@dataclass(frozen=True)
class Lane:
    """One row of the timeline: blocks ``[start, end)`` in seconds, each with its top action (index) and score."""

    label: str
    track_id: int | None
    start: np.ndarray
    end: np.ndarray
    action: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return len(self.start)

    @property
    def first(self) -> float:
        """When the lane's person is first scored (s)."""
        return float(self.start[0])

    @property
    def seconds(self) -> float:
        """How long the lane's person is on screen, summed over its blocks (s)."""
        return float(np.sum(self.end - self.start))


@dataclass(frozen=True)
class Timeline:
    """What both renderings draw: the video, the model that scored it, its actions and the lanes in display order."""

    video: str
    model: str
    note: str | None
    actions: list[str]
    duration: float
    lanes: list[Lane]
    tracked: bool
    events: tuple[tuple[int, int, float, float], ...] = ()  # (track id, action index, start s, end s): --events' spans


class KeyframeLog:
    """The little a timeline needs from each scored keyframe: its time and, per person, track id, box centre, top
    action and top score (not the whole score vector: an hour of 20 persons at 30 frames/s stays under 100 MB)."""

    def __init__(self) -> None:
        self.keytimes = array("d")
        self._time, self._track, self._centre = array("d"), array("q"), array("d")
        self._action, self._score = array("l"), array("d")

    def add(self, time: float, track_ids: Sequence[int | None], centres: Sequence[float], scores: np.ndarray) -> None:
        """Record one keyframe; ``scores`` is (persons, actions); a track id of None or < 0 means untracked."""
        self.keytimes.append(float(time))
        if not len(track_ids):
            return
        scores = np.asarray(scores, dtype=np.float64).reshape(len(track_ids), -1)
        top = scores.argmax(axis=1)
        for track, centre, action, score in zip(track_ids, centres, top, scores[np.arange(len(top)), top]):
            self._time.append(float(time))
            self._track.append(-1 if track is None or int(track) < 0 else int(track))
            self._centre.append(float(centre))
            self._action.append(int(action))
            self._score.append(float(score))

    def timeline(self, video: str, model: str, note: str | None, actions: Sequence[str], duration: float | None,
                 fps: float | None = None) -> Timeline:
        """The lanes of this video (see the module docstring), sorted by first appearance, untracked last."""
        return build_timeline(self, video, model, note, actions, duration, fps)


def build_timeline(log: KeyframeLog, video: str, model: str, note: str | None, actions: Sequence[str],
                   duration: float | None, fps: float | None = None) -> Timeline:
    """Turn a keyframe log into lanes. A keyframe's block ends at the next keyframe of the video (so a stride or a
    variable frame rate is drawn as it was scored); the last one lasts the median keyframe interval."""
    keytimes = np.unique(np.asarray(log.keytimes, dtype=np.float64))
    if len(keytimes) > 1:
        step = float(np.median(np.diff(keytimes)))
    else:
        step = 1.0 / fps if fps and fps > 0 else 1.0
    block_ends = np.append(keytimes[1:], keytimes[-1] + step) if len(keytimes) else keytimes
    end_of_video = max(duration or 0.0, float(block_ends[-1]) if len(block_ends) else 0.0)

    time = np.asarray(log._time, dtype=np.float64)
    track = np.asarray(log._track, dtype=np.int64)
    action = np.asarray(log._action, dtype=np.int64)
    score = np.asarray(log._score, dtype=np.float64)
    tracked = bool(np.any(track >= 0))
    if tracked:
        groups = [(f"#{tid}", tid, rows) for tid, rows in _group_rows(track[track >= 0], np.flatnonzero(track >= 0))]
        loose = np.flatnonzero(track < 0)
        if len(loose):  # the most confident untracked person of each keyframe
            order = loose[np.lexsort((-score[loose], time[loose]))]
            _, first = np.unique(time[order], return_index=True)
            groups.append((UNTRACKED, None, order[first]))
    else:  # no track ids at all: the k-th person from the left of each keyframe is lane k
        order = np.lexsort((np.asarray(log._centre, dtype=np.float64), time))
        _, starts, which = np.unique(time[order], return_index=True, return_inverse=True)
        rank = np.empty(len(time), dtype=np.int64)
        rank[order] = np.arange(len(order)) - starts[which]
        groups = [(f"P{k + 1}", None, rows) for k, rows in _group_rows(rank, np.arange(len(rank)))]

    lanes = []
    for label, tid, rows in groups:
        rows = rows[np.argsort(time[rows], kind="stable")]
        ends = block_ends[np.searchsorted(keytimes, time[rows])]
        lanes.append(Lane(label, tid, time[rows], ends, action[rows], score[rows]))
    lanes.sort(key=lambda lane: (lane.label == UNTRACKED, lane.first, lane.track_id if lane.track_id is not None else 0))
    return Timeline(video, model, note, list(actions), end_of_video, lanes, tracked)


def _group_rows(keys: np.ndarray, rows: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """``rows`` grouped by their ``keys`` (ascending key; rows in input order): one sort, not one scan per key."""
    order = np.argsort(keys, kind="stable")
    values, counts = np.unique(keys[order], return_counts=True)
    return [(int(v), rows[part]) for v, part in zip(values, np.split(order, np.cumsum(counts)[:-1]))]


def timeline_from_result(data: Any, source: str = "result") -> Timeline:
    """The timeline of one per-video JSON written by `stclip detect` (already parsed), read by its one reader
    (result_format.py): frames need a time and persons, persons a box and scores; one-line error if it is not one."""
    result = parse_result(data, source, frame_needs=("time", "persons"), person_needs=("box", "scores"))
    actions = result.actions
    log = KeyframeLog()
    for frame in result.frames:
        assert frame.time is not None
        persons = frame.persons
        tracks = [p.track_id for p in persons]
        centres = [(p.box[0] + p.box[2]) / 2 for p in persons]
        scores = np.array([[p.scores.get(a, 0.0) for a in actions] for p in persons], dtype=np.float64)
        log.add(frame.time, tracks, centres, scores.reshape(len(persons), len(actions)))
    fps, num_frames = result.fps, result.num_frames
    try:
        duration = num_frames / fps if fps and num_frames is not None else None
    except OverflowError:
        duration = None
    if duration is not None and not math.isfinite(duration):
        duration = None
    model = result.model
    return log.timeline(Path(result.video if result.video is not None else str(source)).name,
                        str(model.get("name", "?")), model.get("note"), actions, duration, fps)


def read_result(path: Path) -> Timeline:
    """The timeline of a detect JSON file on disk, or of the JSON Lines a stream's run writes (``--jsonl``)."""
    if path.suffix.lower() == ".jsonl":
        return timeline_from_result(_from_lines(path), str(path))
    return timeline_from_result(load_json(path, "result file"), str(path))


def _from_lines(path: Path) -> dict:
    """A JSON Lines result (one scored frame a line) as the detect JSON it holds: its frames, its video, and the
    actions its persons' scores name, in their order."""
    if not path.is_file():
        raise StclipError(f"result file not found: {path}")
    frames, videos, actions = [], [], {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise StclipError(f"{path}: not a readable JSON Lines result ({first_line(err)})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as err:
            raise StclipError(f"{path}: line {number} is not JSON ({first_line(err)})") from None
        if not isinstance(record, dict) or not isinstance(record.get("persons"), list):
            raise StclipError(f"{path}: line {number} is not a detect JSON Lines record (an object with \"persons\")")
        videos.append(record.get("video"))
        for person in record["persons"]:
            if isinstance(person, dict) and isinstance(person.get("scores"), dict):
                actions.update(dict.fromkeys(map(str, person["scores"])))
        frames.append({k: record[k] for k in ("index", "time", "persons") if k in record})
    if len(set(map(str, videos))) > 1:
        raise StclipError(f"{path} holds the frames of several videos; plot one video's lines at a time")
    return {"video": videos[0] if videos else str(path), "actions": list(actions), "frames": frames}


def action_colours(count: int) -> list[str]:
    """One hex colour per action, by its position in the action list (the same in every video of a run):
    tab10 up to 10 actions, tab20 up to 20, evenly spaced hues beyond."""
    if count <= 10:
        return TAB10[:count]
    if count <= 20:
        return TAB20[:count]
    return ["#%02x%02x%02x" % tuple(round(255 * c) for c in colorsys.hsv_to_rgb(i / count, 0.75, 0.85 - 0.2 * (i % 2)))
            for i in range(count)]


def shown_lanes(lanes: Sequence[Lane], limit: int) -> list[Lane]:
    """At most ``limit`` lanes: the longest on screen, kept in display order."""
    if len(lanes) <= limit:
        return list(lanes)
    keep = set(sorted(range(len(lanes)), key=lambda i: (-lanes[i].seconds, i))[:limit])
    return [lane for i, lane in enumerate(lanes) if i in keep]


def figure_size(lanes: int) -> tuple[float, float]:
    """The PNG's size in inches: a fixed width, a height that grows with the lanes (0.3 in each) up to 16 in."""
    return FIG_WIDTH_IN, float(min(16.0, max(3.2, 1.9 + 0.3 * lanes)))


def image_size(lanes: int) -> tuple[int, int]:
    """The PNG's (width, height) in pixels for ``lanes`` lanes shown."""
    width, height = figure_size(min(lanes, MAX_PLOT_LANES))
    return round(width * DPI), round(height * DPI)


def _legend_actions(actions: Sequence[str], lanes: Sequence[Lane]) -> list[int]:
    """The actions a legend lists: all of them up to 20 (so one never on top is seen to have been asked), else those
    that are some lane's top action."""
    if len(actions) <= 20:
        return list(range(len(actions)))
    return sorted({int(a) for lane in lanes for a in lane.action})


def _plain(text: str) -> str:
    """``text`` as matplotlib should print it: control and direction-override characters shown as escapes (they
    would change what the label shows), right-to-left scripts shaped and in visual order (matplotlib lays text out
    left to right, unjoined), characters the font lacks spelled out (no tofu boxes), dollar signs escaped."""
    from stclip_cli.sinks.render import displayable

    text = "".join(f"\\u{ord(c):04x}" if unicodedata.category(c) == "Cc" or c in DIRECTION_CONTROLS else c
                   for c in text)
    if any(unicodedata.bidirectional(c) in ("R", "AL") for c in text):
        import arabic_reshaper
        from bidi import get_display

        text = get_display(arabic_reshaper.reshape(text))
    return displayable(text).replace("$", r"\$")


DIRECTION_CONTROLS = frozenset("\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _blocks(lane: Lane, duration: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The rectangles a lane is drawn with: its blocks, or, when there are more than ``MAX_PLOT_BLOCKS`` (finer than the
    PNG's pixels), ``MAX_PLOT_BLOCKS`` time bins of them (start, width, action, score)."""
    if len(lane) <= MAX_PLOT_BLOCKS:
        return lane.start, lane.end - lane.start, lane.action, lane.score
    action, score = binned(lane, MAX_PLOT_BLOCKS, duration)
    width = duration / MAX_PLOT_BLOCKS
    kept = action >= 0
    return np.flatnonzero(kept) * width, np.full(int(kept.sum()), width), action[kept], score[kept]


def _alpha(score: float) -> float:
    """A block's opacity for its score: ``MIN_ALPHA`` at 0, opaque at 1."""
    return MIN_ALPHA + (1 - MIN_ALPHA) * min(max(float(score), 0.0), 1.0)


def render_png(timeline: Timeline, path: str | Path | IO[bytes]) -> None:
    """Draw the timeline into a PNG at ``path`` or an open binary file (matplotlib's Agg canvas: no GUI, no pyplot
    state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import to_rgb
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    lanes = shown_lanes(timeline.lanes, MAX_PLOT_LANES)
    fig = Figure(figsize=figure_size(len(lanes)), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colours = [to_rgb(c) for c in action_colours(len(timeline.actions))]
    title = _plain(f"{timeline.video} — {timeline.model}")
    if len(lanes) < len(timeline.lanes):
        title += f"  (the {len(lanes)} longest of {len(timeline.lanes)} lanes)"
    if timeline.note:
        title += "\n" + "\n".join(textwrap.wrap(_plain(f"note: {timeline.note}"), 150))
    ax.set_title(title, fontsize=10, loc="left")
    ax.set_xlim(0.0, max(timeline.duration, 1e-3))
    ax.set_xlabel("time (s)")
    ax.grid(axis="x", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    if not lanes:
        ax.set_ylim(0, 1)
        ax.set_yticks([])
        ax.text(0.5, 0.5, NOBODY, transform=ax.transAxes, ha="center", va="center", fontsize=16, color="#555555")
    else:
        for y, lane in enumerate(lanes):
            if y % 2:
                ax.axhspan(y - 0.5, y + 0.5, color="#f2f2f2", zorder=0, linewidth=0)
            starts, widths, actions, scores = _blocks(lane, timeline.duration)
            faces = [(*colours[a], _alpha(s)) for a, s in zip(actions, scores)]
            ax.broken_barh(list(zip(starts, widths)), (y - 0.4, 0.8), facecolors=faces, linewidth=0)
            spans = [(start, max(end - start, 1e-3), action) for track, action, start, end in timeline.events
                     if lane.track_id is not None and track == lane.track_id]
            for start, width, action in spans:  # an event: its action's colour as an outline around its span
                ax.broken_barh([(start, width)], (y - 0.46, 0.92), facecolors="none", edgecolors=[colours[action]],
                               linewidth=1.6, zorder=3)
        ax.set_ylim(len(lanes) - 0.5, -0.5)
        ax.set_yticks(range(len(lanes)), [_plain(lane.label) for lane in lanes], fontsize=9 if len(lanes) <= 30 else 7)
        ax.set_ylabel("tracks" if timeline.tracked else "persons, left to right (no track ids)")
        used = _legend_actions(timeline.actions, lanes)
        handles = [Patch(facecolor=colours[a], label=_plain(timeline.actions[a])) for a in used]
        rows = max(1, int((figure_size(len(lanes))[1] - 1.0) / 0.25))
        fig.legend(handles=handles, loc="outside right upper", title="top action", fontsize=9, title_fontsize=9,
                   ncols=math.ceil(len(handles) / rows), frameon=False, alignment="left")
        key = [Patch(facecolor=(0.35, 0.35, 0.35, _alpha(s)), label=f"{s:.2f}") for s in (0.25, 0.5, 0.75, 1.0)]
        if timeline.events:
            key.append(Patch(facecolor="none", edgecolor=(0.2, 0.2, 0.2), linewidth=1.6, label="event (--events)"))
        fig.legend(handles=key, loc="outside right lower", title="score (opacity)", fontsize=8, title_fontsize=9,
                   ncols=1, frameon=False, alignment="left")
    fig.savefig(path, format="png", dpi=DPI)


def binned(lane: Lane, bins: int, duration: float) -> tuple[np.ndarray, np.ndarray]:
    """The lane resampled into ``bins`` equal time bins over ``duration``: per bin the top action and score of its
    most confident block (a block narrower than a bin still shows), action -1 where nobody is."""
    action = np.full(bins, -1, dtype=np.int64)
    score = np.zeros(bins, dtype=np.float64)
    if not len(lane):
        return action, score
    edges = np.linspace(0.0, max(duration, 1e-9), bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    covering = np.searchsorted(lane.start, centres, side="right") - 1  # blocks wider than a bin: where they lie
    inside = (covering >= 0) & (centres < lane.end[np.clip(covering, 0, None)])
    action[inside], score[inside] = lane.action[covering[inside]], lane.score[covering[inside]]
    home = np.clip(np.searchsorted(edges, lane.start, side="right") - 1, 0, bins - 1)  # every block's own bin
    order = np.lexsort((-lane.score, home))
    cells, first = np.unique(home[order], return_index=True)
    best = order[first]
    action[cells], score[cells] = lane.action[best], lane.score[best]
    return action, score


def timeline_text(timeline: Timeline, width: int = 60, max_rows: int = MAX_TEXT_ROWS):
    """The timeline for a terminal (a rich renderable): one row of shaded, coloured blocks per lane (the longest
    ``max_rows``, in display order, then "... N more"), a time axis, and the legend of actions."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    colours = action_colours(len(timeline.actions))
    lanes = shown_lanes(timeline.lanes, max_rows)
    grid = Table.grid(padding=(0, 1))
    grid.add_column(justify="right", no_wrap=True)
    grid.add_column(no_wrap=True)
    axis = f"0s{f'{timeline.duration:.1f}s':>{width - 2}}"
    grid.add_row("", Text(axis, style="dim"))
    if not lanes:
        grid.add_row("", Text(NOBODY, style="dim"))
    for lane in lanes:
        bar = Text()
        for action, score in zip(*binned(lane, width, timeline.duration)):
            if action < 0:
                bar.append("·", style="dim")
            else:
                bar.append(SHADES[min(len(SHADES) - 1, int(max(score, 0.0) * len(SHADES)))], style=colours[action])
        grid.add_row(lane.label, bar)
    parts: list[Any] = [Text(f"{timeline.video} — {timeline.model}", style="bold"), grid]
    if len(lanes) < len(timeline.lanes):
        parts.append(Text(f"... {len(timeline.lanes) - len(lanes)} more {'tracks' if timeline.tracked else 'lanes'} "
                          "(shorter on screen)", style="dim"))
    used = _legend_actions(timeline.actions, lanes) if lanes else []
    if used:
        legend = Text()
        for a in used:
            legend.append("█ ", style=colours[a]).append(timeline.actions[a]).append("  ")
        legend.append(f"shade = score {SHADES[0]}<0.25 {SHADES[1]}<0.5 {SHADES[2]}<0.75 {SHADES[3]}", style="dim")
        parts.append(legend)
    return Group(*parts)


class TimelineCollector(Sink):
    """A sink that keeps a video's keyframe log (top action per person, no pixels) and writes nothing: the terminal
    summary's source, and what ``TimelineSink`` renders."""

    def __init__(self) -> None:
        self.log = KeyframeLog()
        self._meta: dict[str, Any] = {}

    def open(self, info: VideoInfo, actions: list[str], model: ModelInfo | Mapping[str, Any]) -> None:
        """Start a new log for one video."""
        name, note = (model.name, model.note) if isinstance(model, ModelInfo) else (model.get("name", "?"), model.get("note"))
        duration = info.num_frames / info.fps if info.num_frames and info.fps else None
        self.log = KeyframeLog()
        self._meta = {"video": Path(info.path).name, "model": str(name), "note": note, "actions": list(actions),
                      "duration": duration, "fps": info.fps or None}

    def write(self, result: FrameResult) -> None:
        """Log one keyframe's persons; carried frames add nothing."""
        if not result.keyframe:
            return
        det = result.detections
        ids = [None] * len(det) if det.tracker_id is None else [int(t) for t in det.tracker_id]
        centres = ((det.xyxy[:, 0] + det.xyxy[:, 2]) / 2).tolist() if len(det) else []
        scores = det.data.get(SCORES)
        if scores is None:
            scores = np.zeros((len(det), len(self._meta["actions"])), dtype=np.float32)
        self.log.add(result.time, ids, centres, np.asarray(scores).reshape(len(det), len(self._meta["actions"])))

    def timeline(self) -> Timeline:
        """The lanes logged so far."""
        return self.log.timeline(**self._meta)

    def close(self) -> None:
        """Nothing to finish: the log stays readable."""

    def abort(self) -> None:
        """Nothing was written."""


class TimelineSink(FileSink):
    """The timeline PNG of one video (``--plot``): logs keyframes as they come and renders at ``close``, through a
    ``Destination`` like every sink (temporary file then rename; a device or FIFO directly); ``abort`` leaves
    nothing."""

    def __init__(self, target: Target | str | Path) -> None:
        super().__init__(target)
        self.collector = TimelineCollector()
        self.events_from: Any = None  # with --events, the events sink (closed first): its spans are drawn too

    def open(self, info: VideoInfo, actions: list[str], model: ModelInfo | Mapping[str, Any]) -> None:
        """Start logging one video."""
        self.collector.open(info, actions, model)

    def write(self, result: FrameResult) -> None:
        """Log one frame's result (keyframes only)."""
        self.collector.write(result)

    def close(self) -> None:
        """Render the PNG (with the events' spans, when there are) and put it in place."""
        timeline = self.collector.timeline()
        if self.events_from is not None:
            index = {name: k for k, name in enumerate(timeline.actions)}
            spans = tuple((e.track_id, index[e.action], e.start, e.end) for e in self.events_from.events
                          if e.action in index)
            timeline = replace(timeline, events=spans)
        write_png(timeline, self.destination)

    def abort(self) -> None:
        """Drop the temporary file, if any; nothing appears under the final name."""
        self.destination.discard()


def write_png(timeline: Timeline, destination: Destination | Path) -> None:
    """Render ``timeline`` safely to a destination (or a path): `--plot`'s and `stclip plot`'s writer."""
    if not isinstance(destination, Destination):
        destination = Destination(classify(Path(destination), "--out"))
    try:
        with destination.guard():
            target = destination.temp_path() if destination.target.seekable else destination.open(text=False)
            render_png(timeline, target)
        destination.commit()
    except BaseException:
        destination.discard()
        raise
