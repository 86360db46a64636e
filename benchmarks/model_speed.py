"""Keyframes/s of ST-CLIP ViT-B/16 (random weights) for several persons-per-frame and batch sizes.

Rows "stclip" score a batch of keyframes in one pass with cached text features and per-frame patch embeddings
(how `stclip detect` runs). Rows "reference-style" redo what the reference implementation does per keyframe:
one keyframe at a time, the action names re-encoded on every forward and the whole frame encoded once per person.
Prints a table and writes JSON (default benchmarks/results/model_speed-<device>.json).

    python benchmarks/model_speed.py [--device cuda] [--half] [--batch-sizes 1,8] [--persons 1,2,5]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from stclip_cli.weights.cards import build_model, load_card

ACTIONS = ["clap", "sit", "wave", "throw", "pullup", "catch"]


def make_inputs(model, batch: int, persons: int, device: torch.device):
    """Random preprocessed frames for ``batch`` consecutive keyframes (stride 1) and their persons' crops."""
    size = model.clip.visual.image_size[0]
    window = model.window
    frames = torch.randn(batch + window - 1, 3, size, size, device=device)
    windows = torch.arange(window, device=device)[None] + torch.arange(batch, device=device)[:, None]
    keyframes = frames[windows[:, window // 2]]
    crops = torch.randn(batch * persons, 3, size, size, device=device)
    person_frame = torch.arange(batch, device=device).repeat_interleave(persons)
    return frames, windows, keyframes, crops, person_frame


def time_batched(model, batch, persons, device, repeats, autocast) -> float:
    """Seconds per keyframe, batched path; patch embedding of the batch's frames is counted."""
    frames, windows, keyframes, crops, person_frame = make_inputs(model, batch, persons, device)
    text = model.encode_text(ACTIONS)

    def run():
        with torch.inference_mode(), autocast:
            model(model.frame_patches(frames), windows, keyframes, crops, person_frame, text)

    return seconds_per_call(run, device, repeats) / batch


def time_reference_style(model, persons, device, repeats, autocast, best: bool = False) -> float:
    """Seconds per keyframe, reference-style: one keyframe, text re-encoded, whole frame encoded once per person."""
    frames, windows, keyframes, crops, person_frame = make_inputs(model, 1, persons, device)
    tokens = model.tokenizer(ACTIONS).to(device)

    def run():
        with torch.inference_mode(), autocast:
            text = model.clip.encode_text(tokens)
            for _ in range(persons):
                model.clip.encode_image(keyframes)
            model(model.frame_patches(frames), windows, keyframes, crops, person_frame, text)

    return seconds_per_call(run, device, repeats, best)


def seconds_per_call(run, device: torch.device, repeats: int, best: bool = False) -> float:
    """One warm-up call, then the mean wall time of ``repeats`` calls (``best``: the fastest single call, for a
    shared CPU whose other work only ever slows a call down)."""
    run()
    sync(device)
    if best:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            sync(device)
            times.append(time.perf_counter() - start)
        return min(times)
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    sync(device)
    return (time.perf_counter() - start) / repeats


def sync(device: torch.device) -> None:
    """Wait for queued GPU work so timings are real."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--half", action="store_true", help="bf16 autocast (GPU)")
    parser.add_argument("--card", default="stclip-vitb16")
    parser.add_argument("--batch-sizes", default=None, help="comma separated; default 1,4 on CPU, 1,8,32 on GPU")
    parser.add_argument("--persons", default="1,2,5")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    batches = [int(b) for b in (args.batch_sizes or ("1,8,32" if gpu else "1,4")).split(",")]
    persons_list = [int(p) for p in args.persons.split(",")]
    repeats = args.repeats or (10 if gpu else 2)
    torch.manual_seed(0)
    model = build_model(load_card(args.card).replace(pretrained="none")).to(device).eval()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.half)
    rows = []
    for persons in persons_list:
        ref = time_reference_style(model, persons, device, repeats, autocast)
        rows.append({"mode": "reference-style", "persons": persons, "batch": 1, "keyframes_per_s": 1 / ref, "speedup": 1.0})
        for batch in batches:
            sec = time_batched(model, batch, persons, device, repeats, autocast)
            rows.append({"mode": "stclip", "persons": persons, "batch": batch, "keyframes_per_s": 1 / sec, "speedup": ref / sec})
    name = torch.cuda.get_device_name(device) if gpu else platform.processor() or platform.machine()
    table = Table(title=f"{args.card} keyframes/s on {device.type} ({name}), {'bf16' if args.half else 'fp32'}, "
                        f"torch threads {torch.get_num_threads()}")
    for col in ("mode", "persons", "batch", "keyframes/s", "vs reference-style"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["mode"], str(r["persons"]), str(r["batch"]), f"{r['keyframes_per_s']:.2f}", f"{r['speedup']:.2f}x")
    Console().print(table)
    out = args.json or Path(__file__).parent / "results" / f"model_speed-{device.type}{'-bf16' if args.half else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"card": args.card, "device": device.type, "device_name": name, "half": args.half,
                               "torch": torch.__version__, "threads": torch.get_num_threads(), "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
