"""The GPU path: the golden forward in fp32 on CUDA, the bf16 batched path close to fp32, and `stclip detect --device
cuda --half` end to end. Skipped where torch sees no CUDA device (CI, most laptops)."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from stclip_cli.weights.cards import build_model, load_card
from stclip_cli.cli import app
from stclip_cli.core.scoring import KeyframeRequest, Scorer
from conftest import boxes_file

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
ACTIONS = ["clap", "sit", "wave", "throw", "pullup", "catch"]


def test_golden_forward_on_cuda():
    import tempfile
    from pathlib import Path

    import open_clip

    from stclip_cli.weights.reference import load_reference_weights, read_reference
    from conftest import GOLDEN, golden_card

    if not GOLDEN.is_file():
        pytest.skip("no golden file")
    golden = torch.load(GOLDEN, map_location="cpu", weights_only=True)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "stclip-golden-tiny.json").write_text(golden["open_clip_config"])
        open_clip.add_model_config(Path(tmp))
    model = build_model(golden_card())
    load_reference_weights(model, read_reference(GOLDEN), include_clip=True)
    model = model.cuda().eval()
    frames, crops = golden["frames"].cuda(), golden["crops"].cuda()
    with torch.inference_mode():
        text = model.encode_text(golden["actions"])
        out = model.stages(model.frame_patches(frames), torch.arange(9, device="cuda")[None], frames[4:5], crops,
                           torch.zeros(len(crops), dtype=torch.long, device="cuda"), text)
    torch.testing.assert_close(out["logits"].cpu(), golden["logits"], atol=1e-4, rtol=0)


def test_bf16_batched_scores_are_close_to_fp32():
    torch.manual_seed(0)
    model = build_model(load_card("tiny-test"), inference=True).cuda()
    rng = torch.Generator().manual_seed(0)
    images = {i: (torch.rand(48, 80, 3, generator=rng) * 255).to(torch.uint8).numpy() for i in range(20)}
    requests = [KeyframeRequest(k, list(range(max(0, k - 4), max(0, k - 4) + 9)), [[5.0, 5.0, 40.0, 45.0], [30, 2, 70, 40]])
                for k in range(4, 12)]
    fp32 = Scorer(model, ACTIONS).score(images, requests)
    bf16 = Scorer(model, ACTIONS, half=True).score(images, requests)
    for a, b in zip(fp32, bf16):
        assert abs(a - b).max() < 0.02
        assert (a.argmax(-1) == b.argmax(-1)).all()


def test_detect_on_cuda_with_half(tmp_path, make_video, checkpoint):
    video = make_video(tmp_path, n_frames=12)
    boxes = boxes_file(tmp_path, 12)
    out = tmp_path / "out.json"
    result = CliRunner().invoke(app, ["detect", str(video), "--actions", ",".join(ACTIONS), "--model", "tiny-test",
                                      "--checkpoint", str(checkpoint), "--boxes", str(boxes), "--device", "cuda",
                                      "--half", "--batch-size", "8", "--json", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["model"]["precision"] == "bf16" and len(data["frames"]) == 12
