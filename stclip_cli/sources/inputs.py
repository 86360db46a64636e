"""What an input names: a file or folder (a ``Path``) or a stream (a ``StreamInput``: a URL, a webcam, ``-`` for
standard input), and which inputs cannot work together. Light on purpose: the CLI checks inputs before any heavy
module (PyAV, OpenCV, torch) loads; sources.py opens them."""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stclip_cli.errors import StclipError

STDIN = "-"
WEBCAM = "webcam:"
DEFAULT_TIMEOUT_S = 10.0
# schemes of sources that run in real time whatever we do; http(s) is live only when it has no duration
LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "rtp", "srt", "udp", "tcp"})
# names of video files we read (a folder is searched for these); what we write: destinations.VIDEO_CONTAINERS
VIDEO_SUFFIXES = frozenset({
    ".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".wmv", ".flv",
    ".3gp", ".ogv",
})

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_VIDEO_DEVICE = re.compile(r"^/dev/video\d+$")
# user:password@ up to the LAST @ before the path: a password may itself hold an @ (user:p@ss@host)
_CREDENTIALS = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/@:]*):[^/]*@")


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


def _stderr(level: str) -> Callable[[str], None]:
    return lambda text: print(f"{level}: {text}", file=sys.stderr, flush=True)


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
