"""Corpus throughput: the Ray engine with 1 and 2 local actors against the single-process path, on the same videos.

Generates ``--videos`` synthetic videos (three moving person-sized boxes, given as a boxes file so every run scores
the same persons), saves a checkpoint of the card with random weights (nothing is downloaded), then runs:

- single process: one Predictor built in this process, the videos one after another (torch on ``--threads``);
- Ray, 1 actor with as many CPUs as the single process has threads (the engine's overhead);
- Ray, 1 actor with 1 CPU and 2 actors with 1 CPU each (what a second actor adds).

Every run writes the per-video JSON and the Parquet rows to fresh folders. "end to end" counts from the start of
the run to its last video (model building included: in this process, or in every actor); "busy" divides by the time
the pipeline actually ran videos (the sum of per-video times, divided by the number of actors). Ray's own start-up
(once, a local cluster with ``--cpus`` CPUs) is reported separately.

    python benchmarks/corpus_speed.py [--card stclip-vitb16] [--videos 4] [--seconds 8] [--stride 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from detect_speed import make_video  # noqa: E402  (the same synthetic videos as the end-to-end benchmark)

ACTIONS = ("clap", "sit", "wave", "throw", "pullup", "catch")


def boxes_file(path: Path, frames: int, size: tuple[int, int]) -> Path:
    """COCO-results boxes of make_video's three moving boxes, every frame."""
    width, _ = size
    rows = [{"image_id": i, "bbox": [(40 + 150 * k + 3 * i) % (width - 80), 60, 80, 240], "score": 0.9 - 0.1 * k}
            for i in range(frames) for k in range(3)]
    path.write_text(json.dumps(rows))
    return path


def settings_for(card_name: str, work: Path, boxes: Path, stride: int):
    """The corpus settings of a random-weight ST-CLIP of ``card_name``, through a checkpoint as users run it."""
    import torch

    from stclip_cli.weights.cards import build_model, card_for_checkpoint, load_card, save_checkpoint
    from stclip_cli.core.detection import BoxesFile
    from stclip_cli.model.clip_backbone import register_model_configs
    from stclip_cli.pipeline import Assembly, DetectConfig

    register_model_configs()
    torch.manual_seed(0)
    card = load_card(card_name).replace(pretrained="none")
    checkpoint = work / "random.safetensors"
    save_checkpoint(checkpoint, build_model(card), card, {"step": 0})
    card = card_for_checkpoint(checkpoint).replace(pretrained="none")
    config = DetectConfig(ACTIONS, checkpoint=str(checkpoint), boxes=str(boxes), stride=stride, device="cpu")
    return Assembly(config, card, None, BoxesFile(boxes))


def run_single(settings, jobs, threads: int) -> dict:
    """The single-process path: one Predictor, the videos in turn, the same sinks."""
    from stclip_cli.corpus.engine import build_predictor
    from stclip_cli.sinks.outputs import plan_sinks
    from stclip_cli.sinks.rows import RowsSink

    start = time.perf_counter()
    pipeline = build_predictor(settings, threads)
    frames, busy = 0, 0.0
    for job in jobs:
        begin = time.perf_counter()
        sinks = [*plan_sinks({k: t for k, t in job.plan.items() if k != "parquet"}), RowsSink(job.plan["parquet"])]
        frames += pipeline.predictor.run(job.ref.path, sinks, pipeline.info).frames
        busy += time.perf_counter() - begin
    return {"frames": frames, "wall_s": time.perf_counter() - start, "busy_s": busy}


def run_ray(settings, jobs, actors: int, cpus: float) -> dict:
    """The Ray engine's pool on the running local cluster."""
    from stclip_cli.corpus.engine import run_corpus

    start = time.perf_counter()
    results = run_corpus(settings, jobs, [{}] * len(jobs), (actors, cpus, 0.0), lambda result: None)
    failed = [r for r in results if r.status != "done"]
    if failed:
        raise SystemExit(f"{failed[0].video}: {failed[0].error}")
    return {"frames": sum(r.frames for r in results), "wall_s": time.perf_counter() - start,
            "busy_s": sum(r.seconds for r in results) / actors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--card", default="tiny-test", help="model card (random weights), e.g. stclip-vitb16")
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each video (25 fps)")
    parser.add_argument("--size", default="320x180")
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster and threads of the single process")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))

    import ray
    from rich.console import Console
    from rich.table import Table

    from stclip_cli.corpus.engine import driver_output, prepare, ray_session

    work = Path(tempfile.mkdtemp(prefix="stclip-corpus-bench-"))
    folder = work / "videos"
    folder.mkdir()
    for i in range(args.videos):
        make_video(folder / f"v{i}.mp4", args.seconds, size)
    frames_per_video = round(args.seconds * 25)
    settings = settings_for(args.card, work, boxes_file(work / "boxes.json", frames_per_video, size), args.stride)

    def jobs(name: str):
        return prepare([str(folder)], {"json": f"{work}/{name}/json/"}, work / name / "rows").jobs

    runs = [("single process", f"{args.cpus} threads", lambda: run_single(settings, jobs("single"), args.cpus)),
            ("single process", "1 thread", lambda: run_single(settings, jobs("single1"), 1))]
    ray_runs = [("Ray, 1 actor", f"{args.cpus} CPUs", 1, float(args.cpus)), ("Ray, 1 actor", "1 CPU", 1, 1.0),
                ("Ray, 2 actors", "1 CPU each", 2, 1.0)]
    rows = []
    for engine, resources, run in runs:
        rows.append({"engine": engine, "resources": resources, **run()})
    ray_tmp = Path(tempfile.mkdtemp(prefix="stclip-rb-"))  # short: Ray's socket paths must stay within 107 bytes
    start = time.perf_counter()
    with driver_output(work / "_ray.log"), ray_session(None, num_cpus=args.cpus, temp_dir=str(ray_tmp)):
        ray_start = time.perf_counter() - start
        for engine, resources, actors, cpus in ray_runs:
            rows.append({"engine": engine, "resources": resources, **run_ray(settings, jobs(f"ray{actors}-{cpus:g}"), actors, cpus)})
    assert not ray.is_initialized()
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(ray_tmp, ignore_errors=True)
    for row in rows:
        row["frames_per_s"] = row["frames"] / row["wall_s"]
        row["busy_frames_per_s"] = row["frames"] / row["busy_s"]
    table = Table(title=f"corpus throughput: {args.card} (random weights) on CPU, {args.videos} videos x "
                        f"{frames_per_video} frames {args.size}, 3 persons, stride {args.stride}")
    for col in ("engine", "resources", "frames", "end-to-end s", "frames/s", "busy frames/s"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["engine"], r["resources"], str(r["frames"]), f"{r['wall_s']:.1f}", f"{r['frames_per_s']:.1f}",
                      f"{r['busy_frames_per_s']:.1f}")
    console = Console()
    console.print(table)
    console.print(f"Ray start-up (local cluster, {args.cpus} CPUs): {ray_start:.1f} s; machine: {os.cpu_count()} CPUs "
                  f"({platform.processor() or platform.machine()}), shared with other work")
    out = args.json or Path(__file__).parent / "results" / "corpus_speed-cpu.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"card": args.card, "videos": args.videos, "frames_per_video": frames_per_video,
                               "size": args.size, "stride": args.stride, "cpus": args.cpus, "ray_start_s": ray_start,
                               "machine_cpus": os.cpu_count(), "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
