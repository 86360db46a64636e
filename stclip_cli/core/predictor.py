"""Predictor: one video through detector -> windows -> scorer -> sinks, streaming (video -> frames -> boxes ->
windows -> scores -> outputs).

Memory holds a batch of keyframe windows and their look-ahead, never the whole video. With ``single_action`` the
video-level vote is only known at the end, so results (boxes and scores, no pixels) are kept and written after the
pass; an annotated video then decodes the input a second time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path

import numpy as np
import supervision as sv

from stclip_cli.core.detection import PersonDetector, clip_to_frame, fp_filter
from stclip_cli.sources.inputs import StreamInput
from stclip_cli.sources.pacing import live_schedule
from stclip_cli.records import SCORES, Frame, FrameResult, ModelInfo, Sink, VideoInfo
from stclip_cli.core.scoring import KeyframeRequest, Scorer
from stclip_cli.sources.opener import open_source
from stclip_cli.sources.video import VideoSource
from stclip_cli.core.windows import AtFrames, EveryNth, KeyframeSchedule, Window, iter_windows, window_reach


FRAME_BUFFER_BYTES = 256 << 20  # full-resolution uint8 frames held for one batch of keyframes


@dataclass
class DetectOptions:
    """How keyframes are chosen and persons found, tracked and scored (see `stclip detect --help`)."""

    stride: int = 1
    batch_size: int = 8
    fp_margin: float | None = None
    single_action: bool = False
    track: bool = False
    smooth: float | None = None
    fps: float | None = None
    max_persons: int | None = None  # the best N detections of a frame (the reference's J-HMDB test: 3); None: all
    score: str = "prob"  # or "prob-x-det": the probability times the detector's score (the reference's)
    drop_empty: bool = False  # drop boxes with no area inside [0, w - 1] x [0, h - 1] (the reference's border)


@dataclass
class VideoSummary:
    """What the end-of-run table shows for one video."""

    video: Path | StreamInput
    frames: int = 0
    keyframes: int = 0
    persons: int = 0
    tracks: set[int] = field(default_factory=set)
    score_sum: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)

    def top_actions(self, actions: Sequence[str], k: int = 3) -> list[tuple[str, float]]:
        """The k actions with the highest mean score over every scored person."""
        if self.score_sum is None or self.persons == 0:
            return []
        mean = self.score_sum / self.persons
        return [(actions[i], float(mean[i])) for i in np.argsort(-mean)[:k]]


class Predictor:
    """Runs videos through a person detector and a scorer and hands every frame's result to the sinks."""

    def __init__(self, detector: PersonDetector, scorer: Scorer, options: DetectOptions) -> None:
        self.detector = detector
        self.scorer = scorer
        self.options = options

    def with_detector(self, detector: PersonDetector) -> Predictor:
        """The same scorer and options with other persons (eval: each video's ground truth or detections)."""
        return Predictor(detector, self.scorer, self.options)

    def run(self, path: Path | StreamInput, sinks: Sequence[Sink], model: ModelInfo, on_frames: Callable[[int], None] | None = None,
            on_start: Callable[[VideoInfo], None] | None = None, source: VideoSource | None = None,
            keyframes: Sequence[int] | None = None, frame_step: int = 1) -> VideoSummary:
        """Process one video; every sink gets ``open``, a ``write`` per frame and ``close`` (``abort`` on failure).

        ``source``: an opened source instead of opening ``path`` (a dataset's frame list); ``keyframes``: the frames
        to score instead of every ``stride``-th; ``frame_step``: frames between a window's frames (AVA).
        """
        source = source if source is not None else open_source(path, self.options.fps)
        plan = (AtFrames(keyframes) if keyframes is not None else None, frame_step)
        summary = VideoSummary(path)
        try:
            with source:
                if on_start is not None:
                    on_start(source.info)
                info = source.info  # a boxes file: frames the video lacks, or boxes in another layout
                if warning := self.detector.check_frames(info.num_frames, (info.width, info.height)):
                    summary.warnings.append(warning)
                for sink in sinks:
                    sink.open(source.info, self.scorer.actions, model)
                if self.options.single_action:
                    self._run_voted(source, path, sinks, summary, on_frames, plan)
                else:
                    drawn = any(sink.needs_images for sink in sinks)
                    for result in self._results(source, summary, on_frames, drawn, _pacing_warnings(path), plan):
                        if result.keyframe:
                            self._apply_score_rule(result.detections)
                        for sink in sinks:
                            sink.write(result)
            for sink in sinks:
                sink.close()
        except BaseException:
            for sink in sinks:
                sink.abort()
            raise
        return summary

    def _run_voted(self, source: VideoSource, path: Path, sinks: Sequence[Sink], summary: VideoSummary,
                   on_frames: Callable[[int], None] | None, plan: tuple[AtFrames | None, int] = (None, 1)) -> None:
        """Soft voting: average every person's probabilities over the video, give that to every detection."""
        kept = [FrameResult(r.index, r.time, r.detections, r.keyframe)
                for r in self._results(source, summary, on_frames, False, None, plan)]
        scores = [r.detections.data[SCORES] for r in kept if r.keyframe and len(r.detections)]
        if scores:
            vote = np.concatenate(scores).mean(axis=0).astype(np.float32)
            for r in kept:
                if len(r.detections):
                    r.detections.data[SCORES] = np.broadcast_to(vote, r.detections.data[SCORES].shape).copy()
        for r in kept:  # after the vote: the video's distribution, times each box's detector score
            if r.keyframe:
                self._apply_score_rule(r.detections)
        needs_pixels = [s for s in sinks if s.needs_images]
        if needs_pixels:
            with open_source(path, self.options.fps) as again:
                for frame, result in zip(again, kept):
                    result.image = frame.image
                    for sink in sinks:
                        sink.write(result)
                    result.image = None
        else:
            for result in kept:
                for sink in sinks:
                    sink.write(result)

    def _results(self, source: VideoSource, summary: VideoSummary, on_frames: Callable[[int], None] | None,
                 drawn: bool, warn: Callable[[str], None] | None = None,
                 plan: tuple[AtFrames | None, int] = (None, 1)) -> Iterator[FrameResult]:
        """Every frame's result, in order: keyframes scored in batches, frames between them carrying their boxes.

        ``drawn``: a sink draws every frame, so full-resolution pixels are kept until a frame's result is out;
        otherwise only keyframes keep theirs (the detector and the person crops need them). ``warn``: where a live
        source's pacing reports falling behind. ``plan``: given keyframes (None: the stride's or the pacing's) and
        the frames between a window's frames.
        """
        opts = self.options
        self.scorer.reset()
        if opts.track:  # the trackers package loads in about a second: only when asked for
            from stclip_cli.core.tracking import PersonTracker, smooth_scores

            tracker = PersonTracker(fps=source.info.fps)
        else:
            tracker = None
        smooth_state: dict[int, np.ndarray] = {}
        width, height = source.info.width, source.info.height
        given, frame_step = plan
        schedule = given if given is not None else self.keyframes(source, warn)
        frames = self._ingested(source, drawn, schedule, window_reach(self.scorer.model.window, frame_step))
        windows = iter_windows(frames, self.scorer.model.window, schedule, frame_step)
        # a live source scores each keyframe as soon as its window is complete: latency before throughput
        size = 1 if source.live else self.batch_size(source.info, drawn)
        for batch in _batches(windows, size):
            keys = [w.key for w in batch]
            found = self.detector.detect([k.image for k in keys], [k.index for k in keys])
            detections = [self._selected(d, width, height) for d in found]
            if tracker is not None:
                detections = [tracker.update(d, k.time) for d, k in zip(detections, keys)]
            images = {f.index: f.image for w in batch for f in w.frames}
            requests = [KeyframeRequest(w.keyframe, w.indices, d.xyxy) for w, d in zip(batch, detections)]
            for window, det, probs in zip(batch, detections, self.scorer.score(images, requests)):
                if tracker is not None and opts.smooth is not None:
                    probs = smooth_scores(det.tracker_id, probs, smooth_state, opts.smooth)
                det.data[SCORES] = probs.astype(np.float32)
                _account(summary, det)
                for frame in window.render_frames:
                    yield FrameResult(frame.index, frame.time, det, frame.index == window.keyframe, frame.image,
                                      frame.arrival)
                summary.frames += len(window.render_frames)
                summary.keyframes += 1
                if on_frames is not None:
                    on_frames(len(window.render_frames))


    def keyframes(self, source: VideoSource, warn: Callable[[str], None] | None = None) -> KeyframeSchedule:
        """Which frames are scored: every ``stride``-th, or for a live source a stride that grows while scoring
        cannot keep up (pacing.py); ``warn`` gets the pacing's one-line warnings."""
        if not source.live:
            return EveryNth(self.options.stride)
        return live_schedule(self.options.stride, source.info.fps, warn)

    def _ingested(self, frames: Iterable[Frame], drawn: bool, schedule: KeyframeSchedule, reach: int) -> Iterator[Frame]:
        """Frames as decoded, each handed to the scorer at once (preprocessed, patch-embedded) and stripped of its
        full-resolution pixels when nothing needs them any more: memory follows what scoring needs, not the input's
        resolution. A frame further than ``reach`` from every keyframe is in no window and is not embedded."""
        context = self.scorer.model.uses_patches
        for frame in frames:
            key = schedule.is_key(frame)
            needed = key or (context and schedule.near(frame.index, reach))
            if needed and frame.image is not None:  # a source may skip frames no window reads
                self.scorer.ingest(frame.index, frame.image)
            yield frame if key or drawn else replace(frame, image=None)

    def _selected(self, found: sv.Detections, width: int, height: int) -> sv.Detections:
        """The persons of a keyframe that are scored: inside the frame, the false-positive filter, with
        ``max_persons`` the best N (by detector score), and with ``drop_empty`` none without area once clipped to
        [0, w - 1] x [0, h - 1]. Boxes without detector scores (ground truth) are all kept, in their order."""
        opts = self.options
        det = clip_to_frame(found, width, height)
        if opts.max_persons is not None and det.confidence is not None and len(det):
            det = det[np.argsort(-det.confidence, kind="stable")]
        det = fp_filter(det, opts.fp_margin)
        if opts.max_persons is not None and det.confidence is not None:
            det = det[: opts.max_persons]
        if opts.drop_empty and len(det):
            x1, x2 = (np.clip(det.xyxy[:, i], 0, width - 1) for i in (0, 2))
            y1, y2 = (np.clip(det.xyxy[:, i], 0, height - 1) for i in (1, 3))
            det = det[(x2 > x1) & (y2 > y1)]
        return det

    def _apply_score_rule(self, det: sv.Detections) -> None:
        """``prob-x-det``: a keyframe's probabilities times each box's detector score (in place: the frames that carry
        its boxes share the detections); boxes without a detector score (ground truth) count as 1."""
        if self.options.score == "prob-x-det" and len(det) and det.confidence is not None:
            det.data[SCORES] = (det.data[SCORES] * det.confidence[:, None]).astype(np.float32)

    def batch_size(self, info: VideoInfo, drawn: bool) -> int:
        """Keyframes per forward pass: the option, lowered so the full-resolution frames held for a batch (its
        keyframes; every frame up to the next keyframe when drawn) stay within ``FRAME_BUFFER_BYTES``."""
        held_per_keyframe = info.width * info.height * 3 * (self.options.stride if drawn else 1)
        return max(1, min(self.options.batch_size, FRAME_BUFFER_BYTES // max(held_per_keyframe, 1)))


def _pacing_warnings(video: Path | StreamInput) -> Callable[[str], None] | None:
    """A stream's warning channel for its pacing's lines, which name it (None for a file, never live)."""
    if not isinstance(video, StreamInput):
        return None
    return lambda text: video.warn(f"{video.name}: {text}")


def _batches(windows: Iterable[Window], size: int) -> Iterator[list[Window]]:
    """Consecutive groups of ``size`` windows (the last may be shorter)."""
    iterator = iter(windows)
    while batch := list(islice(iterator, size)):
        yield batch


def _account(summary: VideoSummary, det: sv.Detections) -> None:
    """Add one keyframe's persons to the summary."""
    if len(det) == 0:
        return
    scores = det.data[SCORES]
    summary.persons += len(det)
    summary.score_sum = scores.sum(0) if summary.score_sum is None else summary.score_sum + scores.sum(0)
    if det.tracker_id is not None:
        summary.tracks.update(int(t) for t in det.tracker_id if int(t) >= 0)
