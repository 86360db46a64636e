"""Milliseconds per frame to draw boxes and labels (``FrameRenderer.draw``) for 2 and 20 persons at 340x256 and 1080p.

Every keyframe brings new scores, so labels change from frame to frame; ``--repeat-labels`` times the case of
carried frames (the same labels again, e.g. with ``--stride``), where the fitted-label cache is hit.

    python benchmarks/render_speed.py [--frames 100] [--repeat-labels]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import supervision as sv

from stclip_cli.sinks.outputs import person_label
from stclip_cli.sinks.render import FrameRenderer

ACTIONS = ["arm wrestling", "brush teeth", "climb stairs", "café au lait 💪", "a very long action name " * 4]


def detections(n: int, width: int, height: int, rng: np.random.Generator) -> sv.Detections:
    """n person boxes spread over the frame, tracked, with random action probabilities."""
    x1 = rng.uniform(0, width * 0.8, n)
    y1 = rng.uniform(0, height * 0.5, n)
    xyxy = np.stack([x1, y1, x1 + width * 0.15, y1 + height * 0.45], 1).astype(np.float32)
    scores = rng.dirichlet(np.ones(len(ACTIONS)), n).astype(np.float32)
    return sv.Detections(xyxy=xyxy, tracker_id=np.arange(n), data={"scores": scores})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--repeat-labels", action="store_true", help="same labels on every frame (carried frames)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'size':>10} {'persons':>7} {'ms/frame':>9}")
    for width, height in ((340, 256), (1920, 1080)):
        image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        renderer = FrameRenderer(width, height)
        for n in (2, 20):
            frames = [detections(n, width, height, rng) for _ in range(1 if args.repeat_labels else args.frames)]
            labels = [[person_label(d, i, ACTIONS) for i in range(n)] for d in frames]
            renderer.draw(image, frames[0], labels[0])  # warm-up: font loading, first glyphs
            start = time.perf_counter()
            for k in range(args.frames):
                renderer.draw(image, frames[k % len(frames)], labels[k % len(frames)])
            ms = (time.perf_counter() - start) / args.frames * 1000
            print(f"{width}x{height:<5} {n:>7} {ms:>9.2f}")


if __name__ == "__main__":
    main()
