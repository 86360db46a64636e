"""Action events: who did what, from when to when. Per-frame scores become one event per person track and action.

The rule (README, "Events"): a frame is *on* for a person and an action when, for a single-label model (softmax), the
action is that person's top-1 and its probability is at least ``threshold``; for a multi-label model (sigmoid), when
its score is at least ``threshold``. On-frames of one track and action form a span; a pause of up to ``gap`` seconds
does not end it (flicker does not split an event), and a span shorter than ``min_duration`` seconds is dropped (a
blip is no event). Names in ``neutral`` (e.g. "standing") are scored, so that softmax has a way out, but make no
events. Events need identities: persons without a track id are left out.

``EventTracker`` takes frame results in stream order and says what it decided at once: a ``start`` when a span has
lasted ``min_duration``, an ``end`` when ``gap`` seconds have passed without the action (or the video ended), so a
live stream's events leave as soon as they are known.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from stclip_cli.sinks.destinations import Target
from stclip_cli.errors import StclipError
from stclip_cli.sinks.outputs import _TextSink
from stclip_cli.records import SCORES, FrameResult, ModelInfo, VideoInfo

EVENT_SUFFIXES = (".json", ".jsonl", ".csv", ".vtt", ".srt")


@dataclass(frozen=True)
class EventRule:
    """When an action is on for a person, and how on-frames become events (see the module docstring)."""

    threshold: float = 0.5
    gap: float = 1.0
    min_duration: float = 0.5
    multi_label: bool = False
    neutral: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for flag, value, high in (("--event-threshold", self.threshold, 1.0), ("--event-gap", self.gap, None),
                                  ("--event-min", self.min_duration, None)):
            if not math.isfinite(value) or value < 0 or (high is not None and value > high):
                within = f"from 0 to {high:g}" if high is not None else "of at least 0"
                raise StclipError(f"{flag} must be a number {within} (got {value})")

    def to_dict(self) -> dict:
        """JSON-ready, as the events file records the rule that made it."""
        return {"threshold": self.threshold, "gap_s": self.gap, "min_duration_s": self.min_duration,
                "scores": "sigmoid" if self.multi_label else "softmax top-1", "neutral": list(self.neutral)}


@dataclass
class Event:
    """One person's action from ``start`` to ``end`` (seconds, and frame indices, both inclusive)."""

    video: str
    track_id: int
    action: str
    start: float
    end: float
    start_frame: int
    end_frame: int
    peak_score: float
    peak_time: float
    peak_frame: int
    mean_score: float
    box: list[float]

    @property
    def duration(self) -> float:
        """Seconds from its first to its last on-frame."""
        return self.end - self.start

    def to_dict(self) -> dict:
        """JSON-ready, rounded as the detect JSON rounds."""
        data = asdict(self)
        for key in ("start", "end", "peak_time"):
            data[key] = round(data[key], 4)
        for key in ("peak_score", "mean_score"):
            data[key] = round(data[key], 4)
        data["box"] = [round(v, 1) for v in self.box]
        return data


@dataclass
class _Span:
    """An open span of one track and action."""

    start: float
    start_frame: int
    last: float
    last_frame: int
    peak: float
    peak_time: float
    peak_frame: int
    box: list[float]
    total: float = 0.0
    count: int = 0
    started: bool = False

    def event(self, video: str, track: int, action: str) -> Event:
        return Event(video, track, action, self.start, self.last, self.start_frame, self.last_frame, self.peak,
                     self.peak_time, self.peak_frame, self.total / max(self.count, 1), self.box)


@dataclass
class EventTracker:
    """Frame results in (stream order), decisions out: ``update`` and ``finish`` return ``("start" | "end", Event)``
    pairs as they are decided; ``events`` holds every finished event, in the order they ended."""

    video: str
    actions: Sequence[str]
    rule: EventRule = field(default_factory=EventRule)
    events: list[Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._open: dict[tuple[int, int], _Span] = {}
        self._neutral = {i for i, name in enumerate(self.actions) if name in set(self.rule.neutral)}

    def update(self, result: FrameResult) -> list[tuple[str, Event]]:
        """Add one frame's result; returns the starts and ends it decided."""
        decided: list[tuple[str, Event]] = []
        det = result.detections
        scores = det.data.get(SCORES) if len(det) else None
        if scores is not None and det.tracker_id is not None:
            scores = np.asarray(scores, np.float64).reshape(len(det), len(self.actions))
            on = scores >= self.rule.threshold
            if not self.rule.multi_label:
                on &= scores == scores.max(axis=1, keepdims=True)
            for person, track in enumerate(np.asarray(det.tracker_id).tolist()):
                if track < 0:
                    continue
                for action in np.flatnonzero(on[person]).tolist():
                    if action not in self._neutral:
                        self._extend((int(track), action), result, float(scores[person, action]),
                                     det.xyxy[person].tolist())
        for key, span in list(self._open.items()):
            if span.last_frame != result.index and result.time - span.last > self.rule.gap:
                decided += self._close(key)
            elif not span.started and span.last - span.start >= self.rule.min_duration:
                span.started = True
                decided.append(("start", span.event(self.video, key[0], self.actions[key[1]])))
        return decided

    def finish(self) -> list[tuple[str, Event]]:
        """The video ended: every open span ends now."""
        decided: list[tuple[str, Event]] = []
        for key in list(self._open):
            decided += self._close(key)
        return decided

    def _extend(self, key: tuple[int, int], result: FrameResult, score: float, box: list[float]) -> None:
        span = self._open.get(key)
        if span is None:
            span = self._open[key] = _Span(result.time, result.index, result.time, result.index, score, result.time,
                                           result.index, box)
        span.last, span.last_frame = result.time, result.index
        span.total += score
        span.count += 1
        if score > span.peak:
            span.peak, span.peak_time, span.peak_frame, span.box = score, result.time, result.index, box

    def _close(self, key: tuple[int, int]) -> list[tuple[str, Event]]:
        span = self._open.pop(key)
        if span.last - span.start < self.rule.min_duration:
            return []
        event = span.event(self.video, key[0], self.actions[key[1]])
        self.events.append(event)
        if not span.started:  # decided only now (a span that reached its length on its last frame)
            return [("start", event), ("end", event)]
        return [("end", event)]


def find_events(results: Iterable[FrameResult], video: str, actions: Sequence[str], rule: EventRule) -> list[Event]:
    """Every event of a whole video's frame results, ordered by start time then track."""
    tracker = EventTracker(video, actions, rule)
    for result in results:
        tracker.update(result)
    tracker.finish()
    return sorted(tracker.events, key=lambda e: (e.start, e.track_id, e.action))


def _timestamp(seconds: float, separator: str) -> str:
    """``HH:MM:SS.mmm`` (WebVTT) or ``HH:MM:SS,mmm`` (SRT)."""
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}{separator}{rest % 1000:03d}"


def cue_text(event: Event) -> str:
    """What a player shows: ``#3 fighting 0.82`` (track, action, peak score)."""
    return f"#{event.track_id} {event.action} {event.peak_score:.2f}"


def format_events(events: Sequence[Event], suffix: str, video: str, actions: Sequence[str], rule: EventRule,
                  fps: float | None = None) -> str:
    """One video's events as a ``.json`` (with the rule and the actions), ``.csv`` (a header row), ``.vtt`` or
    ``.srt`` file (one cue per event, shown from its start to the end of its last frame)."""
    ordered = sorted(events, key=lambda e: (e.start, e.track_id, e.action))
    if suffix == ".json":
        return json.dumps({"video": video, "actions": list(actions), "rule": rule.to_dict(),
                           "events": [e.to_dict() for e in ordered]}, indent=1, ensure_ascii=False) + "\n"
    if suffix == ".csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for e in ordered:
            d = e.to_dict()
            writer.writerow([d[c] if c in d else "" for c in CSV_COLUMNS[:-4]] + d["box"])
        return out.getvalue()
    frame = 1.0 / fps if fps and fps > 0 else 0.04
    if suffix == ".vtt":
        cues = [f"{_timestamp(e.start, '.')} --> {_timestamp(e.end + frame, '.')}\n{cue_text(e)}\n" for e in ordered]
        return "WEBVTT\n\n" + "\n".join(cues)
    if suffix == ".srt":
        cues = [f"{k}\n{_timestamp(e.start, ',')} --> {_timestamp(e.end + frame, ',')}\n{cue_text(e)}\n"
                for k, e in enumerate(ordered, 1)]
        return "\n".join(cues)
    raise StclipError(f"--events writes {' / '.join(EVENT_SUFFIXES)} files (got {suffix})")


class EventsSink(_TextSink):
    """``--events``: one video's events. ``.json``, ``.csv``, ``.vtt`` and ``.srt`` are written when the video ends
    (atomically, like every file); ``.jsonl`` and standard output for a stream are JSON Lines written and flushed
    the moment a start or an end is decided, ``{"event": "start" | "end", ...the event..., "latency_s"}``.
    ``events`` keeps the video's events for the end-of-run summary."""

    def __init__(self, target: Target, rule: EventRule, live_lines: bool = False, video: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(target)
        path = target.path
        self.suffix = ".jsonl" if live_lines else path.suffix.lower() if path is not None else ".json"
        self.rule, self.video, self.clock = rule, video, clock
        self.events: list[Event] = []

    def open(self, info: VideoInfo, actions: list[str], model: ModelInfo | Mapping[str, Any] | None = None) -> None:
        """Start one video; a sigmoid model's events use each score against the threshold (multi-label)."""
        mode = model.mode if isinstance(model, ModelInfo) else (model or {}).get("mode")
        self.rule = EventRule(self.rule.threshold, self.rule.gap, self.rule.min_duration, mode == "sigmoid",
                              self.rule.neutral)
        self.info, self.actions = info, list(actions)
        self.name = self.video or str(info.path)
        self.tracker = EventTracker(self.name, self.actions, self.rule)
        self._file = self.destination.open(text=True)

    def write(self, result: FrameResult) -> None:
        """Feed one frame; JSON Lines say each decision at once."""
        self._say(self.tracker.update(result), result.arrival)

    def close(self) -> None:
        """End the open events, write the file, put it in place."""
        if self._file is not None:
            self._say(self.tracker.finish(), None)
            self.events = sorted(self.tracker.events, key=lambda e: (e.start, e.track_id, e.action))
            if self.suffix != ".jsonl":
                self._emit(format_events(self.events, self.suffix, self.name, self.actions, self.rule, self.info.fps))
        super().close()

    def _say(self, decided: list[tuple[str, Event]], arrival: float | None) -> None:
        if self.suffix != ".jsonl" or not decided:
            return
        latency = None if arrival is None else round(self.clock() - arrival, 4)
        for kind, event in decided:
            self._emit(json.dumps({"event": kind, **event.to_dict(), "latency_s": latency}, ensure_ascii=False) + "\n")
        assert self._file is not None
        with self.destination.guard():
            self._file.flush()


def longest(events: Iterable[Event], count: int = 5) -> list[Event]:
    """The ``count`` longest events, for the end-of-run summary."""
    return sorted(events, key=lambda e: (-e.duration, e.start))[:count]


CSV_COLUMNS = ("video", "track_id", "action", "start", "end", "start_frame", "end_frame", "peak_score", "peak_time",
               "peak_frame", "mean_score", "x1", "y1", "x2", "y2")

def events_sink(target: Target, config: Any, stream: bool, video: str | None = None) -> EventsSink:
    """--events: the sink of one video (``config``: the run's ``DetectConfig``, whose event settings it takes); a
    stream's standard output gets JSON Lines as events are decided."""
    rule = EventRule(config.event_threshold, config.event_gap, config.event_min, neutral=config.neutral)
    return EventsSink(target, rule, live_lines=stream and target.mode == "stdout", video=video)


__all__ = ["events_sink", "CSV_COLUMNS", "EVENT_SUFFIXES", "Event", "EventRule", "EventTracker", "EventsSink", "cue_text",
           "find_events", "format_events", "longest"]
