"""Our forward against the reference implementation's, stage by stage, on identical weights and inputs.

../shared/golden/reference_forward_tiny.pt holds the reference ST-CLIP's weights, inputs and every stage's output for a
tiny random CLIP (README beside it); a faithful forward matches each stage to atol 1e-5 in float32. Skipped when
../shared is absent (a user's fresh clone); CI always has it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import open_clip
import pytest
import torch
from typer.testing import CliRunner

from conftest import GOLDEN, golden_card
from stclip_cli.weights.cards import build_model, read_metadata
from stclip_cli.cli import app
from stclip_cli.weights.reference import load_reference_weights, read_reference, to_stclip_names

ATOL = 1e-5
BACKBONE = "stclip-golden-tiny"
STAGES = ["text", "frame_feat", "person_token_in", "interaction", "prompted_text", "logits"]
INTERMEDIATES = ["person_pooled", "temporal_context", "context_tokens", "block_out_0", "block_out_1",
                 "text_after_layer_0", "text_after_layer_1"]


@pytest.fixture(scope="module")
def golden(tmp_path_factory) -> dict:
    if not GOLDEN.is_file():
        pytest.skip(f"{GOLDEN} not available")
    data = torch.load(GOLDEN, map_location="cpu", weights_only=True)
    folder = tmp_path_factory.mktemp("golden-config")
    (folder / f"{BACKBONE}.json").write_text(data["open_clip_config"])
    open_clip.add_model_config(folder)
    return data


@pytest.fixture(scope="module")
def ours(golden):
    model = build_model(golden_card())
    load_reference_weights(model, read_reference(GOLDEN), include_clip=True)
    return model.eval()


def run_stages(model, golden) -> dict[str, torch.Tensor]:
    frames, crops = golden["frames"], golden["crops"]
    key = golden["meta"]["keyframe_index"]
    with torch.no_grad():
        text = model.encode_text(golden["actions"])
        out = model.stages(model.frame_patches(frames), torch.arange(9)[None], frames[key : key + 1], crops,
                           torch.zeros(len(crops), dtype=torch.long), text, trace=True)
    out["text"] = text
    return out


def test_tokens_equal_the_reference(golden, ours):
    tokens = ours.tokenizer(golden["actions"])
    assert torch.equal(tokens, golden["tokens"])


@pytest.mark.parametrize("stage", STAGES + INTERMEDIATES)
def test_every_stage_matches_the_reference(golden, ours, stage):
    out = run_stages(ours, golden)
    expected = golden[stage] if stage in STAGES else golden["intermediates"][stage]
    got = out[stage]
    assert got.shape == expected.shape, stage
    torch.testing.assert_close(got.float(), expected, atol=ATOL, rtol=0)


def test_gelu_instead_of_quick_gelu_is_caught(golden):
    """The test has teeth: exact GELU (open_clip's default for a config without quick_gelu) misses the reference."""
    config = json.loads(golden["open_clip_config"])
    assert config["quick_gelu"] is True
    model = build_model(golden_card())
    for block in model.clip.visual.transformer.resblocks:
        block.mlp.gelu = torch.nn.GELU()
    load_reference_weights(model, read_reference(GOLDEN), include_clip=True)
    out = run_stages(model.eval(), golden)
    assert (out["logits"] - golden["logits"]).abs().max() > 1e-3


def test_golden_weights_use_quick_gelu_everywhere(ours):
    activations = [type(m).__name__ for n, m in ours.named_modules() if n.endswith(("mlp.gelu", "ffn.1"))]
    assert activations and set(activations) == {"QuickGELU"}


def clip_weights_file(golden, path: Path) -> Path:
    """The reference's frozen CLIP as an open_clip state dict (what --clip-weights takes)."""
    mapped = to_stclip_names(read_reference(GOLDEN))
    clip = {k[len("clip."):].replace(".base_layer", ""): v for k, v in mapped.items()
            if k.startswith("clip.") and "lora_" not in k}
    torch.save(clip, path)
    return path


def test_import_reference_checkpoint_end_to_end(golden, tmp_path):
    """A reference checkpoint -> `stclip import-reference` -> a stclip checkpoint whose forward equals the reference."""
    reference = tmp_path / "reference_model.pth"
    torch.save({"model": {f"module.{k}": v for k, v in golden["reference_state_dict"].items()}
                | {f"module.ln_person.{k}": v for k, v in golden["ln_person"].items()}
                | {f"module.adapter.{k}": v for k, v in golden["adapter"].items()},
                "iteration": 3000}, reference)
    card = tmp_path / "golden.yaml"
    card.write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in golden_card().to_dict().items()))
    out = tmp_path / "imported.safetensors"
    result = CliRunner().invoke(app, ["import-reference", str(reference), "--model", str(card), "--out", str(out),
                                      "--dataset", "jhmdb", "--split", "1"])
    assert result.exit_code == 0, result.output
    meta = read_metadata(out)
    assert (meta["dataset"], meta["split"], meta["imported_from"]) == ("jhmdb", 1, str(reference))
    clip = clip_weights_file(golden, tmp_path / "clip.pt")
    model = build_model(golden_card(), clip_weights=clip, checkpoint=out)
    torch.testing.assert_close(run_stages(model, golden)["logits"], golden["logits"], atol=ATOL, rtol=0)
    # the inference form (LoRA merged into the weights, no adapters) is the same model
    merged = build_model(golden_card(), clip_weights=clip, checkpoint=out, inference=True)
    assert not any("lora_" in name for name, _ in merged.named_parameters())
    stages = run_stages(merged, golden)
    for stage in STAGES:
        torch.testing.assert_close(stages[stage].float(), golden[stage], atol=ATOL, rtol=0)
    again = CliRunner().invoke(app, ["import-reference", str(reference), "--model", str(card), "--out", str(out)])
    assert again.exit_code == 1 and "exists" in again.output


def test_import_reference_reads_the_reference_checkpointers_file(golden, tmp_path):
    """The file the reference's checkpointer writes: the model under "model", its keys prefixed by the ROI head's
    text feature generator (CLIP under clipmodel.), optimizer and scheduler beside it."""
    head = "roi_heads.action.text_feature_generator."
    model = ({f"{head}clipmodel.{k}": v for k, v in golden["reference_state_dict"].items()}
             | {f"{head}ln_person.{k}": v for k, v in golden["ln_person"].items()}
             | {f"{head}adapter.{k}": v for k, v in golden["adapter"].items()})
    reference = tmp_path / "model_final.pth"
    torch.save({"model": model, "optimizer": {"state": {}, "param_groups": [{"lr": 2.5e-4, "params": [0]}]},
                "scheduler": {"last_epoch": 3000}, "iteration": 3000}, reference)
    card = tmp_path / "golden.yaml"
    card.write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in golden_card().to_dict().items()))
    out = tmp_path / "imported.safetensors"
    result = CliRunner().invoke(app, ["import-reference", str(reference), "--model", str(card), "--out", str(out)])
    assert result.exit_code == 0, result.output
    model = build_model(golden_card(), clip_weights=clip_weights_file(golden, tmp_path / "clip.pt"), checkpoint=out)
    torch.testing.assert_close(run_stages(model, golden)["logits"], golden["logits"], atol=ATOL, rtol=0)


def test_import_reference_refuses_a_pickle_that_runs_code(golden, tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pth"
    torch.save({"model": {"x": torch.zeros(1)}, "hook": Payload()}, evil)
    result = CliRunner().invoke(app, ["import-reference", str(evil), "--out", str(tmp_path / "o.safetensors")])
    assert result.exit_code == 1 and "refusing to unpickle" in result.output and "system" in result.output
    assert not marker.exists() and not (tmp_path / "o.safetensors").exists()


def test_import_reference_names_wrong_architecture(golden, tmp_path):
    reference = tmp_path / "ref.pth"
    torch.save(golden["reference_state_dict"] | {f"ln_person.{k}": v for k, v in golden["ln_person"].items()}
               | {f"adapter.{k}": v for k, v in golden["adapter"].items()}, reference)
    result = CliRunner().invoke(app, ["import-reference", str(reference), "--model", "tiny-test",
                                      "--out", str(tmp_path / "o.safetensors")])
    assert result.exit_code == 1 and "shape" in result.output and "Traceback" not in result.output
