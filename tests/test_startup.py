"""Start-up work removed (issue 18): what is skipped must leave the model exactly as a full build makes it."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from conftest import trained_tiny
from stclip_cli.model.clip_import import needs_transformers
from stclip_cli.model.skip_init import skipped_random_init
from stclip_cli.weights.cards import build_model, save_checkpoint


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and every buffer, persistent or not (CLIP's causal mask is not saved in a state dict)."""
    return {**dict(module.named_parameters()), **dict(module.named_buffers())}


def test_weights_file_clip_equals_its_source_buffers_included(tmp_path):
    """Built without random draws from a weights file: every parameter and buffer (the causal mask too) is the
    source model's."""
    from safetensors.torch import save_file

    from stclip_cli.model.clip_backbone import create_clip

    source = create_clip("stclip-tiny-test")
    weights = tmp_path / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(weights))
    loaded = create_clip("stclip-tiny-test", clip_weights=weights)
    want, got = _state(source), _state(loaded)
    assert want.keys() == got.keys()
    for name in want:
        assert torch.equal(want[name], got[name]), name
    assert bool(torch.isinf(got["attn_mask"]).any())  # the mask is built, not left uninitialised


def test_weights_taken_from_a_file_are_never_written_back(tmp_path):
    """The CLIP's weights are the file's tensors (assigned, read as used): merging LoRA into them in place, as an
    inference build does, changes the model, never the user's file."""
    import hashlib

    from safetensors.torch import save_file

    from stclip_cli.model.clip_backbone import create_clip

    weights = tmp_path / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in create_clip("stclip-tiny-test").state_dict().items()}, str(weights))
    before = hashlib.sha256(weights.read_bytes()).hexdigest()
    loaded = create_clip("stclip-tiny-test", clip_weights=weights)
    with torch.no_grad():
        for p in loaded.parameters():
            p.add_(1.0)
    del loaded
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == before


def test_checkpoint_model_equals_the_trained_one(tmp_path):
    """build_model with a checkpoint skips the heads' random init; its weights and logits are the trained model's."""
    card, trained = trained_tiny(3)
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, trained, card, {"step": 0})
    loaded = build_model(card, checkpoint=path)
    want, got = _state(trained.eval()), _state(loaded)
    for name in want:
        assert torch.equal(want[name], got[name]), name
    size = trained.clip.visual.image_size[0]
    frames = torch.randn(9, 3, size, size)
    args = (torch.arange(9)[None], frames[4:5], torch.randn(2, 3, size, size), torch.zeros(2, dtype=torch.long))
    with torch.inference_mode():
        text = trained.encode_text(["clap", "wave"])
        assert torch.equal(trained(trained.frame_patches(frames), *args, text), loaded(loaded.frame_patches(frames), *args, text))


def test_skipped_init_leaves_random_fills_undrawn_and_the_rest_run():
    """Inside, torch.nn.init and random fills do not touch the tensor or the generator; fills and copies still run."""
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    with skipped_random_init():
        layer = torch.nn.Linear(4, 4)
        marker = torch.full((3,), 7.0)
        torch.nn.init.normal_(marker)
        marker.uniform_()
        ones = torch.empty(2).fill_(1.0)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.equal(marker, torch.full((3,), 7.0)) and torch.equal(ones, torch.ones(2))
    assert layer.weight.shape == (4, 4)
    with skipped_random_init(enabled=False):
        torch.nn.init.normal_(marker)
    assert not torch.equal(marker, torch.full((3,), 7.0))


@pytest.mark.parametrize("backbone, needed", [
    ("ViT-B-16", False), ("ViT-L-14", False), ("stclip-tiny-test", False),
    ("xlm-roberta-base-ViT-B-32", True), ("coca_ViT-B-32", True), ("hf-hub:org/model", True), ("no-such-model", True),
])
def test_which_backbones_need_transformers(backbone, needed):
    assert needs_transformers(backbone) is needed


@pytest.mark.parametrize("backbone, unneeded", [
    ("ViT-B-16", ["transformers", "timm"]), ("convnext_base", ["transformers"]), ("coca_ViT-B-32", ["timm"]),
    ("hf-hub:org/model", []),
])
def test_which_optional_libraries_a_backbone_can_skip(backbone, unneeded):
    from stclip_cli.model.clip_import import unneeded_libraries

    assert unneeded_libraries(backbone) == unneeded


def test_open_clip_imports_without_transformers_and_timm_for_a_plain_clip():
    """A fresh process: open_clip for ViT-B-16 leaves transformers and timm unimported; both can be imported after."""
    code = ("import sys; from stclip_cli.model.clip_import import import_open_clip; m = import_open_clip('ViT-B-16');"
            "assert m.create_model and not {'transformers', 'timm'} & set(sys.modules), 'imported';"
            "import transformers, timm; print('ok', transformers.__name__, timm.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok transformers timm", out.stderr[-2000:]


def test_skipped_init_never_runs_trunc_normal_on_untouched_memory():
    """trunc_normal_ redraws until every value is in range: on memory no fill touched (here: out of range on
    purpose) it would loop for ever; inside the block it returns at once (it hung a ViT-B/16 build)."""
    weight = torch.full((64, 64), 1e6)
    with skipped_random_init():
        torch.nn.init.trunc_normal_(weight, std=0.02)
        layer = torch.nn.Linear(8, 8)
        torch.nn.init.trunc_normal_(layer.weight, std=0.02)
    assert torch.equal(weight, torch.full((64, 64), 1e6))
    assert torch.nn.init.trunc_normal_ is not None and torch.nn.init.trunc_normal_.__name__ == "trunc_normal_"


def test_text_features_cut_after_the_end_token_equal_open_clips():
    """encode_text runs only up to the longest name's end token; the features are open_clip's full-context ones."""
    from stclip_cli.model.clip_backbone import clip_tokenizer, create_clip, encode_text

    clip = create_clip("stclip-tiny-test")
    tokens = clip_tokenizer("stclip-tiny-test")(["clap", "brush teeth", "ride a horse slowly", "x"])
    with torch.no_grad():
        full, short = clip.encode_text(tokens), encode_text(clip, tokens)
    assert full.shape == short.shape
    torch.testing.assert_close(short, full, rtol=1e-5, atol=1e-5)  # float sums over fewer (masked) keys
