"""Peak memory of `stclip detect` against the input's resolution: it should follow what scoring needs, not the frame.

Each row runs the real command (``python -m stclip_cli detect``) in its own process on a generated video of the
given size, with a boxes file (two persons per frame) so the detector's weights are not needed, and reads that
process's own peak RSS (``os.wait4``). The tiny randomly initialised card isolates the pipeline's buffers from the
CLIP's weights; ``--card stclip-vitb16`` adds a random ViT-B/16 (its ~0.6 GB of weights are on top).

    python benchmarks/detect_memory.py [--frames 20] [--card tiny-test] [--sizes 340x256,1920x1080,4000x3000]

Prints a table and writes benchmarks/results/detect_memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def make_video(path: Path, frames: int, width: int, height: int) -> Path:
    """A noisy video (so the encoder cannot make it trivially small) at the given size, 25 fps."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    image = np.ascontiguousarray(np.repeat(np.repeat(base, 8, 0), 8, 1)[:height, :width])
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for i in range(frames):
            frame = np.roll(image, 4 * i, axis=1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_checkpoint(folder: Path, card_name: str) -> Path:
    """A random-weight checkpoint of the card (nothing can be downloaded here)."""
    import torch

    from stclip_cli.weights.cards import build_model, load_card, save_checkpoint

    torch.manual_seed(0)
    card = load_card(card_name).replace(pretrained="none")
    path = folder / f"{card_name}.safetensors"
    save_checkpoint(path, build_model(card), card, {"step": 0})
    return path


def peak_rss_mb(argv: list[str]) -> tuple[float, float, int]:
    """Run a command; its own peak resident memory (MB), wall seconds and exit status."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        sys.stderr.write(proc.stderr.read().decode(errors="replace"))
    return usage.ru_maxrss / 1024, time.perf_counter() - started, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--card", default="tiny-test")
    parser.add_argument("--sizes", default="340x256,1920x1080,4000x3000")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        checkpoint = make_checkpoint(folder, args.card)
        for size in args.sizes.split(","):
            width, height = map(int, size.split("x"))
            video = make_video(folder / f"v{size}.mp4", args.frames, width, height)
            boxes = folder / f"boxes{size}.json"
            per_frame = [[0.1, 0.1, 0.45, 0.95], [0.5, 0.05, 0.9, 0.9]]
            boxes.write_text(json.dumps([
                {"image_id": f, "bbox": [x1 * width, y1 * height, (x2 - x1) * width, (y2 - y1) * height], "score": 0.9}
                for f in range(args.frames) for x1, y1, x2, y2 in per_frame
            ]))
            for stride, video_out in ((1, False), (8, False), (8, True)):
                argv = [sys.executable, "-m", "stclip_cli", "detect", str(video), "--actions", "clap,wave,sit",
                        "--model", args.card, "--checkpoint", str(checkpoint), "--boxes", str(boxes), "--quiet",
                        "--stride", str(stride), "--json", str(folder / "out.json")]
                if video_out:
                    argv += ["--video", str(folder / "out.mp4")]
                rss, seconds, status = peak_rss_mb(argv)
                rows.append({"size": size, "frames": args.frames, "stride": stride, "video_output": video_out,
                             "peak_rss_mb": round(rss, 1), "seconds": round(seconds, 2), "exit": status})
                print(f"{size:>10}  stride {stride}  {'json+video' if video_out else 'json      '}  "
                      f"peak RSS {rss:7.1f} MB  {seconds:6.1f} s" + ("" if status == 0 else f"  exit {status}"), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "detect_memory.json"
    out.write_text(json.dumps({"card": args.card, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
