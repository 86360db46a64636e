"""Would ONNX Runtime or OpenVINO make ST-CLIP's CPU path faster than torch at the same precision?

ViT-B/16, random weights. "tower": pooled_features of one batch of 3 images (keyframe + 2 person crops). "scorer":
the whole forward model(patches, windows, keyframes, crops, person_frame, text), 1 keyframe, 2 persons, T=9, 6 actions
(model_speed.make_inputs). Rows: fp32 - torch eager | ONNX Runtime CPU (all graph optimizations, 2 intra-op threads)
| OpenVINO CPU, INFERENCE_PRECISION_HINT f32 (its default here would be bf16); int8 - torch quantize_int8 (--int8) |
ONNX Runtime quant_pre_process + quantize_dynamic, QInt8 and QUInt8 weights | OpenVINO: NNCF compress_weights
INT8_SYM (per-channel int8 weights) run with the CPU plugin's dynamic int8 quantization of activations
(DYNAMIC_QUANTIZATION_GROUP_SIZE, default 32); bf16, an extra, not fp32's precision - torch CPU autocast | OpenVINO.

Export: torch.onnx.export's TorchScript exporter (dynamo=False), nn.MultiheadAttention's fast path off (no ONNX form),
the persons' layout computed beforehand (torch.bincount has no ONNX form), fixed shapes baked in; the dynamo exporter
fails on the scorer's data-dependent bool() checks. OpenVINO reads the same ONNX file. Rows are timed interleaved (the
CPU may be shared): min of --repeats after warm-up. "x torch": speed-up over torch at the same precision. One-time:
export + quantization + session/compile seconds; MB: the file the runtime loads (torch: its state dict). Drift: max
|difference| from torch fp32 on --drift-inputs random inputs (features; for the scorer logits, softmax probabilities,
argmax agreement), and on the golden reference's tiny model when ../shared is present. Rows of a runtime that is not
installed are skipped (onnx, onnxruntime, openvino, nncf are not project dependencies).

    python benchmarks/runtimes.py [--cases tower,scorer] [--repeats 7] [--drift-inputs 3]

Prints a table and writes benchmarks/results/runtimes-cpu.json.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import logging
import platform
import tempfile
import time
import warnings
from pathlib import Path
from unittest import mock

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from stclip_cli.model.clip_backbone import pooled_features
from stclip_cli.model.interaction import PersonLayout

from model_speed import ACTIONS, make_inputs  # benchmarks/, this script's folder

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT.parent / "shared" / "golden" / "reference_forward_tiny.pt"
HAVE = {name: importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime", "openvino", "nncf")}


class Case(nn.Module):
    """What is timed and exported: the tower (pooled_features of images) or the scorer (the model's forward with the
    integer inputs windows and person_frame fixed, the float ones as arguments)."""

    def __init__(self, model, case: str, windows, person_frame) -> None:
        super().__init__()
        self.m, self.case, self.windows, self.person_frame = model, case, windows, person_frame

    def forward(self, *args):
        if self.case == "tower":
            return pooled_features(self.m.clip.visual, *args)
        return self.m(args[0], self.windows, args[1], args[2], self.person_frame, args[3])


def case_inputs(model, case: str, seed: int, text=None):
    """(wrapper arguments, windows, person_frame) for one random input of ``case``."""
    torch.manual_seed(seed)
    frames, windows, keyframes, crops, person_frame = make_inputs(model, 1, 2, torch.device("cpu"))
    if case == "tower":
        return (torch.cat([keyframes, crops]),), windows, person_frame
    with torch.inference_mode():
        text = model.encode_text(ACTIONS) if text is None else text
        return (model.frame_patches(frames), keyframes, crops, text), windows, person_frame


def export_onnx(module: nn.Module, args, path: Path) -> float:
    """TorchScript-exported ONNX of ``module`` at the shapes of ``args``; returns the seconds it took."""
    start = time.perf_counter()
    layout = PersonLayout(module.person_frame, 1)
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), warnings.catch_warnings(), mock.patch("stclip_cli.model.stclip.PersonLayout", lambda *a: layout):
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, str(path), dynamo=False, opset_version=17,
                              input_names=[f"in{i}" for i in range(len(args))], output_names=["out"])
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
    return time.perf_counter() - start


def torch_row(module: nn.Module, bf16: bool = False):
    def run(args):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return module(*args).float()
    return run


def state_dict_bytes(module: nn.Module, tmp: Path) -> int:
    """Bytes of the module's state dict on disk: the image tower, and for the scorer the ST-CLIP modules too."""
    keep = ("m.clip.visual.",) if module.case == "tower" else ("m.clip.visual.", "m.adapter.", "m.temporal.", "m.prompting.")
    state = {k: v for k, v in module.state_dict().items() if k.startswith(keep)}
    torch.save(state, tmp / "state.pt")
    return (tmp / "state.pt").stat().st_size


def ort_row(path: Path, weight_type: str | None, tmp: Path):
    import onnxruntime as ort

    start = time.perf_counter()
    if weight_type:
        from onnxruntime.quantization import QuantType, quant_pre_process, quantize_dynamic

        # pre-processing removes the Identity nodes by which the exporter shares the ViT's weights between the tower
        # and the interaction pass: without it quantize_dynamic leaves those matrix products (36 of ViT-B's) in fp32
        prepared, quantized = tmp / f"{path.stem}-pre.onnx", tmp / f"{path.stem}-{weight_type}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quant_pre_process(path, prepared, skip_symbolic_shape=True)
            quantize_dynamic(prepared, quantized, weight_type=getattr(QuantType, weight_type))
        path = quantized
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads, options.inter_op_num_threads = 2, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def run(args):
        return torch.from_numpy(session.run(None, {n: a.numpy() for n, a in zip(names, args)})[0])
    return run, time.perf_counter() - start, path.stat().st_size


def ov_row(path: Path, precision: str, int8: bool, tmp: Path):
    import openvino as ov

    start = time.perf_counter()
    core = ov.Core()
    model, size = core.read_model(str(path)), path.stat().st_size
    if int8:
        import nncf

        model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_SYM)
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY",
                                                 "INFERENCE_NUM_THREADS": 2})
    seconds = time.perf_counter() - start
    if int8:
        ov.save_model(model, tmp / "ov-int8.xml", compress_to_fp16=False)
        size = sum((tmp / f"ov-int8.{ext}").stat().st_size for ext in ("xml", "bin"))

    def run(args):
        return torch.from_numpy(compiled([a.numpy() for a in args])[0].copy())
    return run, seconds, size


def variants(model, case: str, args, windows, person_frame, tmp: Path, notes: list[str]) -> list[dict]:
    """Every runnable row of ``case``: name, precision, run(args) -> output, one-time seconds, bytes on disk."""
    from stclip_cli.model.int8 import quantize_int8

    fp32 = Case(model, case, windows, person_frame).eval()
    start = time.perf_counter()
    int8 = Case(quantize_int8(copy.deepcopy(model)), case, windows, person_frame).eval()
    rows = [dict(runtime="torch", precision="fp32", run=torch_row(fp32), prep_s=0.0, bytes=state_dict_bytes(fp32, tmp)),
            dict(runtime="torch", precision="int8", run=torch_row(int8), prep_s=time.perf_counter() - start,
                 bytes=state_dict_bytes(int8, tmp)),
            dict(runtime="torch autocast", precision="bf16", run=torch_row(fp32, bf16=True), prep_s=0.0, bytes=None)]
    path = tmp / f"{case}.onnx"
    specs = [("onnxruntime", "fp32", ("onnxruntime",), lambda: ort_row(path, None, tmp)),
             ("onnxruntime QInt8", "int8", ("onnxruntime",), lambda: ort_row(path, "QInt8", tmp)),
             ("onnxruntime QUInt8", "int8", ("onnxruntime",), lambda: ort_row(path, "QUInt8", tmp)),
             ("openvino", "fp32", ("openvino",), lambda: ov_row(path, "f32", False, tmp)),
             ("openvino", "bf16", ("openvino",), lambda: ov_row(path, "bf16", False, tmp)),
             ("openvino int8-w + dyn-q", "int8", ("openvino", "nncf"), lambda: ov_row(path, "f32", True, tmp))]
    missing = sorted({name for spec in specs for name in ("onnx", *spec[2]) if not HAVE[name]})
    if missing:
        notes.append(f"not installed: {', '.join(missing)}; the rows that need them are skipped")
    specs = [spec for spec in specs if HAVE["onnx"] and all(HAVE[name] for name in spec[2])]
    export_s = export_onnx(fp32, args, path) if specs else 0.0
    for runtime, precision, _, make in specs:
        run, seconds, size = make()
        rows.append(dict(runtime=runtime, precision=precision, run=run, prep_s=export_s + seconds, bytes=size))
    return rows


def drift(reference: list[torch.Tensor], outputs: list[torch.Tensor], case: str) -> dict:
    """max |d output| (and for logits: max |d probability| and argmax agreement) against the torch fp32 outputs."""
    result = {"max_abs_out": max(float((a - b).abs().max()) for a, b in zip(reference, outputs))}
    if case == "scorer":
        result["max_abs_prob"] = max(float((a.softmax(-1) - b.softmax(-1)).abs().max()) for a, b in zip(reference, outputs))
        agree = sum(int((a.argmax(-1) == b.argmax(-1)).sum()) for a, b in zip(reference, outputs))
        result["argmax_agreement"] = agree / sum(a.shape[0] for a in reference)
    return result


def golden_drift(tmp: Path, notes: list[str]) -> dict | None:
    """Every scorer row's drift from torch fp32 on the golden reference's tiny model and inputs (None without it)."""
    if not GOLDEN.is_file():
        return None
    import open_clip

    from stclip_cli.model.lora import fold_adapters
    from stclip_cli.weights.cards import ModelCard, build_model
    from stclip_cli.weights.reference import load_reference_weights, read_reference

    golden = torch.load(GOLDEN, map_location="cpu", weights_only=True)
    (tmp / "stclip-golden-tiny.json").write_text(golden["open_clip_config"])
    open_clip.add_model_config(tmp)
    model = build_model(ModelCard(name="golden", kind="stclip", backbone="stclip-golden-tiny", pretrained=None))
    load_reference_weights(model, read_reference(GOLDEN), include_clip=True)
    fold_adapters(model.eval())
    frames, crops = golden["frames"], golden["crops"]
    with torch.inference_mode():
        args = (model.frame_patches(frames), frames[4:5], crops, model.encode_text(golden["actions"]))
    rows = variants(model, "scorer", args, torch.arange(9)[None], torch.zeros(len(crops), dtype=torch.long), tmp, notes)
    reference = [rows[0]["run"](args)]
    return {f"{r['runtime']} {r['precision']}": drift(reference, [r["run"](args)], "scorer") for r in rows[1:]}


def measure(model, case: str, repeats: int, n_drift: int, tmp: Path, notes: list[str]) -> list[dict]:
    """Every row of ``case`` with its drift on ``n_drift`` random inputs and its min time of interleaved ``repeats``."""
    example, windows, person_frame = case_inputs(model, case, 0)
    found = variants(model, case, example, windows, person_frame, tmp, notes)
    text = example[3] if case == "scorer" else None
    drift_inputs = [case_inputs(model, case, seed, text)[0] for seed in range(1, 1 + n_drift)]
    reference = [found[0]["run"](a) for a in drift_inputs]
    for row in found:  # the drift inputs and one more call are every row's warm-up
        row["drift"], row["times"] = drift(reference, [row["run"](a) for a in drift_inputs], case), []
        row["run"](example)
    for _ in range(repeats):  # interleaved: each repeat calls every row once
        for row in found:
            start = time.perf_counter()
            row["run"](example)
            row["times"].append(time.perf_counter() - start)
    for row in found:
        row["s_per_call"] = min(row.pop("times"))
        base = next(r for r in found if r["runtime"].startswith("torch") and r["precision"] == row["precision"])
        row["x_torch"], row["x_torch_fp32"] = base["s_per_call"] / row["s_per_call"], found[0]["s_per_call"] / row["s_per_call"]
        del row["run"]
    return [{"case": case, **row} for row in found]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="tower,scorer")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--drift-inputs", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.ERROR)  # onnxruntime.quantization's advice to pre-process
    if HAVE["nncf"]:
        __import__("nncf").set_log_level(logging.ERROR)  # its per-model bit-width statistics
    from stclip_cli.weights.cards import build_model, load_card

    torch.manual_seed(0)
    model = build_model(load_card("stclip-vitb16").replace(pretrained="none"), inference=True).eval()
    console, notes, rows, golden = Console(width=180), [], [], None
    for case in args.cases.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            rows += measure(model, case, args.repeats, args.drift_inputs, Path(tmp), notes)
            golden = golden_drift(Path(tmp), notes) if case == "scorer" else golden
    table = Table(title=f"ST-CLIP ViT-B/16 CPU runtimes ({platform.processor() or platform.machine()}, 2 threads), "
                        f"min of {args.repeats}; drift vs torch fp32 on {args.drift_inputs} random inputs")
    for col in ("case", "runtime", "precision", "s / call", "x torch", "x torch fp32", "one-time s", "MB",
                "max |d out|", "max |d prob|", "argmax"):
        table.add_column(col, justify="right")
    for r in rows:
        d, mb = r["drift"], "-" if r["bytes"] is None else f"{r['bytes'] / 2**20:.0f}"
        table.add_row(r["case"], r["runtime"], r["precision"], f"{r['s_per_call']:.3f}", f"{r['x_torch']:.2f}x",
                      f"{r['x_torch_fp32']:.2f}x", f"{r['prep_s']:.1f}", mb, f"{d['max_abs_out']:.2e}",
                      f"{d['max_abs_prob']:.2e}" if "max_abs_prob" in d else "-",
                      f"{100 * d['argmax_agreement']:.0f}%" if "argmax_agreement" in d else "-")
    console.print(table)
    for name, d in (golden or {}).items():
        console.print(f"golden tiny model, {name} vs torch fp32: max |logit| {d['max_abs_out']:.2e}, max |prob| "
                      f"{d['max_abs_prob']:.2e}, argmax agreement {100 * d['argmax_agreement']:.0f}%", highlight=False)
    for note in dict.fromkeys(notes):
        console.print(note, highlight=False)
    versions = {name: __import__(name).__version__ for name in ("torch", *HAVE) if name == "torch" or HAVE[name]}
    out = ROOT / "benchmarks" / "results" / "runtimes-cpu.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                               "versions": versions, "repeats": args.repeats, "rows": rows, "golden_drift": golden,
                               "notes": list(dict.fromkeys(notes))}, indent=2))
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
