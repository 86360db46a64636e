"""Renderer: draws person boxes and their labels on a frame with supervision annotators.

Text goes through supervision's ``RichLabelAnnotator`` (PIL + FreeType) with DejaVu Sans, the TrueType font
matplotlib ships (a dependency of ultralytics), so accented letters and most scripts render instead of
OpenCV's ASCII-only ``putText`` question marks. Sizes scale with the frame; labels are cut to fit inside it.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import supervision as sv
from fontTools.ttLib import TTFont
from PIL import Image, ImageFont
from supervision.annotators.utils import snap_boxes
from supervision.detection.utils.boxes import spread_out_boxes

ELLIPSIS = "\u2026"
# A line that ends in a score ("fishing 0.71") keeps its score when the text before it is cut.
_SCORE_TAIL = re.compile(r"(.*?)( -?\d+(?:\.\d+)?)")
# Characters that only modify a neighbour (combining marks, joiners, variation selectors, skin tones):
# when the font lacks them they are dropped rather than spelled out.
_MODIFIER_CATEGORIES = frozenset({"Mn", "Me", "Cf", "Sk"})
_CACHE_SIZE = 4096
_PATCH_CACHE_BYTES = 64 * 2**20
_SPREAD_ROUNDS = 3


def font_path() -> Path:
    """DejaVu Sans from matplotlib's data folder (found without importing pyplot): present wherever stclip is."""
    import matplotlib  # here, not at the top: 0.2 s that only a run writing a video needs

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


@functools.cache
def _font_codepoints(path: Path) -> frozenset[int]:
    """The code points the font has a glyph for (its best Unicode cmap)."""
    with TTFont(str(path), lazy=True) as font:
        return frozenset(font.getBestCmap())


def displayable(text: str, path: Path | None = None) -> str:
    """``text`` with every character the font lacks made readable instead of a tofu box.

    A missing character becomes its Unicode name in brackets, lower case ("💪" -> "[flexed biceps]",
    "中" -> "[cjk unified ideograph-4e2d]"; "[U+XXXX]" when it has no name); a missing modifier (combining mark,
    zero-width joiner, variation selector, skin tone) is dropped; whitespace becomes a space. Newlines are kept.
    """
    covered = _font_codepoints(path or font_path())
    out = []
    for ch in text:
        if ch == "\n":
            out.append(ch)
        elif ch.isspace():
            out.append(" ")
        elif ord(ch) in covered:
            out.append(ch)
        elif unicodedata.category(ch) not in _MODIFIER_CATEGORIES:
            name = unicodedata.name(ch, "")
            out.append(f"[{name.lower()}]" if name else f"[U+{ord(ch):04X}]")
    return "".join(out)


@dataclass(frozen=True)
class LabelStyle:
    """Sizes in pixels for one frame size: font height, box line width and the padding around label text."""

    font_size: int
    line_width: int
    padding: int


def label_style(width: int, height: int) -> LabelStyle:
    """Text and lines that scale with the frame's short side: 12 px text at 340x256, 32 px at 1080p, 65 px at 4K.

    The short side (not the height) keeps portrait videos as readable as landscape ones.
    """
    short = min(width, height)
    font_size = max(12, round(0.03 * short))
    return LabelStyle(font_size=font_size, line_width=max(2, round(0.003 * short)), padding=max(3, round(font_size / 4)))


class FrameRenderer:
    """Draws boxes and multi-line labels on RGB frames of one size; labels always lie wholly inside the frame.

    Each label is drawn once by supervision's ``RichLabelAnnotator`` on a small image of its own and cached per
    (text, colour); frames get the cached images pasted where supervision's smart positioning (``snap_boxes``,
    ``spread_out_boxes``) puts them. Hand-placed because drawing on the whole frame through PIL costs about 10 ms
    per 1080p frame in image conversions alone, and carried frames repeat the same labels.
    """

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.style = label_style(width, height)
        self.font_path = font_path()
        self.font = ImageFont.truetype(str(self.font_path), self.style.font_size)
        palette = sv.ColorPalette.DEFAULT
        self._boxes = sv.BoxAnnotator(color=palette, thickness=self.style.line_width, color_lookup=sv.ColorLookup.INDEX)
        self._text = sv.RichLabelAnnotator(
            color=palette,
            color_lookup=sv.ColorLookup.INDEX,
            font_path=str(self.font_path),
            font_size=self.style.font_size,
            text_padding=self.style.padding,
            text_position=sv.Position.BOTTOM_LEFT,
        )
        self._fitted: dict[str, str] = {}
        self._bboxes: dict[str, tuple[float, float, float, float]] = {}
        self._patches: dict[tuple[str, int], np.ndarray] = {}
        self._patch_bytes = 0
        self._placed: tuple[bytes, np.ndarray] | None = None

    def fit_label(self, label: str) -> str:
        """The label as drawn: missing glyphs replaced, each line cut with an ellipsis to the frame's width, and
        lines that would not fit the frame's height dropped (the last kept line then ends in an ellipsis)."""
        fitted = self._fitted.get(label)
        if fitted is None:
            if len(self._fitted) >= _CACHE_SIZE:
                self._fitted.clear()
            fitted = self._fitted[label] = self._fit(label)
        return fitted

    def _fit(self, label: str) -> str:
        pad = self.style.padding
        max_width = self.width - 2 * pad - 2  # 2 px spare: PIL may start a line a pixel right of its box
        lines = [self._fit_line(line, max_width) for line in displayable(label, self.font_path).splitlines()]
        budget = self.height - 2 * pad
        kept: list[str] = []
        for line in lines:
            need = self._line_height(line) + (pad if kept else 0)
            if need > budget:
                break
            kept.append(line)
            budget -= need
        if len(kept) < len(lines) and kept:
            kept[-1] = self._fit_line(kept[-1] + ELLIPSIS, max_width)
        return "\n".join(kept)

    def _bbox(self, text: str) -> tuple[float, float, float, float]:
        """The font's bounding box of one line, cached: FreeType measuring is ~50 us a call."""
        box = self._bboxes.get(text)
        if box is None:
            if len(self._bboxes) >= _CACHE_SIZE:
                self._bboxes.clear()
            box = self._bboxes[text] = self.font.getbbox(text)
        return box

    def _text_width(self, text: str) -> int:
        left, _, right, _ = self._bbox(text)
        return int(right - left)

    def _line_height(self, text: str) -> int:
        _, top, _, bottom = self._bbox(text)
        return int(bottom - top)

    def _fit_line(self, line: str, max_width: int) -> str:
        """The longest start of ``line`` that fits ``max_width`` px, ending in an ellipsis when cut; a trailing
        score is kept while even one character of the text before it still fits."""
        if self._text_width(line) <= max_width:
            return line
        match = _SCORE_TAIL.fullmatch(line)
        head, tail = (match.group(1), match.group(2)) if match else (line, "")
        for suffix in (ELLIPSIS + tail, ELLIPSIS) if tail else (ELLIPSIS,):
            low, high = 0, len(head)  # binary search: the longest prefix of head that fits with the suffix
            while low < high:
                mid = (low + high + 1) // 2
                if self._text_width(head[:mid].rstrip() + suffix) <= max_width:
                    low = mid
                else:
                    high = mid - 1
            if low or suffix == ELLIPSIS:
                return head[:low].rstrip() + suffix if self._text_width(suffix) <= max_width else ""
        return ""

    def label_size(self, text: str) -> tuple[int, int]:
        """Width and height in pixels of a fitted label's background, measured as ``RichLabelAnnotator`` does."""
        lines = text.splitlines() or [""]
        pad = self.style.padding
        width = max(self._text_width(line) for line in lines)
        height = sum(self._line_height(line) for line in lines) + (len(lines) - 1) * pad
        return int(width + 2 * pad), int(height + 2 * pad)

    def label_patch(self, text: str, color_index: int) -> np.ndarray:
        """A fitted label drawn on its background colour (palette entry ``color_index``), BGR, cached."""
        key = (text, color_index)
        patch = self._patches.get(key)
        if patch is None:
            width, height = self.label_size(text)
            canvas = Image.new("RGB", (width, height))
            anchor = sv.Detections(xyxy=np.array([[0, -1, 1, 0]], np.float32))  # bottom-left corner at (0, 0)
            self._text.annotate(canvas, anchor, labels=[text], custom_color_lookup=np.array([color_index]))
            patch = cv2.cvtColor(np.asarray(canvas), cv2.COLOR_RGB2BGR)
            if self._patch_bytes + patch.nbytes > _PATCH_CACHE_BYTES:
                self._patches.clear()
                self._patch_bytes = 0
            self._patches[key] = patch
            self._patch_bytes += patch.nbytes
        return patch

    def place(self, detections: sv.Detections, sizes: list[tuple[int, int]]) -> np.ndarray:
        """Integer xyxy (end exclusive) of each label: above its box's top-left corner, then moved inside the frame
        and apart from the others as supervision's ``smart_position`` does (with a few more rounds). The last
        placement is reused."""
        key = detections.xyxy.astype(np.float32).tobytes() + np.asarray(sizes, np.int64).tobytes()
        if self._placed is not None and self._placed[0] == key:
            return self._placed[1]
        corners = detections.get_anchors_coordinates(sv.Position.TOP_LEFT)
        sizes_array = np.asarray(sizes, np.float32).reshape(-1, 2)
        rects = np.concatenate([corners - [0, 1] * sizes_array, corners + [1, 0] * sizes_array], axis=1)
        frame = (self.width, self.height)
        rects = snap_boxes(rects, frame)
        if len(rects) > 1:
            rects = snap_boxes(spread_out_boxes(rects), frame)
            # snapping back into the frame can re-create overlaps that spreading removed: a few more rounds when
            # the labels could all fit side by side (else they cannot all be apart, and each round costs ms)
            fits = float(np.prod(sizes_array, axis=1).sum()) <= self.width * self.height / 2
            for _ in range(_SPREAD_ROUNDS if fits else 0):
                spread = snap_boxes(spread_out_boxes(rects), frame)
                if np.array_equal(spread, rects):
                    break
                rects = spread
        sizes_int = sizes_array.astype(int)
        xy = np.clip(np.floor(rects[:, :2]).astype(int), 0, np.maximum(np.array(frame) - sizes_int, 0))
        placed = np.concatenate([xy, np.minimum(xy + sizes_int, frame)], axis=1)
        self._placed = (key, placed)
        return placed

    def draw(self, image: np.ndarray, detections: sv.Detections, labels: list[str]) -> np.ndarray:
        """A new RGB image: ``image`` (RGB, left untouched) with each detection's box and its label above it
        (``image`` itself when there is nobody). Colours follow the track id when every box is tracked, else the
        box's position in ``detections``; an empty label draws the box alone."""
        if not len(detections):
            return image
        tracked = detections.tracker_id is not None and bool(np.all(detections.tracker_id >= 0))
        colors = np.asarray(detections.tracker_id if tracked else np.arange(len(detections)), dtype=int)
        scene = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)  # supervision's numpy images are BGR, as OpenCV's
        scene = self._boxes.annotate(scene, detections, custom_color_lookup=colors)
        fitted = [self.fit_label(label) for label in labels]
        drawn = [i for i, text in enumerate(fitted) if text]
        if drawn:
            patches = [self.label_patch(fitted[i], int(colors[i])) for i in drawn]
            rects = self.place(detections[drawn], [(p.shape[1], p.shape[0]) for p in patches])
            for patch, (x1, y1, x2, y2) in zip(patches, rects):
                scene[y1:y2, x1:x2] = patch[: y2 - y1, : x2 - x1]
        return cv2.cvtColor(scene, cv2.COLOR_BGR2RGB)
