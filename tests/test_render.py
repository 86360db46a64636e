"""Renderer: label sizes that scale with the frame, labels kept inside the frame, any script without '?'."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv

from stclip_cli.sinks.outputs import person_label
from stclip_cli.sinks.render import ELLIPSIS, FrameRenderer, LabelStyle, displayable, font_path, label_style

LONG = "arm wrestling with a very long action name that keeps going " + "and going " * 20


def test_font_is_matplotlibs_dejavu():
    assert font_path().name == "DejaVuSans.ttf" and font_path().is_file()


@pytest.mark.parametrize(
    ("size", "style"),
    [
        ((96, 64), LabelStyle(font_size=12, line_width=2, padding=3)),
        ((340, 256), LabelStyle(font_size=12, line_width=2, padding=3)),
        ((640, 480), LabelStyle(font_size=14, line_width=2, padding=4)),
        ((1920, 1080), LabelStyle(font_size=32, line_width=3, padding=8)),
        ((1080, 1920), LabelStyle(font_size=32, line_width=3, padding=8)),
        ((3840, 2160), LabelStyle(font_size=65, line_width=6, padding=16)),
    ],
)
def test_label_style_scales_with_the_short_side(size, style):
    assert label_style(*size) == style


def test_label_text_height_scales_with_the_frame():
    """Drawn text is at least 12 px tall on small frames (was ~8 px) and about 3% of a 4K frame's height."""
    heights = {}
    for size in ((340, 256), (1920, 1080), (3840, 2160)):
        renderer = FrameRenderer(*size)
        patch = renderer.label_patch("Action 0.71", 0)
        text_rows = np.flatnonzero((patch.min(axis=2) > 200).any(axis=1))  # white text on a coloured background
        heights[size] = text_rows[-1] - text_rows[0] + 1
    assert heights[(340, 256)] >= 9  # cap height of 12 px DejaVu: 9 px (OpenCV's text was ~6 px)
    assert heights[(1920, 1080)] > 2 * heights[(340, 256)]
    assert heights[(3840, 2160)] == pytest.approx(2 * heights[(1920, 1080)], abs=2)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("café crème", "café crème"),
        ("Ωmega Жук ñ ß", "Ωmega Жук ñ ß"),
        ("arm wrestling 💪", "arm wrestling [flexed biceps]"),
        ("thumbs 👍🏽", "thumbs [thumbs up sign]"),  # the skin-tone modifier is dropped, not spelled out
        ("family 👨\u200d👩\u200d👧", "family [man]\u200d[woman]\u200d[girl]"),  # the font has the (invisible) joiner
        ("e\u0301 \u0a4d", "e\u0301 "),  # a combining mark the font has is kept, one it lacks dropped
        ("打球", "[cjk unified ideograph-6253][cjk unified ideograph-7403]"),
        ("love ❤️", "love ❤️"),  # the font has the heart (and the variation selector)
        ("tab\there", "tab here"),
        ("x\U000e0fffy", "x[U+E0FFF]y"),  # no name: the code point
        ("#3\nbrush teeth 0.71", "#3\nbrush teeth 0.71"),
    ],
)
def test_missing_glyphs_become_readable_text(text, shown):
    assert displayable(text) == shown


def test_non_ascii_is_drawn_not_replaced_by_question_marks():
    renderer = FrameRenderer(340, 256)
    accented = renderer.label_patch("café", 0)
    assert accented.shape == renderer.label_patch("cafe", 0).shape
    assert not np.array_equal(accented, renderer.label_patch("cafe", 0))
    assert not np.array_equal(accented, renderer.label_patch("caf?", 0))


@pytest.mark.parametrize("size", [(340, 256), (96, 64), (1920, 1080)])
def test_long_names_are_cut_with_an_ellipsis_keeping_the_score(size):
    renderer = FrameRenderer(*size)
    fitted = renderer.fit_label(f"#12\n{LONG} 0.71\nsit 0.20")
    first, cut, last = fitted.split("\n")
    assert (first, last) == ("#12", "sit 0.20")
    assert cut.endswith(f"{ELLIPSIS} 0.71") and LONG.startswith(cut.removesuffix(f"{ELLIPSIS} 0.71"))
    assert renderer.label_size(fitted)[0] <= size[0]
    assert renderer.fit_label("sit 0.20") == "sit 0.20"  # what fits is never cut


def test_lines_beyond_the_frame_height_are_dropped_with_an_ellipsis():
    renderer = FrameRenderer(96, 30)
    fitted = renderer.fit_label("#1\na 0.50\nb 0.30\nc 0.20")
    assert fitted == f"#1\na 0.50{ELLIPSIS}"
    assert renderer.label_size(fitted)[1] <= 30 < renderer.label_size("#1\na 0.50\nb 0.30")[1]


def test_label_pixels_stay_inside_the_frame():
    """A long label on a box at the right edge: drawn wholly inside the frame, its text inside its background."""
    width, height = 340, 256
    renderer = FrameRenderer(width, height)
    det = sv.Detections(
        xyxy=np.array([[300, 2, 339, 200], [0, 100, 30, 255]], np.float32),
        data={"scores": np.array([[0.71, 0.29], [0.4, 0.6]], np.float32)},
    )
    actions = [LONG, "café 💪"]
    labels = [person_label(det, i, actions) for i in range(len(det))]
    black = np.zeros((height, width, 3), np.uint8)
    drawn = renderer.draw(black, det, labels)
    assert drawn.any() and not black.any()  # labels are drawn on a copy: the input image is left untouched
    pad = renderer.style.padding
    for i, label in enumerate(labels):
        fitted = renderer.fit_label(label)
        patch = renderer.label_patch(fitted, i)
        background = patch[0, 0]
        ring = np.concatenate([patch[: pad - 1].reshape(-1, 3), patch[-(pad - 1) :].reshape(-1, 3),
                               patch[:, : pad - 1].reshape(-1, 3), patch[:, -(pad - 1) :].reshape(-1, 3)])
        assert (ring == background).all(), "text runs into the label's edge"
        x1, y1, x2, y2 = renderer.place(det[[i]], [(patch.shape[1], patch.shape[0])])[0]
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
    text = np.argwhere(drawn.min(axis=2) > 200)  # white text pixels
    assert text[:, 1].max() <= width - pad and text[:, 0].min() >= pad - 1
    assert renderer.fit_label(labels[0]).split("\n")[0].endswith(f"{ELLIPSIS} 0.71")


def test_label_colour_matches_its_box_and_track():
    renderer = FrameRenderer(340, 256)
    det = sv.Detections(
        xyxy=np.array([[20, 60, 120, 250], [200, 60, 300, 250]], np.float32),
        tracker_id=np.array([5, 9]),
        data={"scores": np.array([[0.71, 0.29], [0.4, 0.6]], np.float32)},
    )
    drawn = renderer.draw(np.zeros((256, 340, 3), np.uint8), det, [person_label(det, i, ["a", "b"]) for i in range(2)])
    for i, track in enumerate((5, 9)):
        expected = sv.ColorPalette.DEFAULT.by_idx(track).as_rgb()
        assert tuple(drawn[150, int(det.xyxy[i, 0])]) == expected  # the box's left edge
        assert tuple(drawn[60 - 3, int(det.xyxy[i, 0]) + 1]) == expected  # the label's background above it


def test_nobody_and_empty_labels():
    renderer = FrameRenderer(96, 64)
    image = np.full((64, 96, 3), 7, np.uint8)
    assert renderer.draw(image, sv.Detections.empty(), []) is image
    det = sv.Detections(xyxy=np.array([[10, 10, 50, 50]], np.float32))
    drawn = renderer.draw(image, det, [""])
    assert (drawn[10, 30] != 7).any() and (drawn[30, 30] == 7).all()  # a box, and no label patch inside it


def test_a_frame_too_small_for_any_text():
    """Only the ellipsis is left of a cut label; a placement never reaches outside the frame whatever the size."""
    renderer = FrameRenderer(20, 12)
    det = sv.Detections(xyxy=np.array([[2, 2, 18, 10]], np.float32))
    assert renderer.fit_label("#1") == ELLIPSIS
    drawn = renderer.draw(np.zeros((12, 20, 3), np.uint8), det, ["#1"])
    assert drawn.shape == (12, 20, 3) and drawn.any()
    assert renderer.place(det, [(40, 30)]).tolist() == [[0, 0, 20, 12]]
