"""Live and streamed sources: URLs (rtsp://, http(s)://, ...), webcams and standard input, decoded by PyAV.

What differs from a file: FFmpeg gets network timeouts, so a dead URL fails within ``--timeout`` seconds; the frame
count is unknown; Ctrl-C or SIGTERM ends the stream (the frames already read are scored and every output is closed
as at the end of a file; a second one aborts at once), and so does a connection that breaks off, which is then
reported; a live source (a camera, which will not wait for us) scores each keyframe as soon as its window is
complete and thins out its keyframes when scoring falls behind (the predictor paces it: pacing.AdaptiveStride). Standard input and http(s)
files are not live: every frame is scored, however long it takes.
"""

from __future__ import annotations

import os
import select
import signal
import stat
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import av

from stclip_cli.errors import StclipError, Terminated
from stclip_cli.sources.inputs import WEBCAM, StreamInput
from stclip_cli.records import Frame
from stclip_cli.sources.video import PyAVSource, _reason

MP4_HINT = ("an MP4 read from a pipe, or from a server without range requests, needs its index at the start: "
            "remux it with `ffmpeg -i IN -c copy -movflags +faststart OUT.mp4`, or send MPEG-TS or Matroska "
            "(`ffmpeg ... -f mpegts -`)")


def open_stream(spec: StreamInput, fps: float | None = None) -> StreamSource:
    """Open a stream, failing within ``spec.timeout`` seconds with a one-line ``StclipError`` when it is dead.

    ``fps`` times the frames of a stream that carries no timestamps (raw H.264 on a pipe), as ``--fps`` does.
    """
    return StreamSource(spec, fps)


class StreamSource(PyAVSource):
    """A stream decoded by PyAV: ``live`` tells whether it runs in real time (then the predictor paces it), each
    frame's ``waited`` how long the stream kept us waiting for it; iterating ends at the stream's end, at ``spec.stop`` or when it breaks off (``spec.failure``)."""

    def __init__(self, spec: StreamInput, fps: float | None = None) -> None:
        self.spec = spec
        self.live = spec.known_live
        self._handlers: dict[int, Any] | None = None
        self._input: _StandardInput | None = None  # standard input, when that is the stream
        super().__init__(spec.label, threads=True, name=spec.name)
        assert self._first is not None
        if fps and self._first.pts is None:
            self.info = replace(self.info, fps=float(fps))

    def _open_container(self) -> av.container.InputContainer:
        """Open with timeouts (network), the v4l2/avfoundation format (webcams) or standard input's file."""
        location, arguments = _container_arguments(self.spec)
        self._input = location if isinstance(location, _StandardInput) else None
        started = time.monotonic()
        try:
            container = av.open(location, metadata_errors="ignore", **arguments)
        except av.FFmpegError as err:
            what = {"url": "cannot open the stream", "webcam": "cannot open the webcam",
                    "stdin": "not a video FFmpeg can read"}[self.spec.kind]
            waited = self.spec.kind == "url" and time.monotonic() - started >= 0.9 * self.spec.timeout
            raise StclipError(f"{self.name}: {what} ({self._why(err, waited)})") from None
        if self.live is None:
            self.live = container.duration is None
        if self.live:
            self.thread_type = "SLICE"  # frame threads would hold frames back: latency
        return container

    def _open(self) -> None:
        try:
            super()._open()
        except StclipError as err:
            container = self._container
            undecodable = "no decodable video frames" in str(err)
            if undecodable and self.spec.kind != "webcam" and container is not None and "mp4" in container.format.name:
                raise StclipError(f"{err}; {MP4_HINT}") from None
            raise

    def _why(self, err: Exception, waited: bool = False) -> str:
        if isinstance(err, av.ExitError) or waited:  # PyAV's timeout interrupts FFmpeg with AVERROR_EXIT
            return f"no answer within {self.spec.timeout:g} s; --timeout sets how long to wait"
        return _reason(err)

    def _count_packets(self) -> int:
        return 0  # a stream cannot be read twice: its length is unknown

    def _bytes_read(self) -> int | None:
        """Standard input's bytes, when it was read to its end (a stop request cuts it short on purpose)."""
        piped = self._input
        if piped is None or self.spec.stop.is_set():
            return None
        return os.fstat(piped.fd).st_size if piped.seekable() else piped.count

    def __iter__(self) -> Iterator[Frame]:
        frames = super().__iter__()
        count = 0
        self._arm()
        try:
            while not self.spec.stop.is_set():
                asked = time.monotonic()
                try:
                    frame = next(frames, None)
                except StclipError as err:
                    if self.spec.stop.is_set():  # e.g. a stalled network read that timed out after Ctrl-C
                        break
                    self.spec.failure = f"{err}; the outputs hold the results up to there"
                    return
                if frame is None:
                    if self.spec.stop.is_set():  # standard input ends when a stop is requested
                        break
                    return
                count += 1
                if frame.arrival is not None:  # waiting for the source is not falling behind (pacing.py)
                    frame = replace(frame, waited=frame.arrival - asked)
                yield frame
            self.spec.note(f"{self.name}: stopped after {count} frames; scoring the frames already read, then "
                           "closing the outputs (Ctrl-C again aborts)")
        finally:
            self._disarm()
            frames.close()

    def close(self) -> None:
        """Close the container and give Ctrl-C and SIGTERM back; safe to call more than once."""
        self._disarm()
        super().close()

    def _arm(self) -> None:
        """Make the first Ctrl-C or SIGTERM end the stream (main thread only, as Python requires); a second one
        aborts as it would anywhere else."""
        if threading.current_thread() is not threading.main_thread() or self._handlers is not None:
            return

        def first(signum: int, frame: Any) -> None:
            self.spec.stop.set()
            for sig in self._handlers or {}:
                signal.signal(sig, again)

        def again(signum: int, frame: Any) -> None:
            self._disarm()
            raise KeyboardInterrupt if signum == signal.SIGINT else Terminated()

        self._handlers = {sig: signal.signal(sig, first) for sig in (signal.SIGINT, signal.SIGTERM)}

    def _disarm(self) -> None:
        if self._handlers is not None and threading.current_thread() is threading.main_thread():
            for sig, handler in self._handlers.items():
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
            self._handlers = None


def _container_arguments(spec: StreamInput) -> tuple[Any, dict[str, Any]]:
    """What ``av.open`` gets for a stream: the location and its keyword arguments."""
    if spec.kind == "stdin":
        return _StandardInput(spec.stop), {}
    if spec.kind == "webcam":
        return _webcam(spec.text)
    micros = str(round(spec.timeout * 1e6))
    options = {"rw_timeout": micros}
    if spec.text.lower().startswith(("rtsp://", "rtsps://")):
        options |= {"rtsp_transport": "tcp", "timeout": micros}  # TCP: no lost packets, passes NAT
    return spec.text, {"options": options, "timeout": spec.timeout}


def _webcam(text: str) -> tuple[str, dict[str, Any]]:
    """``/dev/videoN`` or ``webcam:N``: v4l2 on Linux, avfoundation device N on macOS."""
    if text.startswith(WEBCAM):
        number = text[len(WEBCAM):]
        if not number.isdigit():
            raise StclipError(f"{text}: webcam:N takes a device number, e.g. webcam:0")
        if sys.platform == "darwin":
            return number, {"format": "avfoundation"}
        if not sys.platform.startswith("linux"):
            raise StclipError(f"{text}: webcams are read on Linux (v4l2) and macOS (avfoundation); elsewhere pipe the "
                              "camera in with FFmpeg, e.g. ffmpeg -f dshow -i video=NAME -f mpegts - | stclip detect -")
        device = f"/dev/video{number}"
    else:
        device = text
    if not os.path.exists(device):
        raise StclipError(f"{text}: no such webcam ({device} does not exist)")
    return device, {"format": "v4l2"}


class _StandardInput:
    """File descriptor 0 for PyAV: ``read`` returns what has arrived (a slow pipe is not waited on for a full
    buffer), seeking works when standard input is a regular file (``< clip.mp4``), and a stop request ends it like
    the end of the data. Hand-written because a blocking read would hold Ctrl-C off until the producer writes again.
    """

    POLL_S = 0.1

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.fd = 0
        self.count = 0  # bytes read: a pipe's MPEG-TS must end with a whole packet (video.py)

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes, as soon as any are there; b"" at the end or once a stop is requested."""
        while not self.stop.is_set():
            ready, _, _ = select.select([self.fd], [], [], self.POLL_S)
            if ready:
                data = os.read(self.fd, size if size > 0 else 1 << 16)
                self.count += len(data)
                return data
        return b""

    def seekable(self) -> bool:
        """Whether standard input is a regular file."""
        return stat.S_ISREG(os.fstat(self.fd).st_mode)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move in a regular file."""
        return os.lseek(self.fd, offset, whence)

    def tell(self) -> int:
        """The position in a regular file."""
        return os.lseek(self.fd, 0, os.SEEK_CUR)
