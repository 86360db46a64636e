"""Issue 18's table, in one run: start-up, model-only and end-to-end seconds per keyframe of ST-CLIP ViT-B/16 on
this CPU, for fp32 and each kept fast path, against the reference implementation's way of running the same model
("reference-style", model only), with peak memory and how far each fast path's scores move from fp32.

- reference-style (model only): one keyframe per forward, the action names re-encoded on every forward, the whole
  frame encoded once per person, as the reference implementation runs (method.md section 10); fp32.
- model only: one keyframe per forward through the model `stclip detect` builds (text cached, each frame
  embedded once).
- end to end: the real command in a fresh process, as a user runs it, `python -m stclip_cli detect CLIP --model
  stclip-vitb16 --checkpoint FILE --clip-weights FILE --boxes FILE --stride S --jsonl -` (the CLIP weights from a
  local file, as `--clip-weights` or a cached `--pretrained` tag give them; persons from a boxes file so the
  detector's weights do not matter): wall time over the keyframes it scored.
- start-up: when the command's first scored keyframe came out (its first JSON Lines line), less the model's own
  work for one keyframe (the model-only time): imports, building and loading the model, encoding the action
  names, opening the video and the first forward's warm-up. The fastest of --repeats runs at stride 1 stopped at
  their first keyframe; int8's first run, which builds its cache entry (weights/int8_cache.py), is its own row.
- import floor: a fresh `python -c "import torch, torchvision, open_clip, supervision, av, cv2"` (open_clip as stclip
  imports it, without transformers): the libraries the command runs on. "ours" = the command's peak RSS less
  this floor's.
- deviation: max |logit| and max |probability| differences from fp32, and argmax agreement, on random ViT-B/16
  weights (random inputs, every person of 8 keyframes) and, when ../shared is present, on the golden reference's
  weights and inputs.

Weights are random (nothing can be downloaded here); speed does not depend on their values.

    python benchmarks/speed.py [--persons 2] [--strides 8] [--paths fp32,int8] [--seconds 10]

Prints a table and writes benchmarks/results/speed-cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import av
import torch
from rich.console import Console
from rich.table import Table

from model_speed import seconds_per_call, time_reference_style  # benchmarks/, this script's folder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
SAMPLE = ROOT / "stclip_cli" / "assets" / "arm_wrestling.mp4"
GOLDEN = ROOT.parent / "shared" / "golden" / "reference_forward_tiny.pt"
ACTIONS = ["clap", "sit", "wave", "throw", "pullup", "catch"]


def random_model(card_name: str = "stclip-vitb16"):
    """The inference model of a card with random CLIP weights and random, non-zero ST-CLIP weights (LoRA included)."""
    from stclip_cli.weights.cards import build_model, load_card

    torch.manual_seed(0)
    card = load_card(card_name).replace(pretrained="none")
    model = build_model(card)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad and "rho" not in name:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.02)
    return card, model


def inference_copy(card, trained, int8: bool):
    """An inference-form model (LoRA merged) with the trained model's weights, optionally int8."""
    from stclip_cli.weights.cards import build_model, save_checkpoint
    from stclip_cli.model.int8 import quantize_int8

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.safetensors"
        save_checkpoint(path, trained, card, {"step": 0})
        model = build_model(card, checkpoint=path, inference=True)
    return quantize_int8(model) if int8 else model


def inputs(model, persons: int, seed: int = 0):
    size = model.clip.visual.image_size[0]
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(9, 3, size, size, generator=g)
    return frames, torch.arange(9)[None], frames[4:5], torch.randn(persons, 3, size, size, generator=g), torch.zeros(persons, dtype=torch.long)


def seconds(run, repeats: int) -> float:
    """The fastest of ``repeats`` calls after a warm-up (the machine may be shared: other work only slows a call)."""
    return seconds_per_call(run, torch.device("cpu"), repeats, best=True)


def model_only(model, persons: int, reference_style: bool, repeats: int) -> float:
    """Seconds per keyframe; stclip embeds one new frame per keyframe (stride 1), the reference all nine (its way
    of running the model is timed by model_speed.py's ``time_reference_style``, shared here)."""
    if reference_style:
        return time_reference_style(model, persons, torch.device("cpu"), repeats, nullcontext(), best=True)
    frames, windows, key, crops, person_frame = inputs(model, persons)
    text = model.encode_text(ACTIONS)

    def ours():
        with torch.inference_mode():
            patches = model.frame_patches(frames[8:9]).expand(9, -1, -1)
            model(patches, windows, key, crops, person_frame, text)

    return seconds(ours, repeats)


def deviation(fp32, fast, batches) -> dict:
    """max |d logits|, max |d probs| and argmax agreement of ``fast`` against ``fp32`` over ``batches`` of inputs."""
    worst_logit = worst_prob = 0.0
    agree = total = 0
    for args, text in batches:
        with torch.inference_mode():
            a = fp32(fp32.frame_patches(args[0]), *args[1:], text).float()
            b = fast(fast.frame_patches(args[0]), *args[1:], text).float()
        worst_logit = max(worst_logit, float((a - b).abs().max()))
        worst_prob = max(worst_prob, float((a.softmax(-1) - b.softmax(-1)).abs().max()))
        agree += int((a.argmax(-1) == b.argmax(-1)).sum())
        total += a.shape[0]
    return {"max_abs_logit": worst_logit, "max_abs_prob": worst_prob, "argmax_agreement": agree / max(total, 1)}


def random_batches(model, n: int = 8, persons: int = 5):
    text = model.encode_text(ACTIONS)
    return [(inputs(model, persons, seed), text) for seed in range(n)]


def golden_deviation(int8: bool) -> dict | None:
    """The fast path's deviation on the golden reference's weights and inputs (None without ../shared)."""
    if not GOLDEN.is_file():
        return None
    import open_clip

    from stclip_cli.weights.cards import ModelCard, build_model
    from stclip_cli.model.int8 import quantize_int8
    from stclip_cli.weights.reference import load_reference_weights, read_reference

    golden = torch.load(GOLDEN, map_location="cpu", weights_only=True)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "stclip-golden-tiny.json").write_text(golden["open_clip_config"])
        open_clip.add_model_config(Path(tmp))
    card = ModelCard(name="golden", kind="stclip", backbone="stclip-golden-tiny", pretrained=None)
    models = []
    for quantized in (False, int8):
        model = build_model(card)
        load_reference_weights(model, read_reference(GOLDEN), include_clip=True)
        models.append(quantize_int8(model.eval()) if quantized else model.eval())
    frames, crops = golden["frames"], golden["crops"]
    text = models[0].encode_text(golden["actions"])
    batch = ((frames, torch.arange(9)[None], frames[4:5], crops, torch.zeros(len(crops), dtype=torch.long)), text)
    return deviation(models[0], models[1], [batch])


def write_boxes(path: Path, frames: int, persons: int, width: int, height: int) -> Path:
    """COCO-results boxes (xywh): ``persons`` side-by-side person-shaped boxes on every frame."""
    step = width / persons
    rows = [{"image_id": f, "bbox": [k * step + 2, height * 0.1, step - 4, height * 0.85], "score": 0.9}
            for f in range(frames) for k in range(persons)]
    path.write_text(json.dumps(rows))
    return path


def trim(video: Path, out: Path, seconds_: float) -> Path:
    """The first ``seconds_`` of ``video`` (re-encoded), for shorter end-to-end runs."""
    with av.open(str(video)) as src, av.open(str(out), "w") as dst:
        stream = src.streams.video[0]
        rate = stream.average_rate
        ostream = dst.add_stream("libx264", rate=rate)
        ostream.width, ostream.height, ostream.pix_fmt = stream.width, stream.height, "yuv420p"
        for i, frame in enumerate(src.decode(stream)):
            if i >= round(seconds_ * float(rate)):
                break
            for packet in ostream.encode(frame.reformat(format="yuv420p")):
                dst.mux(packet)
        for packet in ostream.encode():
            dst.mux(packet)
    return out


IMPORTS = ("from stclip_cli.model.clip_import import import_open_clip; import torch, torchvision;"
           "import_open_clip('ViT-B-16'); import supervision, av, cv2")
# a child's own peak RSS: its VmHWM at exit (getrusage/wait4 would count this big process's pages at fork time)
PEAK = ("import atexit, os, re\n"
        "def _peak():\n"
        "    status = open('/proc/self/status').read()\n"
        "    open(os.environ['STCLIP_BENCH_PEAK'], 'w').write(re.search(r'VmHWM:\\s+(\\d+)', status).group(1))\n"
        "atexit.register(_peak)\n")


def child(argv: list[str], cache: Path | None = None, first_only: bool = False) -> tuple[float, float | None, int, float | None]:
    """Run a command (``cache``: its XDG cache folder; ``first_only``: stopped at its first stdout line): its wall
    seconds, when its first stdout line came (None without one), how many lines it wrote, and its own peak RSS in
    MB (None when stopped)."""
    with tempfile.TemporaryDirectory() as folder:
        peak = Path(folder) / "peak"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "STCLIP_BENCH_PEAK": str(peak),
               **({"XDG_CACHE_HOME": str(cache)} if cache else {})}
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, cwd=ROOT, env=env)
        first, lines = None, 0
        for _ in proc.stdout:
            first = first if first is not None else time.perf_counter() - start
            lines += 1
            if first_only:
                proc.kill()
                break
        status = proc.wait()
        wall = time.perf_counter() - start
        if status and not first_only:
            raise SystemExit(f"{' '.join(argv[:4])} ... failed with exit status {status}")
        return wall, first, lines, int(peak.read_text()) / 1024 if peak.is_file() else None


def end_to_end(video: Path, checkpoint: Path, clip_weights: Path, boxes: Path, stride: int, int8: bool,
               cache: Path, first_only: bool = False) -> dict:
    """The real command in a fresh process (``cache``: its cache folder; ``first_only``: stopped once the first
    keyframe is out): wall seconds, first keyframe's time, keyframes scored, peak RSS."""
    argv = [sys.executable, "-c", PEAK + "import runpy, sys; sys.argv[0] = 'stclip'; "
            "runpy.run_module('stclip_cli', run_name='__main__')", "detect", str(video), "--actions", ",".join(ACTIONS), "--model",
            "stclip-vitb16", "--checkpoint", str(checkpoint), "--clip-weights", str(clip_weights), "--boxes",
            str(boxes), "--stride", str(stride), "--jsonl", "-", "--quiet", *(["--int8"] if int8 else [])]
    wall, first, keyframes, rss = child(argv, cache, first_only)
    return {"wall_s": wall, "first_keyframe_s": first, "keyframes": keyframes, "peak_rss_mb": rss}


def import_floor(repeats: int) -> dict:
    """The fastest of ``repeats`` fresh imports of the libraries detect runs on, and their peak RSS."""
    runs = [child([sys.executable, "-c", PEAK + IMPORTS]) for _ in range(repeats)]
    return {"seconds": min(r[0] for r in runs), "peak_rss_mb": min(r[3] for r in runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--persons", default="2")
    parser.add_argument("--strides", default="8")
    parser.add_argument("--paths", default="fp32,int8", help="fp32 and/or int8")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the sample clip to run end to end")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    persons_list = [int(p) for p in args.persons.split(",")]
    strides = [int(s) for s in args.strides.split(",")]
    paths = args.paths.split(",")
    console = Console(width=160)
    card, trained = random_model()
    models = {name: inference_copy(card, trained, name == "int8") for name in {"fp32", *paths}}
    deviations = {name: {"random_vitb16": deviation(models["fp32"], models[name], random_batches(models[name])),
                         "golden": golden_deviation(name == "int8")} for name in paths if name != "fp32"}
    rows: list[dict] = []
    floor = import_floor(args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        from safetensors.torch import save_file

        from stclip_cli.weights.cards import save_checkpoint

        checkpoint = tmp_path / "vitb16-random.safetensors"
        save_checkpoint(checkpoint, trained, card, {"step": 0})
        clip_weights = tmp_path / "vitb16-clip.safetensors"
        from stclip_cli.model.clip_backbone import create_clip

        # the trained model's frozen CLIP is this seeded random one (its state dict holds LoRA names, a file does not)
        save_file({k: v.contiguous() for k, v in create_clip("ViT-B-16").state_dict().items()}, str(clip_weights))
        clip = SAMPLE if args.seconds >= 10 else trim(SAMPLE, tmp_path / "clip.mp4", args.seconds)
        with av.open(str(clip)) as container:
            frames = container.streams.video[0].frames
        for persons in persons_list:
            reference = model_only(models["fp32"], persons, True, args.repeats)
            rows.append({"path": "reference-style", "persons": persons, "stride": None, "kind": "model only",
                         "s_per_keyframe": reference, "ratio": 1.0})
            boxes = write_boxes(tmp_path / f"boxes{persons}.json", frames, persons, 340, 256)
            for name in paths:
                sec = model_only(models[name], persons, False, args.repeats)
                rows.append({"path": name, "persons": persons, "stride": None, "kind": "model only",
                             "s_per_keyframe": sec, "ratio": sec / reference})
                cache = tmp_path / "cache"
                if name == "int8":  # its first run builds the cache entry: one keyframe, start-up only
                    shutil.rmtree(cache, ignore_errors=True)
                    run = end_to_end(clip, checkpoint, clip_weights, boxes, 1, True, cache, first_only=True)
                    rows.append({"path": "int8, first run (builds its cache)", "persons": persons, "stride": None,
                                 "kind": "start-up", **run, "startup_s": run["first_keyframe_s"] - sec})
                # start-up: the fastest of ``repeats`` runs stopped at their first keyframe (a shared machine's
                # noise is +-0.5 s); stride 1, so the first keyframe waits for no frame after its window
                starts = [end_to_end(clip, checkpoint, clip_weights, boxes, 1, name == "int8", cache, first_only=True)
                          for _ in range(args.repeats)]
                startup = min(r["first_keyframe_s"] for r in starts) - sec
                for stride in strides:
                    run = end_to_end(clip, checkpoint, clip_weights, boxes, stride, name == "int8", cache)
                    per = run["wall_s"] / run["keyframes"]
                    rows.append({"path": name, "persons": persons, "stride": stride, "kind": "end to end",
                                 "clip_seconds": args.seconds, **run, "s_per_keyframe": per, "ratio": per / reference,
                                 "startup_s": startup, "startup_runs_s": [r["first_keyframe_s"] for r in starts],
                                 "ours_rss_mb": run["peak_rss_mb"] - floor["peak_rss_mb"]})
                    console.print(f"  {name} {persons} persons stride {stride}: {run['wall_s']:.1f} s for "
                                  f"{run['keyframes']} keyframes, first at {run['first_keyframe_s']:.2f} s", highlight=False)
    table = Table(title=f"ST-CLIP ViT-B/16 on CPU ({platform.processor() or platform.machine()}), torch threads "
                        f"{torch.get_num_threads()}, 6 actions, T=9; seconds per keyframe")
    for col in ("path", "persons", "stride", "measured", "s / keyframe", "vs reference-style model-only",
                "start-up above model work", "peak RSS (ours)"):
        table.add_column(col, justify="right")
    for r in rows:
        run = "startup_s" in r
        end = r["kind"] == "end to end"
        kind = r["kind"] + (f" ({r['clip_seconds']:g} s clip, {r['keyframes']} keyframes)" if end else "")
        table.add_row(r["path"], str(r["persons"]), "-" if r["stride"] is None else str(r["stride"]), kind,
                      f"{r['s_per_keyframe']:.3f}" if "s_per_keyframe" in r else "",
                      f"{r['ratio']:.2f}x" if "ratio" in r else "", f"{r['startup_s']:.2f} s" if run else "",
                      f"{r['peak_rss_mb'] / 1024:.2f} GB ({r['ours_rss_mb'] / 1024:.2f})" if end else "")
    table.add_row("import floor", "", "", "torch, torchvision, open_clip, supervision, av, cv2", "", "",
                  f"{floor['seconds']:.2f} s", f"{floor['peak_rss_mb'] / 1024:.2f} GB")
    console.print(table)
    for name, dev in deviations.items():
        for where, d in dev.items():
            if d is not None:
                console.print(f"{name} vs fp32 on {where}: max |logit| {d['max_abs_logit']:.2e}, max |prob| "
                              f"{d['max_abs_prob']:.2e}, argmax agreement {100 * d['argmax_agreement']:.1f}%", highlight=False)
    out = ROOT / "benchmarks" / "results" / "speed-cpu.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                               "torch": torch.__version__, "rows": rows, "import_floor": floor,
                               "deviation": deviations}, indent=2))
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
