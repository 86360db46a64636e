"""Streaming video decode (PyAV) and frame folders: upright RGB frames with real timestamps, one at a time."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import av
import cv2
import numpy as np

from stclip_cli.errors import StclipError
from stclip_cli.records import Frame, VideoInfo

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
DEFAULT_FOLDER_FPS = 25.0


class VideoSource(Protocol):
    """A video opened for streaming: ``info`` up front, frames by iterating, ``close()`` (or ``with``); ``live``:
    whether it runs in real time and will not wait for us (a camera; streams.py), which the predictor paces."""

    info: VideoInfo
    live: bool

    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...

    def __enter__(self) -> VideoSource: ...

    def __exit__(self, *exc: object) -> None: ...


def open_video(path: str | Path, fps: float | None = None, threads: bool = True) -> VideoSource:
    """Open a video file or a folder of frames, failing fast with a one-line ``StclipError`` on bad input (streams:
    sources.open_source).

    ``fps`` applies to frame folders (default 25); a video file's rate comes from its container.
    """
    path = Path(path)
    if not path.exists():
        raise StclipError(f"video not found: {path}")
    if path.is_dir():
        return FrameFolderSource(path, fps or DEFAULT_FOLDER_FPS)
    if path.stat().st_size == 0:
        raise StclipError(f"{path}: empty file")
    return PyAVSource(path, threads=threads)


def upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """Rotate a decoded image by the display-matrix angle (degrees counter-clockwise, as PyAV reports it)."""
    turns = round(rotation / 90) % 4
    if turns == 0:
        return image
    return np.ascontiguousarray(np.rot90(image, k=turns))


class PyAVSource:
    """A video file decoded by PyAV, one frame at a time; opening decodes the first frame to validate it.

    ``name`` is what messages call it (the path by default); streams.py opens streams through ``_open_container``.
    """

    live = False
    thread_type = "AUTO"  # frame and slice threads; frame threads hold a few frames back (a live source uses SLICE)

    def __init__(self, path: Path | str, threads: bool = True, name: str | None = None) -> None:
        self.path = path
        self.name = name or str(path)
        self._threads = threads
        self._container: av.container.InputContainer | None = None
        self._frames: Iterator[av.VideoFrame] | None = None
        self._first: av.VideoFrame | None = None
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        stream = self._stream
        assert self._first is not None
        rotation = self._first.rotation
        width, height = self._first.width, self._first.height
        if round(rotation / 90) % 2:
            width, height = height, width
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self.info = VideoInfo(
            path=path,
            width=width,
            height=height,
            fps=float(rate) if rate else DEFAULT_FOLDER_FPS,
            num_frames=stream.frames or self._count_packets(),
            rotation=rotation,
            time_base=stream.time_base,
        )

    def _open(self) -> None:
        self._container = self._open_container()
        if not self._container.streams.video:
            raise StclipError(f"{self.name}: no video stream")
        self._stream = self._container.streams.video[0]
        if self._threads:
            self._stream.thread_type = self.thread_type
        self._frames = self._decode()
        try:
            self._first = next(self._frames, None)
        except (av.FFmpegError, _CorruptPacket) as err:
            raise StclipError(f"{self.name}: no decodable video frames ({self._why(err)})") from None
        if self._first is None:
            raise StclipError(f"{self.name}: no decodable video frames")

    def _open_container(self) -> av.container.InputContainer:
        """Open the file with PyAV."""
        try:
            return av.open(str(self.path), metadata_errors="ignore")
        except av.FFmpegError as err:
            raise StclipError(f"{self.path}: not a video FFmpeg can read ({_reason(err)})") from None

    def _why(self, err: Exception) -> str:
        """The reason a message quotes for a decoding error."""
        return _reason(err)

    def _decode(self) -> Iterator[av.VideoFrame]:
        """Demux and decode, raising on a corrupt (e.g. truncated) packet once the frames before it are out.

        Frame-threaded decoders swallow the error of a damaged packet, so the demuxer's corrupt flag is
        what reveals a truncated file.
        """
        assert self._container is not None
        stream = self._stream
        for packet in self._container.demux(stream):
            if packet.is_corrupt:
                yield from stream.codec_context.decode(None)
                raise _CorruptPacket("corrupt or truncated data")
            yield from packet.decode()
        size = self._bytes_read()
        if self._container.format.name == "mpegts" and size and all(size % unit for unit in TS_PACKET_SIZES):
            raise _CorruptPacket("the MPEG-TS data ends mid-packet: truncated")  # FFmpeg drops the part silently

    def _bytes_read(self) -> int | None:
        """How many bytes the input held (a file's size), for the checks a container's own framing allows."""
        try:
            return os.path.getsize(self.path) if isinstance(self.path, (str, Path)) and os.path.isfile(self.path) else None
        except OSError:
            return None

    def _count_packets(self) -> int:
        with av.open(str(self.path), metadata_errors="ignore") as container:
            stream = container.streams.video[0]
            try:
                return sum(1 for packet in container.demux(stream) if packet.size)
            except av.FFmpegError:
                return 0

    def __iter__(self) -> Iterator[Frame]:
        if self._first is None:
            self.close()
            self._open()
        first, frames, stream = self._first, self._frames, self._stream
        self._first = None
        assert first is not None and frames is not None
        start = stream.start_time or 0
        index = 0
        frame: av.VideoFrame | None = first
        try:
            while frame is not None:
                arrival = time.monotonic()
                if frame.pts is not None:
                    seconds = float((frame.pts - start) * stream.time_base)
                else:
                    seconds = index / self.info.fps
                image = upright(frame.to_ndarray(format="rgb24"), frame.rotation)
                yield Frame(index=index, time=seconds, image=image, arrival=arrival)
                index += 1
                frame = next(frames, None)
        except (av.FFmpegError, _CorruptPacket) as err:
            raise StclipError(f"{self.name}: decoding failed at frame {index} ({self._why(err)})") from None
        finally:
            self.close()

    def close(self) -> None:
        """Close the container; safe to call more than once."""
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> PyAVSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FrameFolderSource:
    """A folder of image files read in natural sort order (frame_2 before frame_10) at a given rate.

    ``files``: the frames, in order, when they are known already (a dataset's list, which may not be a whole
    folder); ``needed``: when given, only these frame indices are read, the others come without pixels (a benchmark
    scores a few windows of a long video).
    """

    live = False

    def __init__(self, path: Path, fps: float, files: list[Path] | None = None, needed: set[int] | None = None) -> None:
        if fps <= 0:
            raise StclipError(f"frame rate must be positive, got {fps}")
        self.path = path
        self.needed = needed
        self.files = list(files) if files is not None else sorted(
            (f for f in path.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES),
            key=_natural_key,
        )
        if not self.files:
            raise StclipError(f"{path}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder")
        first = self._read(min(needed) if needed else 0)
        self.info = VideoInfo(
            path=path,
            width=first.shape[1],
            height=first.shape[0],
            fps=float(fps),
            num_frames=len(self.files),
            rotation=0,
        )

    def _read(self, index: int) -> np.ndarray:
        image = cv2.imread(str(self.files[index]), cv2.IMREAD_COLOR)
        if image is None:
            raise StclipError(f"{self.files[index]}: cannot read image (frame {index})")
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def __iter__(self) -> Iterator[Frame]:
        size = (self.info.height, self.info.width)
        for index in range(len(self.files)):
            arrival = time.monotonic()
            if self.needed is not None and index not in self.needed:
                yield Frame(index=index, time=index / self.info.fps, image=None, arrival=arrival)
                continue
            image = self._read(index)
            if image.shape[:2] != size:
                raise StclipError(
                    f"{self.files[index]}: frame {index} is {image.shape[1]}x{image.shape[0]}, "
                    f"expected {size[1]}x{size[0]} like the first frame"
                )
            yield Frame(index=index, time=index / self.info.fps, image=image, arrival=arrival)

    def close(self) -> None:
        """Nothing stays open between frames; present for the ``VideoSource`` protocol."""

    def __enter__(self) -> FrameFolderSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _natural_key(path: Path) -> list[int | str]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


TS_PACKET_SIZES = (188, 192, 204)  # MPEG-TS packets (M2TS adds a 4-byte timecode, DVB 16 bytes of FEC): whole ones


class _CorruptPacket(Exception):
    """The demuxer flagged a packet as corrupt (typically a truncated file)."""


def _reason(err: Exception) -> str:
    text = getattr(err, "strerror", None) or str(err)
    return text.strip().rstrip(".")
