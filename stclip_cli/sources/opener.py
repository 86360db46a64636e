"""Opening what an input names: a video file or frame folder (video.py) or a stream (streams.py). The one place
that chooses between them, above both, so neither needs the other."""

from __future__ import annotations

from pathlib import Path

from stclip_cli.sources.inputs import StreamInput, is_stream
from stclip_cli.sources.streams import open_stream
from stclip_cli.sources.video import VideoSource, open_video


def open_source(path: str | Path | StreamInput, fps: float | None = None, threads: bool = True) -> VideoSource:
    """Open a video file, a folder of frames or a stream (a URL, a webcam, ``-``), failing fast with a one-line
    ``StclipError`` on bad input.

    ``fps`` applies to frame folders (default 25) and to streams whose frames carry no timestamps; a video file's
    rate comes from its container.
    """
    if isinstance(path, StreamInput) or (isinstance(path, str) and is_stream(path)):
        return open_stream(path if isinstance(path, StreamInput) else StreamInput(path), fps)
    return open_video(path, fps, threads)


def probe(spec: StreamInput) -> None:
    """Open and close a stream: a dead URL fails now, within ``spec.timeout``, before any model loads (standard input
    cannot be read twice and is not probed)."""
    if spec.kind != "stdin":
        open_stream(spec).close()
