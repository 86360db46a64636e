"""Where weights come from: the activation a pretrained tag needs, cached and offline CLIP weights, ST-CLIP
checkpoints from a file, an hf-hub: id or $STCLIP_CHECKPOINT. Nothing here downloads anything."""

from __future__ import annotations

import socket
import warnings

import open_clip
import open_clip.factory
import pytest
from open_clip.transformer import QuickGELU

from conftest import put_in_hub_cache
from stclip_cli.weights import sources as weights
from stclip_cli.weights.cards import build_model, list_cards, load_card
from stclip_cli.errors import StclipError
from stclip_cli.model.clip_backbone import create_clip


@pytest.fixture
def fake_tag_download(monkeypatch, tmp_path):
    """Tags resolve to a local placeholder file and open_clip's loading is skipped: the build path is real."""
    placeholder = tmp_path / "weights.bin"
    placeholder.write_bytes(b"")
    loaded = []
    monkeypatch.setattr(weights, "_tag_file", lambda backbone, tag, cfg: str(placeholder))
    monkeypatch.setattr(open_clip.factory, "load_checkpoint", lambda model, path, **kw: loaded.append(path))
    return loaded


def activations(clip) -> set[str]:
    towers = [*clip.visual.transformer.resblocks, *clip.transformer.resblocks]
    return {type(block.mlp.gelu).__name__ for block in towers}


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in list_cards() if n != "tiny-test"])
def test_every_shipped_card_builds_the_activation_its_weights_need(name, fake_tag_download):
    card = load_card(name)
    expected = bool(open_clip.get_pretrained_cfg(card.backbone, card.pretrained).get("quick_gelu"))
    assert expected, f"{name}: every shipped card uses OpenAI weights, which were trained with QuickGELU"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # open_clip's "QuickGELU mismatch" is a UserWarning
        clip = create_clip(card.backbone, card.pretrained)
    assert activations(clip) == {"QuickGELU"}
    assert fake_tag_download, "the tag's weights were loaded"
    assert tuple(clip.visual.preprocess_cfg["mean"]) == pytest.approx((0.48145466, 0.4578275, 0.40821073))


@pytest.mark.slow
def test_a_gelu_tag_builds_gelu_and_a_local_copy_follows_its_tag(fake_tag_download, tmp_path):
    clip = create_clip("ViT-B-16", "laion2b_s34b_b88k")
    assert activations(clip) == {"GELU"}
    local = tmp_path / "openai-b16.bin"
    local.write_bytes(b"")
    clip = create_clip("ViT-B-16", "openai", clip_weights=local)
    assert activations(clip) == {"QuickGELU"}
    assert fake_tag_download[-1] == str(local)


def test_tiny_test_card_uses_quick_gelu_from_its_config():
    model = build_model(load_card("tiny-test"))
    assert activations(model.clip) == {"QuickGELU"}
    assert isinstance(model.adapter.ffn[1], QuickGELU)


def test_unknown_tag_lists_the_tags():
    with pytest.raises(StclipError, match="no pretrained tag 'nope' for ViT-B-16.*openai"):
        weights.clip_source("ViT-B-16", "nope")


def test_offline_tag_is_one_line_naming_the_file_and_flag(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(StclipError) as err:
        weights.clip_source("ViT-B-16", "openai")
    message = str(err.value)
    assert "\n" not in message and "--clip-weights" in message
    assert "https://huggingface.co/timm/vit_base_patch16_clip_224.openai/resolve/main/open_clip_model.safetensors" in message


def test_unreachable_host_fails_at_once(monkeypatch):
    def refuse(address, timeout=None):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(StclipError, match="cannot be reached; download https://huggingface.co/.+ and pass --clip-weights"):
        weights.clip_source("ViT-L-14", "openai")
    with pytest.raises(StclipError, match="download https://example.org/w/ViT-X.pt and pass --clip-weights FILE"):
        weights._tag_file("ViT-X", "tag", {"url": "https://example.org/w/ViT-X.pt"})


def test_checkpoint_from_hub_cache_works_offline(monkeypatch, checkpoint):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    put_in_hub_cache("someone/stclip-jhmdb", "stclip.safetensors", checkpoint.read_bytes())
    path = weights.resolve_checkpoint("hf-hub:someone/stclip-jhmdb")
    assert open(path, "rb").read() == checkpoint.read_bytes()
    put_in_hub_cache("someone/stclip-jhmdb", "split3.safetensors", b"x")
    assert weights.resolve_checkpoint("hf-hub:someone/stclip-jhmdb/split3.safetensors").endswith("split3.safetensors")
    with pytest.raises(StclipError, match="no cached copy of the ST-CLIP checkpoint hf-hub:someone/other and HF_HUB_OFFLINE is set"):
        weights.resolve_checkpoint("hf-hub:someone/other")
    with pytest.raises(StclipError, match="not a Hub id"):
        weights.resolve_checkpoint("hf-hub:justone")


def test_checkpoint_from_environment(monkeypatch, checkpoint, tmp_path):
    assert weights.checkpoint_source(None) is None
    monkeypatch.setenv("STCLIP_CHECKPOINT", str(checkpoint))
    assert weights.checkpoint_source(None) == str(checkpoint)
    assert weights.checkpoint_source(str(checkpoint)) == str(checkpoint)
    monkeypatch.setenv("STCLIP_CHECKPOINT", str(tmp_path / "gone.safetensors"))
    with pytest.raises(StclipError, match=r"gone.safetensors \(\$STCLIP_CHECKPOINT\)"):
        weights.checkpoint_source(None)
