"""One assembly for every command and engine: a ``DetectConfig`` (every setting of a detect run and its default, checked
once) is resolved on the driver into an ``Assembly`` (the card that scores, the boxes file read once; what Ray ships to
its actors), and ``build_pipeline`` turns that into the running ``Predictor`` and the ``ModelInfo`` its outputs record.
``stclip detect``, every Ray actor and ``stclip eval`` build here, so the three cannot drift apart.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stclip_cli.errors import StclipError

if TYPE_CHECKING:
    from stclip_cli.weights.cards import ModelCard
    from stclip_cli.core.detection import BoxesFile, PersonDetector
    from stclip_cli.records import ModelInfo
    from stclip_cli.core.predictor import DetectOptions, Predictor

FALLBACK_NOTE = (
    "no ST-CLIP checkpoint (--checkpoint FILE, hf-hub:ORG/REPO or $STCLIP_CHECKPOINT): these are the training-free "
    "baseline's scores, not ST-CLIP's"
)


@dataclass(frozen=True)
class DetectConfig:
    """Every setting of a detect run, with its default: the one place defaults live (the CLI's options read them
    here). Checked when made, so a bad value is one line before anything loads."""

    actions: tuple[str, ...]
    model: str = "stclip"
    checkpoint: str | None = None
    backbone: str | None = None
    pretrained: str | None = None
    window: int | None = None
    interest_k: int | None = None
    clip_weights: str | None = None
    detector: str = "yolo11n.pt"
    boxes: str | None = None
    boxes_format: str | None = None
    person_conf: float = 0.25
    fp_margin: float | None = None
    stride: int = 1
    batch_size: int | None = None
    single_action: bool = False
    track: bool = False
    smooth: float | None = None
    fps: float | None = None
    frame_fit: str = "crop"
    top_k: int = 2
    device: str = "auto"
    half: bool = False
    int8: bool = False
    event_threshold: float = 0.5
    event_gap: float = 1.0
    event_min: float = 0.5
    neutral: tuple[str, ...] = ()
    # the benchmark protocol (eval sets these from its --test-boxes/--score; detect keeps every person, probabilities)
    max_persons: int | None = None
    score: str = "prob"
    drop_empty: bool = False
    multi_label: bool | None = None  # None: the card's (a benchmark's own: its view's)

    def __post_init__(self) -> None:
        if not self.actions:
            raise StclipError("no action names given")
        _number("--person-conf", self.person_conf, 0.0, 1.0)
        _number("--fp-margin", self.fp_margin, 0.0)
        _number("--smooth", self.smooth, 0.0, 1.0)
        _number("--event-threshold", self.event_threshold, 0.0, 1.0)
        _number("--event-gap", self.event_gap, 0.0)
        _number("--event-min", self.event_min, 0.0)
        for flag, value, low in (("--stride", self.stride, 1), ("--batch-size", self.batch_size, 1),
                                 ("--window", self.window, 1), ("--top-k", self.top_k, 1),
                                 ("--interest-k", self.interest_k, 0), ("--max-persons", self.max_persons, 1)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise StclipError(f"{flag} must be a whole number of at least {low} (got {value})")
        if self.score not in ("prob", "prob-x-det"):
            raise StclipError(f"--score must be prob or prob-x-det, not '{self.score}'")
        if not DEVICE.fullmatch(self.device):
            raise StclipError(f"--device must be auto, cpu, cuda or cuda:N (got '{self.device}')")
        if self.smooth is not None and not self.track:
            raise StclipError("--smooth needs --track (scores are smoothed along a track)")
        if self.frame_fit not in ("crop", "letterbox"):
            raise StclipError(f"--frame-fit must be crop or letterbox, not '{self.frame_fit}'")
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):
            raise StclipError(f"--fps must be a number above 0 (got {self.fps})")
        if self.int8 and (self.half or self.device.startswith("cuda")):
            raise StclipError("--int8 is the CPU path; on a GPU use --half (bf16)")
        if self.boxes_format is not None and self.boxes is None:
            raise StclipError("--boxes-format describes a --boxes file; pass --boxes FILE too")

    @staticmethod
    def default(name: str) -> Any:
        """The default of one setting, for the CLI's option declarations."""
        return next(f.default for f in fields(DetectConfig) if f.name == name)

    def detect_options(self, batch_size: int) -> "DetectOptions":
        """The predictor's share of the settings, with the batch size decided for the device."""
        from stclip_cli.core.predictor import DetectOptions

        return DetectOptions(self.stride, self.batch_size or batch_size, self.fp_margin, self.single_action, self.track,
                             self.smooth, self.fps, self.max_persons, self.score, self.drop_empty)


DEVICE = re.compile(r"auto|cpu|cuda(:\d{1,3})?|mps")


def _number(flag: str, value: float | None, low: float, high: float | None = None) -> None:
    """A number option is finite and within its range (NaN passes every comparison, so it is named here)."""
    if value is None:
        return
    if not math.isfinite(value) or value < low or (high is not None and value > high):
        within = f"from {low:g} to {high:g}" if high is not None else f"of at least {low:g}"
        raise StclipError(f"{flag} must be a number {within} (got {value})")


def resolve_card(config: DetectConfig) -> tuple["ModelCard", str | None]:
    """The card that will score (no model is built yet) and, when it is a stand-in, the note that says so.

    An ST-CLIP card takes its checkpoint from ``checkpoint`` or $STCLIP_CHECKPOINT (a file or an hf-hub: id); with
    none, the training-free baseline scores on the same CLIP.
    """
    from stclip_cli.weights.cards import card_for_checkpoint, load_card, training_free_fallback
    from stclip_cli.weights.sources import checkpoint_source

    card = load_card(config.model).replace(backbone=config.backbone, pretrained=config.pretrained, window=config.window)
    if card.kind != "stclip":
        if config.checkpoint is not None:
            raise StclipError(f"--model {config.model} is training-free; drop --checkpoint or use --model stclip")
        return card, None
    path = checkpoint_source(config.checkpoint)
    if path is None:
        return training_free_fallback(card), FALLBACK_NOTE
    requested = card if (config.backbone or config.window is not None or config.model != "stclip") else None
    card = card_for_checkpoint(path, requested).replace(pretrained=config.pretrained)
    if config.interest_k is not None:
        card = replace(card, interest_k=config.interest_k or None)
    return card, None


@dataclass(frozen=True)
class Assembly:
    """A ``DetectConfig`` resolved where the run starts: the card that scores (``note`` when it is a stand-in) and the
    boxes file read once. Picklable: the Ray engine ships it to its actors, which build from it as detect does."""

    config: DetectConfig
    card: "ModelCard"
    note: str | None
    boxes: "BoxesFile | None"

    def stamp(self) -> dict[str, Any]:
        """What results depend on (not where they are written): two runs with the same stamp give the same rows."""
        settings = asdict(self.config)
        settings.pop("batch_size")  # how many keyframes share a forward pass changes speed, not results
        for name in ("checkpoint", "clip_weights", "boxes"):
            settings[name] = _file_id(settings[name]) or settings[name]
        settings["detector"] = [self.config.detector, _file_id(self.config.detector)]
        raw = {"settings": settings, "card": self.card.to_dict(), "checkpoint": _file_id(self.card.checkpoint),
               "note": self.note}
        return json.loads(json.dumps(raw, sort_keys=True, default=str))


def _file_id(path: str | Path | None) -> list | None:
    """A local file as a stamp sees it (path, size, modification time): replaced weights make new results."""
    if path is None or not os.path.isfile(path):
        return None
    info = os.stat(path)
    return [os.path.abspath(path), info.st_size, info.st_mtime_ns]


def assemble(config: DetectConfig, detector: bool = True) -> Assembly:
    """Resolve the card, fetch (or fail on) the CLIP weights and, unless a boxes file gives the persons (or
    ``detector`` is False: eval's persons come from the benchmark), the detector's weights, in one message naming
    everything missing; check the action names fit the text encoder and read the boxes file: everything that can
    fail on a user's files, before any model is built."""
    card, note = resolve_card(config)  # first: a missing checkpoint is said before torch loads
    from stclip_cli.model.clip_import import import_open_clip

    import_open_clip(card.backbone)  # first: a plain CLIP imports open_clip without transformers
    from stclip_cli.core.detection import BoxesFile
    from stclip_cli.model.base import check_fits
    from stclip_cli.model.clip_backbone import clip_tokenizer, register_model_configs
    from stclip_cli.weights.sources import clip_source

    register_model_configs()
    missing = []
    try:
        clip_source(card.backbone, card.pretrained, config.clip_weights)  # fetched once here, not by every actor
    except StclipError as err:
        missing.append(str(err))
    if detector and config.boxes is None:
        from stclip_cli.core.detection import fetch_detector

        try:
            fetch_detector(config.detector)
        except StclipError as err:
            missing.append(str(err))
    if missing:  # everything a first run lacks, said at once: not one file per attempt
        raise StclipError(missing[0] if len(missing) == 1 else
                          f"{len(missing)} files are missing: " + "; and ".join(missing))
    tokenizer = clip_tokenizer(card.backbone)
    check_fits(tokenizer, list(config.actions), tokenizer.context_length)
    boxes = BoxesFile(config.boxes, config.boxes_format) if config.boxes is not None else None
    return Assembly(config, card, note, boxes)


@dataclass
class Pipeline:
    """The running pipeline of one process: the predictor and what its outputs say produced the scores."""

    predictor: "Predictor"
    info: "ModelInfo"


def build_pipeline(assembly: Assembly, device: str | None = None, threads: int | None = None,
                   detector: "PersonDetector | None" = None, model_from: Pipeline | None = None) -> Pipeline:
    """Model, scorer, person detector and predictor from an assembly. ``device`` overrides the config's (a Ray actor
    sees the GPU it was given as ``cuda``); ``detector`` replaces the config's persons (eval's ground truth or
    dataset detections); ``model_from``: a pipeline of the same card and checkpoint whose network is reused (the app:
    new action names need only their text encoded)."""
    import torch

    from stclip_cli.weights.cards import precision
    from stclip_cli.weights.int8_cache import build_scoring_model
    from stclip_cli.core.detection import YoloPersonDetector
    from stclip_cli.records import ModelInfo
    from stclip_cli.core.predictor import Predictor
    from stclip_cli.core.scoring import Scorer
    from stclip_cli.benchmark.train import resolve_device

    config, card = assembly.config, assembly.card
    if threads:
        torch.set_num_threads(threads)
    net = (model_from.predictor.scorer.model if model_from is not None else
           build_scoring_model(card, config.clip_weights, resolve_device(device or config.device), config.int8))
    multi_label = card.multi_label if config.multi_label is None else config.multi_label
    scorer = Scorer(net, list(config.actions), multi_label=multi_label, half=config.half, frame_fit=config.frame_fit)
    if detector is None:
        detector = assembly.boxes if assembly.boxes is not None else YoloPersonDetector(
            config.detector, config.person_conf, device or config.device, half=config.half)
    options = config.detect_options(8 if net.device.type == "cuda" else 1)  # batching is slower on a CPU
    info = ModelInfo(card.name, card.backbone, str(card.checkpoint) if card.checkpoint else None,
                     "sigmoid" if multi_label else "softmax", assembly.note, precision(net, config.half, config.int8))
    return Pipeline(Predictor(detector, scorer, options), info)


def detect_reads(actions_file: Path | None, model: str, checkpoint: str | None, clip_weights: Path | None,
                  detector: str, boxes: Path | None) -> list:
    """Every local file detect reads besides its videos: no output may be one of them."""
    import os

    from stclip_cli.sinks.destinations import read_sources

    return read_sources([("--actions-file", actions_file), ("--model", model if model.endswith((".yaml", ".yml")) else None),
                         ("--checkpoint", checkpoint or os.environ.get("STCLIP_CHECKPOINT")),
                         ("--clip-weights", clip_weights), ("--detector", detector), ("--boxes", boxes)])


__all__ = ["detect_reads", "Assembly", "DetectConfig", "FALLBACK_NOTE", "Pipeline", "assemble", "build_pipeline", "resolve_card"]
