"""End-to-end `stclip detect` speed and peak memory, split into decode / detect / score / render time.

Runs the real pipeline (PyAV decode, ultralytics YOLO, ST-CLIP scorer, JSON + annotated-video sinks) on a generated
video and on the shared sample clip. Model weights are random (nothing can be downloaded here): the YOLO is built
from its yaml with a near-zero confidence threshold and its top ``--persons`` boxes per frame stand in for the
persons, so the scorer sees a realistic handful of them. Each video runs in its own process so peak RSS is per video; a 10 s
and a 60 s version of the generated video show that memory does not grow with length.

    python benchmarks/detect_speed.py [--device cuda] [--half] [--card stclip-vitb16] [--stride 4]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT.parent / "shared" / "samples" / "arm_wrestling.mp4"


def make_video(path: Path, seconds: float, size=(640, 360), fps: int = 25) -> Path:
    """A synthetic video: textured background and three moving person-sized boxes."""
    rng = np.random.default_rng(0)
    background = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(int(seconds * fps)):
            image = background.copy()
            for k in range(3):
                x = (40 + 150 * k + 3 * i) % (size[0] - 80)
                image[60:300, x : x + 80] = (200 - 60 * k, 80 + 50 * k, 120)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def run_one(video: Path, args: argparse.Namespace) -> dict:
    """Child process: run the pipeline on one video with timers around each stage."""
    import torch

    from stclip_cli.weights.cards import build_model, load_card
    from stclip_cli.core.detection import YoloPersonDetector
    from stclip_cli.sinks.outputs import JsonSink, VideoSink
    from stclip_cli.records import ModelInfo
    from stclip_cli.core.predictor import DetectOptions, Predictor
    from stclip_cli.core.scoring import Scorer
    from stclip_cli.core import predictor as predictor_module

    timers = {"decode": 0.0, "detect": 0.0, "score": 0.0, "render": 0.0}

    def timed(name, fn):
        def wrapper(*a, **k):
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                timers[name] += time.perf_counter() - start
        return wrapper

    def timed_iter(name, iterable):
        iterator = iter(iterable)
        while True:
            start = time.perf_counter()
            try:
                item = next(iterator)
            except StopIteration:
                return
            finally:
                timers[name] += time.perf_counter() - start
            yield item

    torch.manual_seed(0)
    card = load_card(args.card).replace(pretrained="none")
    model = build_model(card).to(args.device)
    scorer = Scorer(model, ["clap", "sit", "wave", "throw", "pullup", "catch"], half=args.half)
    scorer.score = timed("score", scorer.score)
    detector = YoloPersonDetector("yolo11n.yaml", conf=1e-6, device=args.device, half=args.half)
    detect = detector.detect

    def top_boxes(images, indices=None):
        return [d[np.argsort(-d.confidence)[: args.persons]] for d in detect(images, indices)]

    detector.detect = timed("detect", top_boxes)
    original_open = predictor_module.open_source

    class TimedSource:
        def __init__(self, source):
            self.source, self.info, self.live = source, source.info, source.live

        def __iter__(self):
            return timed_iter("decode", self.source)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.source.close()

    predictor_module.open_source = lambda p, fps=None: TimedSource(original_open(p, fps))
    out = Path(tempfile.mkdtemp())
    sinks = [JsonSink(out / "out.json"), VideoSink(out / "out.mp4")]
    for sink in sinks:
        sink.write = timed("render", sink.write)
    predictor = Predictor(detector, scorer, DetectOptions(stride=args.stride, batch_size=args.batch_size))
    start = time.perf_counter()
    summary = predictor.run(video, sinks, ModelInfo(card.name, card.backbone, None, "softmax"))
    total = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if args.device.startswith("cuda") else None
    return {"video": video.name, "frames": summary.frames, "keyframes": summary.keyframes, "persons": summary.persons,
            "seconds": total, "frames_per_s": summary.frames / total, **{f"{k}_s": v for k, v in timers.items()},
            "peak_rss_mb": peak_mb, "peak_gpu_mb": gpu_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--half", action="store_true")
    parser.add_argument("--card", default="stclip-vitb16")
    parser.add_argument("--stride", type=int, default=None, help="default 1 on GPU, 8 on CPU")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--persons", type=int, default=3, help="boxes kept per frame from the random detector")
    parser.add_argument("--seconds", default="10,60", help="lengths of the generated videos")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stride is None:
        args.stride = 1 if args.device.startswith("cuda") else 8
    if args.child is not None:
        print(json.dumps(run_one(args.child, args)))
        return
    from rich.console import Console
    from rich.table import Table

    work = Path(tempfile.mkdtemp())
    videos = [make_video(work / f"generated_{s}s.mp4", float(s)) for s in args.seconds.split(",")]
    if SAMPLE.is_file():
        videos.append(SAMPLE)
    rows = []
    for video in videos:
        cmd = [sys.executable, __file__, "--child", str(video), "--device", args.device, "--card", args.card,
               "--stride", str(args.stride), "--batch-size", str(args.batch_size), "--persons", str(args.persons)]
        if args.half:
            cmd.append("--half")
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    table = Table(title=f"stclip detect end to end: {args.card} on {args.device}{' bf16' if args.half else ''}, "
                        f"stride {args.stride}, batch {args.batch_size}")
    for col in ("video", "frames", "keyframes", "persons", "frames/s", "decode s", "detect s", "score s", "render s",
                "peak RSS MB", "peak GPU MB"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["video"], str(r["frames"]), str(r["keyframes"]), str(r["persons"]), f"{r['frames_per_s']:.2f}",
                      f"{r['decode_s']:.1f}", f"{r['detect_s']:.1f}", f"{r['score_s']:.1f}", f"{r['render_s']:.1f}",
                      f"{r['peak_rss_mb']:.0f}", "-" if r["peak_gpu_mb"] is None else f"{r['peak_gpu_mb']:.0f}")
    Console().print(table)
    out = args.json or Path(__file__).parent / "results" / f"detect_speed-{args.device.split(':')[0]}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"card": args.card, "device": args.device, "half": args.half, "stride": args.stride,
                               "batch_size": args.batch_size, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
