"""``--show``: every frame drawn in a window as its result is produced (cv2.imshow, as ultralytics shows results)."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

import cv2

from stclip_cli.errors import StclipError
from stclip_cli.sinks.outputs import person_label
from stclip_cli.records import FrameResult, ModelInfo, Sink, VideoInfo
from stclip_cli.sinks.render import FrameRenderer

QUIT_KEYS = frozenset({ord("q"), 27})  # q, Esc


def check_display() -> None:
    """Fail now, before any model loads, when no window can be opened: no display, or an OpenCV built without a
    GUI (opencv-python-headless)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise StclipError("--show needs a display ($DISPLAY and $WAYLAND_DISPLAY are not set); write the annotated "
                          "video with --video FILE instead")
    gui = re.search(r"^\s*GUI:\s*(\S+)", cv2.getBuildInformation(), re.MULTILINE)
    if gui is not None and gui.group(1).upper() == "NONE":
        raise StclipError("--show needs OpenCV with a GUI, and this one has none (opencv-python-headless); write the "
                          "annotated video with --video FILE instead")


def _quit() -> None:
    raise KeyboardInterrupt


class WindowSink(Sink):
    """Shows each frame with its boxes and top-k labels in a window; q, Esc or closing the window calls ``on_quit``
    (a stream stops there and finishes its outputs; by default it is Ctrl-C)."""

    needs_images = True

    def __init__(self, title: str, top_k: int = 2, on_quit: Callable[[], None] = _quit) -> None:
        self.title = f"stclip: {title}"
        self.top_k = top_k
        self.on_quit = on_quit
        self._open = False

    def open(self, info: VideoInfo, actions: list[str], model: ModelInfo | Mapping[str, Any] | None = None) -> None:
        """Open the window, sized to the video; ``model`` is accepted for a uniform sink interface."""
        self.actions = list(actions)
        self._renderer = FrameRenderer(info.width, info.height)
        try:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
            cv2.resizeWindow(self.title, info.width, info.height)
        except cv2.error as err:
            raise StclipError(f"--show cannot open a window ({str(err).strip().splitlines()[-1]})") from None
        self._open = True

    def write(self, result: FrameResult) -> None:
        """Draw and show one frame, and look at the keyboard."""
        if not self._open:
            return
        if result.image is None:
            raise ValueError("WindowSink needs FrameResult.image")
        det = result.detections
        labels = [person_label(det, i, self.actions, self.top_k) for i in range(len(det))]
        image = self._renderer.draw(result.image, det, labels)
        cv2.imshow(self.title, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        key = cv2.waitKey(1) & 0xFF
        if key in QUIT_KEYS or cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            self.close()
            self.on_quit()

    def close(self) -> None:
        """Close the window."""
        if self._open:
            self._open = False
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)

    def abort(self) -> None:
        """Close the window."""
        self.close()
