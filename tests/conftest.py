"""Shared fixtures: tiny real videos (PyAV), frame folders and the shared sample clip.

Every test session runs as on a fresh machine: the config and cache folders of ultralytics, Hugging Face, torch
and stclip (and HOME itself) point into a new temporary folder before any library is imported, so nothing a
previous run left behind (settings files, downloaded weights) can make a test pass.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

FRESH_HOME = Path(tempfile.mkdtemp(prefix="stclip-tests-home-"))
# removed at interpreter exit, not in pytest_unconfigure: pytest skips that hook when it stops on a usage error
atexit.register(shutil.rmtree, FRESH_HOME, ignore_errors=True)
FRESH_ENV = {
    "HOME": str(FRESH_HOME),
    "XDG_CONFIG_HOME": str(FRESH_HOME / ".config"),
    "XDG_CACHE_HOME": str(FRESH_HOME / ".cache"),
    "YOLO_CONFIG_DIR": str(FRESH_HOME / ".config" / "Ultralytics"),
    "HF_HOME": str(FRESH_HOME / ".cache" / "huggingface"),
    "TORCH_HOME": str(FRESH_HOME / ".cache" / "torch"),
    "MPLCONFIGDIR": str(FRESH_HOME / ".config" / "matplotlib"),
}
os.environ.update(FRESH_ENV)
for name in ("STCLIP_CHECKPOINT", "STCLIP_DATA", "HF_HUB_OFFLINE", "YOLO_VERBOSE", "YOLO_OFFLINE"):
    os.environ.pop(name, None)

import av  # noqa: E402  (after the environment above)
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
SAMPLE_CLIP = Path(__file__).resolve().parents[1] / "stclip_cli" / "assets" / "arm_wrestling.mp4"  # shipped sample


def synthetic_frame(index: int, size: tuple[int, int] = (96, 64)) -> np.ndarray:
    """An RGB frame: grey level that grows with ``index``, a red marker top-left, a green box moving right."""
    width, height = size
    image = np.full((height, width, 3), (index * 8) % 200 + 20, dtype=np.uint8)
    image[:8, :8] = (255, 0, 0)
    x = (index * 3) % max(1, width - 20)
    image[height // 3 : height // 3 + 20, x : x + 16] = (0, 255, 0)
    return image


def write_video(
    path: Path,
    n_frames: int = 30,
    size: tuple[int, int] = (96, 64),
    fps: int = 10,
    rotation: int | None = None,
    codec: str = "libx264",
) -> Path:
    """Encode ``n_frames`` synthetic frames to ``path``; ``rotation`` sets the display matrix (degrees CCW)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(synthetic_frame(i, size), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_vfr_video(path: Path, times: list[float], size: tuple[int, int] = (96, 64), time_base: Fraction = Fraction(1, 90000),
                    codec: str = "libx264") -> Path:
    """A variable-frame-rate video: synthetic frame i shown at ``times[i]`` seconds (pts in ``time_base`` units)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = stream.time_base = time_base
        for i, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(synthetic_frame(i, size), format="rgb24")
            frame.pts, frame.time_base = round(Fraction(t) / time_base), time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture
def make_video() -> Callable[..., Path]:
    """Factory: ``make_video(tmp_path, n_frames=30, size=(96, 64), fps=10, rotation=None, name="clip.mp4")``."""

    def make(
        tmp_path: Path,
        n_frames: int = 30,
        size: tuple[int, int] = (96, 64),
        fps: int = 10,
        rotation: int | None = None,
        name: str = "clip.mp4",
    ) -> Path:
        return write_video(tmp_path / name, n_frames=n_frames, size=size, fps=fps, rotation=rotation)

    return make


@pytest.fixture
def make_frames_folder() -> Callable[..., Path]:
    """Factory: ``make_frames_folder(tmp_path, n_frames=12, size=(96, 64), ext="png")`` -> folder of frame_N files."""

    def make(tmp_path: Path, n_frames: int = 12, size: tuple[int, int] = (96, 64), ext: str = "png") -> Path:
        folder = tmp_path / "frames"
        folder.mkdir(exist_ok=True)
        for i in range(n_frames):
            image = synthetic_frame(i, size)
            cv2.imwrite(str(folder / f"frame_{i + 1}.{ext}"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        return folder

    return make


@pytest.fixture
def make_frame() -> Callable[..., np.ndarray]:
    """Factory: ``make_frame(index, size=(96, 64))`` -> the synthetic RGB frame the videos are made of."""
    return synthetic_frame


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """A checkpoint of the tiny randomly initialised card (read only: tests that change weights make their own)."""
    import torch

    from stclip_cli.weights.cards import build_model, load_card, save_checkpoint

    torch.manual_seed(0)
    card = load_card("tiny-test")
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(path, build_model(card), card, {"step": 0})
    return path


@pytest.fixture
def sample_clip() -> Path:
    """The real sample clip shipped with the package (arm_wrestling.mp4, mmaction2's demo video)."""
    if not SAMPLE_CLIP.is_file():
        pytest.skip(f"{SAMPLE_CLIP} not available")
    return SAMPLE_CLIP


def one_line_error(result) -> str:
    """The single ``error:`` line of a failed CLI run (exit 1, no traceback, nothing else printed)."""
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


DETECT_ACTIONS = "brush teeth,fishing,sit"  # the action list of the detect tests that share base_args
GOLDEN = SHARED / "golden" / "reference_forward_tiny.pt"


def detect(*args: object):
    """``stclip detect ARGS`` in-process (typer's CliRunner), its result."""
    from typer.testing import CliRunner

    from stclip_cli.cli import app

    return CliRunner().invoke(app, ["detect", *map(str, args)])


def base_args(checkpoint: Path, boxes: Path) -> list[str]:
    """The tiny-test model with ``checkpoint``, persons from ``boxes``, ``DETECT_ACTIONS``, quiet."""
    return ["--actions", DETECT_ACTIONS, "--model", "tiny-test", "--checkpoint", str(checkpoint), "--boxes", str(boxes),
            "--quiet"]


def boxes_file(tmp_path: Path, n_frames: int, per_frame=((10, 8, 40, 50), (50, 10, 90, 60)), name="boxes.json") -> Path:
    """COCO-results boxes (image_id = 0-based frame index, bbox [x, y, w, h]) for every frame; ``per_frame`` is xyxy."""
    import json

    rows = [{"image_id": f, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": 0.9 - 0.1 * k}
            for f in range(n_frames) for k, (x1, y1, x2, y2) in enumerate(per_frame)]
    path = tmp_path / name
    path.write_text(json.dumps(rows))
    return path


def put_in_hub_cache(repo: str, filename: str, data: bytes) -> None:
    """Lay a file out as huggingface_hub's cache does (refs/main -> snapshots/<revision>/file)."""
    from huggingface_hub import constants

    root = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
    revision = "0" * 40
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(revision)
    target = root / "snapshots" / revision / filename
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def golden_card(**changes):
    """The card of the golden reference forward's tiny ST-CLIP (``GOLDEN``), with ``changes``."""
    from stclip_cli.weights.cards import ModelCard

    meta = dict(name="golden", kind="stclip", backbone="stclip-golden-tiny", pretrained=None, window=9, lora_rank=8,
                lora_alpha=1.0, interest_k=None, temperature=0.07)
    return ModelCard(**{**meta, **changes})


LABEL_MAP = """item {
  name: "bend/bow (at the waist)"
  id: 1
}
item {
  name: "crawl"
  id: 2
}
item {
  name: "sit"
  id: 11
}
"""


def trained_tiny(seed: int):
    """The tiny-test card and a model of it whose every trainable weight left its initial value (LoRA B non-zero),
    as a trained checkpoint's would."""
    import torch

    from stclip_cli.weights.cards import build_model, load_card

    torch.manual_seed(seed)
    card = load_card("tiny-test")
    model = build_model(card)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    return card, model
