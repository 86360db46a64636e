"""Streaming decode: frame counts, sizes, timestamps, rotation, frame folders and one-line errors."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import write_vfr_video
from stclip_cli.errors import StclipError
from stclip_cli.sources.video import FrameFolderSource, PyAVSource, open_video

RED = np.array([255, 0, 0])


def is_red(pixel: np.ndarray) -> bool:
    return bool(np.abs(pixel.astype(int) - RED).max() < 40)


def test_decodes_every_frame_with_times_and_size(tmp_path, make_video):
    path = make_video(tmp_path, n_frames=30, size=(96, 64), fps=10)
    with open_video(path) as source:
        info = source.info
        frames = list(source)
    assert (info.width, info.height, info.fps, info.num_frames, info.rotation) == (96, 64, 10.0, 30, 0)
    assert [f.index for f in frames] == list(range(30))
    assert np.allclose([f.time for f in frames], np.arange(30) / 10)
    assert frames[0].image.shape == (64, 96, 3) and frames[0].image.dtype == np.uint8
    assert is_red(frames[0].image[2, 2])


def test_iterating_twice_reopens(tmp_path, make_video):
    source = open_video(make_video(tmp_path, n_frames=5))
    assert len(list(source)) == 5
    assert len(list(source)) == 5
    source.close()


def test_closes_container_after_iteration_and_on_early_close(tmp_path, make_video):
    source = open_video(make_video(tmp_path, n_frames=5))
    assert isinstance(source, PyAVSource)
    list(source)
    assert source._container is None
    source = open_video(make_video(tmp_path, n_frames=5))
    next(iter(source))
    source.close()
    assert source._container is None


@pytest.mark.parametrize(
    ("rotation", "corner"),
    [(90, (-3, 2)), (-90, (2, -3)), (180, (-3, -3))],
)
def test_rotation_metadata_gives_upright_frames(tmp_path, make_video, rotation, corner):
    path = make_video(tmp_path, n_frames=3, size=(96, 64), rotation=rotation)
    with open_video(path) as source:
        frame = next(iter(source))
        info = source.info
    assert info.rotation % 360 == rotation % 360
    upright_shape = (96, 64, 3) if rotation % 180 else (64, 96, 3)
    assert frame.image.shape == upright_shape
    assert (info.height, info.width) == upright_shape[:2]
    assert is_red(frame.image[corner])
    assert not is_red(frame.image[2, 2])


def test_frame_count_from_demux_when_container_has_none(tmp_path):
    path = tmp_path / "raw.h264"
    with av.open(str(path), "w", format="h264") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for _ in range(12):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.zeros((64, 96, 3), np.uint8), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with open_video(path) as source:
        assert source.info.num_frames == 12
        assert len(list(source)) == 12


def test_variable_frame_rate_times_and_time_base(tmp_path):
    """A VFR file's frames carry their own times, exact multiples of the stream's time base (which info reports)."""
    times = [0.0, 0.04, 0.05, 0.3, 0.31, 0.9]
    path = write_vfr_video(tmp_path / "vfr.mp4", times, time_base=Fraction(1, 1000))
    with open_video(path) as source:
        base = source.info.time_base
        decoded = [f.time for f in source]
    assert decoded == pytest.approx(times, abs=1e-12)
    assert base is not None and all(abs(t / base - round(t / base)) < 1e-6 for t in decoded)


def test_frame_folder_natural_order_and_fps(tmp_path, make_frames_folder):
    folder = make_frames_folder(tmp_path, n_frames=12)
    source = open_video(folder)
    assert isinstance(source, FrameFolderSource)
    assert (source.info.width, source.info.height, source.info.fps, source.info.num_frames) == (96, 64, 25.0, 12)
    frames = list(source)
    assert [f.time for f in frames] == pytest.approx(np.arange(12) / 25)
    grey = [int(f.image[60, 90, 0]) for f in frames]
    assert grey == [(i * 8) % 200 + 20 for i in range(12)]
    assert open_video(folder, fps=5).info.fps == 5.0
    assert source.info.time_base is None


def test_frame_folder_bad_image_mid_stream(tmp_path, make_frames_folder):
    folder = make_frames_folder(tmp_path, n_frames=4)
    (folder / "frame_3.png").write_text("not an image")
    source = open_video(folder)
    with pytest.raises(StclipError, match=r"frame_3.png: cannot read image \(frame 2\)"):
        list(source)


def one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_missing_path(tmp_path):
    with pytest.raises(StclipError) as err:
        open_video(tmp_path / "nope.mp4")
    assert one_line(err) == f"video not found: {tmp_path / 'nope.mp4'}"


def test_empty_file(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(StclipError) as err:
        open_video(tmp_path / "empty.mp4")
    assert one_line(err) == f"{tmp_path / 'empty.mp4'}: empty file"


def test_text_file_named_mp4(tmp_path):
    (tmp_path / "notes.mp4").write_text("hello\n" * 20)
    with pytest.raises(StclipError) as err:
        open_video(tmp_path / "notes.mp4")
    assert one_line(err).startswith(f"{tmp_path / 'notes.mp4'}: not a video FFmpeg can read")


def test_empty_folder(tmp_path):
    (tmp_path / "frames").mkdir()
    with pytest.raises(StclipError) as err:
        open_video(tmp_path / "frames")
    assert "no image files" in one_line(err)


def test_no_video_stream(tmp_path):
    path = tmp_path / "audio.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    with pytest.raises(StclipError) as err:
        open_video(path)
    assert one_line(err) == f"{path}: no video stream"


def test_video_stream_without_decodable_frames(tmp_path, make_video):
    path = make_video(tmp_path, n_frames=10)
    data = bytearray(path.read_bytes())
    at = data.find(b"mdat")
    size = int.from_bytes(data[at - 4 : at], "big")
    data[at + 4 : at - 4 + size] = bytes(size - 8)
    path.write_bytes(bytes(data))
    with pytest.raises(StclipError) as err:
        open_video(path)
    assert one_line(err).startswith(f"{path}: no decodable video frames")


def test_truncated_file_fails_naming_file_and_frame(tmp_path):
    path = tmp_path / "cut.mp4"
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for _ in range(40):
            image = rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    source = open_video(path)
    decoded = 0
    with pytest.raises(StclipError) as err:
        for _ in source:
            decoded += 1
    assert 0 < decoded < 40
    assert one_line(err).startswith(f"{path}: decoding failed at frame {decoded}")
    assert source._container is None


def test_truncated_without_index_fails_at_open(tmp_path, make_video):
    path = make_video(tmp_path, n_frames=20)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(StclipError) as err:
        open_video(path)
    assert one_line(err).startswith(f"{path}: not a video FFmpeg can read")


def test_sample_clip(sample_clip: Path):
    with open_video(sample_clip) as source:
        info = source.info
        count = 0
        for frame in source:
            assert frame.index == count
            assert frame.time == pytest.approx(count / 28)
            assert frame.image.shape == (256, 340, 3)
            count += 1
    assert (info.width, info.height, info.fps, info.num_frames) == (340, 256, 28.0, 280)
    assert count == 280
