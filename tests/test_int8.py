"""The int8 CPU path: its attention rebuild equals nn.MultiheadAttention, and int8 stays close to fp32 (the golden
reference weights and the tiny card), end to end through `stclip detect --int8`."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from stclip_cli.weights.cards import build_model, load_card
from stclip_cli.cli import app
from stclip_cli.model.int8 import SelfAttention, quantize_int8
from conftest import boxes_file

runner = CliRunner()


@pytest.mark.parametrize("batch_first", [True, False])
def test_self_attention_equals_multihead_attention(batch_first):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(64, 4, batch_first=batch_first).eval()
    ours = SelfAttention(mha).eval()
    x = torch.randn(3, 7, 64) if batch_first else torch.randn(7, 3, 64)
    pad = torch.zeros(3, 7, dtype=torch.bool)
    pad[1, 5:] = True
    causal = torch.full((7, 7), float("-inf")).triu(1)
    with torch.no_grad():
        for kwargs in ({"need_weights": False}, {"need_weights": True, "key_padding_mask": pad},
                       {"need_weights": False, "attn_mask": causal}, {"need_weights": True, "attn_mask": causal.isinf()}):
            expected, expected_weights = mha(x, x, x, **kwargs)
            got, weights = ours(x, x, x, **kwargs)
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
            if kwargs["need_weights"]:
                torch.testing.assert_close(weights, expected_weights, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="self-attention only"):
        ours(x, x.clone(), x)


def test_int8_stays_close_to_fp32_and_leaves_the_text_tower_alone():
    torch.manual_seed(0)
    card = load_card("tiny-test")
    fp32 = build_model(card, inference=True)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in fp32.named_parameters():
            if name.startswith(("adapter", "temporal", "prompting")) and "rho" not in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    int8 = build_model(card, inference=True)
    int8.load_state_dict(fp32.state_dict())
    text = fp32.encode_text(["clap", "sit", "wave"])
    quantize_int8(int8)
    from torch.ao.nn.quantized.dynamic import Linear as Int8Linear

    image_side = [*int8.clip.visual.modules(), *int8.adapter.modules(), *int8.temporal.modules(), *int8.prompting.modules()]
    assert sum(isinstance(m, Int8Linear) for m in image_side) > 20
    assert not any(type(m) in (nn.Linear, nn.MultiheadAttention) for m in image_side)
    torch.testing.assert_close(int8.encode_text(["clap", "sit", "wave"]), text)
    frames = torch.randn(12, 3, 64, 64, generator=g)
    inputs = (torch.arange(9)[None].expand(2, 9) + torch.tensor([[0], [3]]), frames[[4, 7]],
              torch.randn(3, 3, 64, 64, generator=g), torch.tensor([0, 0, 1]))
    with torch.inference_mode():
        a = fp32(fp32.frame_patches(frames), *inputs, text)
        b = int8(int8.frame_patches(frames), *inputs, text)
    assert (a.softmax(-1) - b.softmax(-1)).abs().max() < 0.02
    assert torch.equal(a.argmax(-1), b.argmax(-1))


def test_detect_int8_end_to_end(tmp_path, make_video, checkpoint):
    video = make_video(tmp_path, n_frames=6)
    boxes = boxes_file(tmp_path, 6)
    common = ["detect", str(video), "--actions", "clap,sit,wave", "--model", "tiny-test", "--checkpoint", str(checkpoint),
              "--boxes", str(boxes), "--quiet"]
    outs = {}
    for name, extra in (("fp32", []), ("int8", ["--int8"])):
        outs[name] = tmp_path / f"{name}.json"
        result = runner.invoke(app, [*common, *extra, "--json", str(outs[name])])
        assert result.exit_code == 0, result.output
    fp32, int8 = (json.loads(outs[k].read_text()) for k in ("fp32", "int8"))
    assert (fp32["model"]["precision"], int8["model"]["precision"]) == ("fp32", "int8")
    for a, b in zip(fp32["frames"], int8["frames"]):
        for pa, pb in zip(a["persons"], b["persons"]):
            assert max(abs(pa["scores"][k] - pb["scores"][k]) for k in pa["scores"]) < 0.02
    for extra, message in ((["--int8", "--half"], "--int8 is the CPU path"), (["--int8", "--device", "cuda"], "--int8 is the CPU path")):
        result = runner.invoke(app, [*common, *extra])
        assert result.exit_code == 1 and message in result.output


def test_int8_layers_are_torchs_quantize_dynamic_ones():
    """quantize_int8 packs each weight once; the modules compute exactly what torch's quantize_dynamic makes."""
    import copy
    import warnings

    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    from torch.ao.quantization import quantize_dynamic

    from stclip_cli.model.int8 import dynamic_int8_linear

    torch.manual_seed(0)
    block = torch.nn.Sequential(torch.nn.Linear(48, 96), torch.nn.GELU(), torch.nn.Linear(96, 40, bias=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = quantize_dynamic(copy.deepcopy(block), {torch.nn.Linear}, dtype=torch.qint8)
    ours = torch.nn.Sequential(dynamic_int8_linear(block[0]), block[1], dynamic_int8_linear(block[2]))
    assert all(isinstance(m, DynamicLinear) for m in (ours[0], ours[2]))
    assert (ours[0].in_features, ours[0].out_features, ours[2].bias()) == (48, 96, None)
    x = torch.randn(7, 48) * 3
    assert torch.equal(ours(x), reference(x))
    assert torch.equal(ours[0].weight().int_repr(), reference[0].weight().int_repr())
