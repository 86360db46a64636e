"""Live and streamed sources: URLs (rtsp://, http(s)://, ...), webcams and standard input, decoded by PyAV.

What differs from a file: FFmpeg gets network timeouts, so a dead URL fails within ``--timeout`` seconds; the frame
count is unknown; Ctrl-C or SIGTERM ends the stream (the frames already read are scored and every output is closed
as at the end of a file; a second one aborts at once), and so does a connection that breaks off, which is then
reported; a live source (a camera, which will not wait for us) scores each keyframe as soon as its window is
complete and thins out its keyframes when scoring falls behind (pacing.AdaptiveStride). Standard input and http(s)
files are not live: every frame is scored, however long it takes.
"""

from __future__ import annotations

import math
import os
import re
import select
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import av

from .errors import StclipError, Terminated
from .pacing import AdaptiveStride
from .video import Frame, PyAVSource, _reason
from .windows import EveryNth, KeyframeSchedule

STDIN = "-"
WEBCAM = "webcam:"
DEFAULT_TIMEOUT_S = 10.0
# schemes of sources that run in real time whatever we do; http(s) is live only when it has no duration
LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "rtp", "srt", "udp", "tcp"})
MAX_KEYFRAME_GAP_S = 1.0  # a live source kept up with still gets at least one scored frame per second of video
MP4_HINT = ("an MP4 read from a pipe, or from a server without range requests, needs its index at the start: "
            "remux it with `ffmpeg -i IN -c copy -movflags +faststart OUT.mp4`, or send MPEG-TS or Matroska "
            "(`ffmpeg ... -f mpegts -`)")

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_VIDEO_DEVICE = re.compile(r"^/dev/video\d+$")
_CREDENTIALS = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/@:]*):[^/@]*@")


def is_stream(text: str) -> bool:
    """Whether an input names a stream rather than a file or folder: a URL, a webcam or ``-`` (standard input)."""
    return text == STDIN or bool(_URL.match(text)) or text.startswith(WEBCAM) or bool(_VIDEO_DEVICE.match(text))


@dataclass(eq=False)
class StreamInput:
    """A stream to open, as the user named it, and how to treat it.

    ``live``: None decides from the source (rtsp, rtmp, udp, srt, ... and webcams are live, so are http(s) streams
    without a duration; standard input and http(s) files are not). ``timeout``: seconds to wait for a network
    source to answer or send data. ``on_warning``/``on_note`` receive one-line messages (default: standard error).
    ``stop`` ends the stream at the next frame (Ctrl-C, SIGTERM, the ``--show`` window). ``failure`` is set when
    the stream broke off, after the frames before it were scored.
    """

    text: str
    timeout: float = DEFAULT_TIMEOUT_S
    live: bool | None = None
    on_warning: Callable[[str], None] | None = None
    on_note: Callable[[str], None] | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    failure: str | None = None

    @property
    def kind(self) -> str:
        """``stdin``, ``webcam`` or ``url``."""
        if self.text == STDIN:
            return "stdin"
        return "url" if _URL.match(self.text) else "webcam"

    @property
    def label(self) -> str:
        """What results call it (the JSON's ``video``): the input as given, a URL's password masked."""
        return _CREDENTIALS.sub(r"\1:***@", self.text)

    @property
    def name(self) -> str:
        """What messages and the summary call it."""
        return "standard input" if self.kind == "stdin" else self.label

    @property
    def known_live(self) -> bool | None:
        """Whether it is live, when that is known before opening it (None: an http(s) URL, decided by its duration)."""
        if self.live is not None:
            return self.live
        if self.kind == "stdin":
            return False
        if self.kind == "webcam":
            return True
        scheme = _URL.match(self.text).group(1).lower()  # type: ignore[union-attr]
        return True if scheme in LIVE_SCHEMES else None

    def warn(self, text: str) -> None:
        """Pass on a one-line warning."""
        (self.on_warning or _stderr("warning"))(text)

    def note(self, text: str) -> None:
        """Pass on a one-line note."""
        (self.on_note or _stderr("note"))(text)

    def probe(self) -> None:
        """Open and close it: a dead URL fails now, within ``timeout``, before any model loads (standard input
        cannot be read twice and is not probed)."""
        if self.kind != "stdin":
            open_stream(self).close()


def _stderr(level: str) -> Callable[[str], None]:
    return lambda text: print(f"{level}: {text}", file=sys.stderr, flush=True)


def open_stream(spec: StreamInput, fps: float | None = None) -> StreamSource:
    """Open a stream, failing within ``spec.timeout`` seconds with a one-line ``StclipError`` when it is dead.

    ``fps`` times the frames of a stream that carries no timestamps (raw H.264 on a pipe), as ``--fps`` does.
    """
    return StreamSource(spec, fps)


class StreamSource(PyAVSource):
    """A stream decoded by PyAV: ``live`` tells whether it runs in real time (then ``keyframe_schedule`` keeps up
    with it); iterating ends at the stream's end, at ``spec.stop`` or when it breaks off (``spec.failure``)."""

    def __init__(self, spec: StreamInput, fps: float | None = None) -> None:
        self.spec = spec
        self.live = spec.known_live
        self._handlers: dict[int, Any] | None = None
        super().__init__(spec.label, threads=True, name=spec.name)
        assert self._first is not None
        if fps and self._first.pts is None:
            self.info = replace(self.info, fps=float(fps))

    def _open_container(self) -> av.container.InputContainer:
        """Open with timeouts (network), the v4l2/avfoundation format (webcams) or standard input's file."""
        location, arguments = _container_arguments(self.spec)
        started = time.monotonic()
        try:
            container = av.open(location, metadata_errors="ignore", **arguments)
        except av.FFmpegError as err:
            what = {"url": "cannot open the stream", "webcam": "cannot open the webcam",
                    "stdin": "not a video FFmpeg can read"}[self.spec.kind]
            waited = time.monotonic() - started >= 0.9 * self.spec.timeout
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
            if self.spec.kind != "webcam" and container is not None and "mp4" in container.format.name:
                raise StclipError(f"{err}; {MP4_HINT}") from None
            raise

    def _why(self, err: Exception, waited: bool = False) -> str:
        if isinstance(err, av.ExitError) or waited:  # PyAV's timeout interrupts FFmpeg with AVERROR_EXIT
            return f"no answer within {self.spec.timeout:g} s; --timeout sets how long to wait"
        return _reason(err)

    def _count_packets(self) -> int:
        return 0  # a stream cannot be read twice: its length is unknown

    def keyframe_schedule(self, stride: int) -> KeyframeSchedule:
        """Every ``stride``-th frame; for a live source, a stride that grows while scoring cannot keep up."""
        if not self.live:
            return EveryNth(stride)
        longest = max(stride, math.ceil(self.info.fps * MAX_KEYFRAME_GAP_S))
        return AdaptiveStride(stride, longest, warn=lambda text: self.spec.warn(f"{self.name}: {text}"))

    def __iter__(self) -> Iterator[Frame]:
        frames = super().__iter__()
        count = 0
        self._arm()
        try:
            while not self.spec.stop.is_set():
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


def check_inputs(texts: Sequence[str], single_action: bool = False, live: bool | None = None,
                 timeout: float = DEFAULT_TIMEOUT_S, on_warning: Callable[[str], None] | None = None,
                 on_note: Callable[[str], None] | None = None) -> list[Path | StreamInput]:
    """``stclip detect``'s inputs: a ``Path`` per file or folder, a ``StreamInput`` per stream, refusing in one line
    what cannot work: ``--single-action`` on a stream (it votes over a whole video and reads it twice), a live stream
    among other inputs (it never ends, so they would never start), standard input twice, and ``--live``/``--no-live``
    without a stream."""
    inputs: list[Path | StreamInput] = [
        StreamInput(text, timeout, live, on_warning, on_note) if is_stream(text) else Path(text) for text in texts
    ]
    streams = [v for v in inputs if isinstance(v, StreamInput)]
    if not streams:
        if live is not None:
            raise StclipError("--live/--no-live is about streams (URLs, webcams, -); a file's every frame is scored")
        return inputs
    if single_action:
        raise StclipError(f"--single-action votes over a whole video and reads it twice: it does not work with a "
                          f"stream ({streams[0].name})")
    if sum(v.kind == "stdin" for v in streams) > 1:
        raise StclipError("standard input (-) is given twice; it can be read once")
    endless = [v for v in streams if v.known_live]
    if endless and len(inputs) > 1:
        raise StclipError(f"{endless[0].name} is live and never ends, so the other inputs would never start: run one "
                          "stclip per live stream")
    return inputs


class _StandardInput:
    """File descriptor 0 for PyAV: ``read`` returns what has arrived (a slow pipe is not waited on for a full
    buffer), seeking works when standard input is a regular file (``< clip.mp4``), and a stop request ends it like
    the end of the data. Hand-written because a blocking read would hold Ctrl-C off until the producer writes again.
    """

    POLL_S = 0.1

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.fd = 0

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes, as soon as any are there; b"" at the end or once a stop is requested."""
        while not self.stop.is_set():
            ready, _, _ = select.select([self.fd], [], [], self.POLL_S)
            if ready:
                return os.read(self.fd, size if size > 0 else 1 << 16)
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
