"""The ST-CLIP model on open_clip: faithfulness checks on the tiny randomly initialised card."""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch
from dataclasses import asdict

from open_clip.transform import PreprocessCfg, image_transform_v2
from PIL import Image

from stclip_cli.weights.cards import build_model, load_card
from stclip_cli.errors import StclipError
from stclip_cli.model.clip_backbone import embed_context, patch_tokens, pooled_features, run_block
from stclip_cli.model.interaction import PersonLayout, interact, spot_interest_tokens
from stclip_cli.core.preprocess import ClipPreprocess
from stclip_cli.core.scoring import KeyframeRequest, Scorer

ACTIONS = ["brush teeth", "fishing", "sit"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(load_card("tiny-test"))


def _perturb_trainables(model, seed=1):
    """Random non-zero values for every trainable weight (LoRA B starts at zero, which would hide bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad and "rho" not in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def _inputs(model, n_frames=12, persons=(2, 1), seed=0):
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(n_frames, 3, 64, 64, generator=g)
    patches = model.frame_patches(frames)
    k = len(persons)
    starts = np.linspace(0, n_frames - 9, k).round().astype(int)
    windows = torch.stack([torch.arange(s, s + 9) for s in starts])
    keyframes = frames[windows[:, 4]]
    crops = torch.randn(sum(persons), 3, 64, 64, generator=g)
    person_frame = torch.repeat_interleave(torch.arange(k), torch.tensor(persons))
    return patches, windows, keyframes, crops, person_frame


def test_vit_path_without_persons_equals_open_clip_encode_image(model):
    visual = model.clip.visual
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 100, 3), dtype=np.uint8))
    _, _, preprocess = open_clip.create_model_and_transforms("stclip-tiny-test")
    x = preprocess(image)[None]
    expected = model.clip.encode_image(x)
    empty = PersonLayout(torch.zeros(0, dtype=torch.long), 1)
    text = model.encode_text(ACTIONS)
    sequence, _ = interact(visual, embed_context(visual, patch_tokens(visual, x)), x.new_zeros(0, 128), empty, text, model.prompting, None)
    ours = visual.ln_post(sequence[:, 0]) @ visual.proj
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pooled_features(visual, x) @ visual.proj, expected, atol=1e-5, rtol=1e-5)


def test_preprocessing_is_open_clips_own_transform():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (24, 32, 3)).astype(np.uint8)
    image = np.asarray(Image.fromarray(base).resize((320, 240), Image.BICUBIC))  # a J-HMDB-sized frame
    cfg = PreprocessCfg(size=224)
    transform = image_transform_v2(cfg, is_train=False)
    pre = ClipPreprocess(asdict(cfg))
    torch.testing.assert_close(pre.frames([image])[0], transform(Image.fromarray(image)), atol=0, rtol=0)
    crop = pre.person_crops(image, np.array([[40.2, 19.6, 140.0, 230.4]]))[0]
    torch.testing.assert_close(crop, transform(Image.fromarray(image[20:230, 40:140])), atol=0, rtol=0)
    edge = pre.person_crops(image, np.array([[-50.0, 200.0, 10.0, 900.0], [30.0, 30.0, 30.0, 30.0]]))
    torch.testing.assert_close(edge[0], transform(Image.fromarray(image[200:239, 0:10])), atol=0, rtol=0)  # y2 -> h - 1
    torch.testing.assert_close(edge[1], transform(Image.fromarray(image[30:31, 30:31])), atol=0, rtol=0)
    letterbox = ClipPreprocess(asdict(cfg), frame_fit="letterbox").frames([image])[0]
    expected = image_transform_v2(PreprocessCfg(size=224, resize_mode="longest"), is_train=False)(Image.fromarray(image))
    torch.testing.assert_close(letterbox, expected, atol=0, rtol=0)


def test_rho_zero_leaves_text_features_equal_to_clip(model):
    _perturb_trainables(model)
    with torch.no_grad():
        for layer in model.prompting.layers:
            layer.rho.zero_()
    visual = model.clip.visual
    patches, windows, keyframes, crops, person_frame = _inputs(model)
    text = model.encode_text(ACTIONS)
    layout = PersonLayout(person_frame, 2)
    context = embed_context(visual, model.temporal(patches[windows]))
    persons = model.adapter(pooled_features(visual, crops))
    for k in (None, 5):
        _, prompted = interact(visual, context, persons, layout, text, model.prompting, k)
        for row in prompted:
            torch.testing.assert_close(row, text)
    expected = torch.nn.functional.normalize(model.clip.encode_text(model.tokenizer(ACTIONS)), dim=-1)
    torch.testing.assert_close(torch.nn.functional.normalize(text, dim=-1), expected)


def test_interest_tokens_are_a_direct_top_k_of_head_averaged_attention(model):
    block = model.clip.visual.transformer.resblocks[0]
    x = torch.randn(2, 7, 128)
    pad = torch.tensor([[False] * 7, [False, False, True, False, False, False, False]])
    _, weights = run_block(block, x, pad, need_weights=True)
    # by hand: q, k from the block's own projection, softmax per head, mean over heads
    h = block.ln_1(x)
    w_q, w_k, _ = block.attn.in_proj_weight.chunk(3)
    b_q, b_k, _ = block.attn.in_proj_bias.chunk(3)
    heads = block.attn.num_heads
    q = (h @ w_q.T + b_q).view(2, 7, heads, -1).transpose(1, 2)
    k = (h @ w_k.T + b_k).view(2, 7, heads, -1).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / (q.shape[-1] ** 0.5)
    scores = scores.masked_fill(pad[:, None, None, :], float("-inf"))
    by_hand = scores.softmax(-1).mean(1)
    torch.testing.assert_close(weights, by_hand, atol=1e-5, rtol=1e-5)
    row = by_hand[1, 1]
    expected = sorted(range(7), key=lambda i: -float(row[i]))[:4]
    assert spot_interest_tokens(weights[1, 1][None], 4)[0].tolist() == expected
    assert 2 not in expected  # the padded token is never an interest token


def test_only_method_modules_train_and_frozen_clip_gets_no_gradient():
    torch.manual_seed(0)
    model = build_model(load_card("tiny-test")).train()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    allowed = ("adapter.", "temporal.", "prompting.")
    assert all(n.startswith(allowed) or "lora_" in n for n in trainable)
    assert any("lora_A" in n for n in trainable) and any("lora_B" in n for n in trainable)
    assert sum("lora_" in n for n in trainable) == 2 * 2 * 2  # A and B, c_fc and c_proj, 2 layers
    patches, windows, keyframes, crops, person_frame = _inputs(model)
    model(patches, windows, keyframes, crops, person_frame, model.encode_text(ACTIONS)).sum().backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, name
        else:
            assert p.grad is None, name
    assert any(p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "lora_B" in n)


@pytest.mark.parametrize("interest_k", [None, 6])
def test_batch_equals_one_by_one_and_person_permutation(interest_k):
    torch.manual_seed(0)
    model = build_model(load_card("tiny-test").replace(interest_k=interest_k))
    _perturb_trainables(model)
    text = model.encode_text(ACTIONS)
    patches, windows, keyframes, crops, person_frame = _inputs(model, persons=(3, 1, 2))
    with torch.no_grad():
        batched = model(patches, windows, keyframes, crops, person_frame, text)
        single = [
            model(patches, windows[i : i + 1], keyframes[i : i + 1], crops[person_frame == i],
                  torch.zeros(int((person_frame == i).sum()), dtype=torch.long), text)
            for i in range(3)
        ]
        torch.testing.assert_close(batched, torch.cat(single), atol=1e-4, rtol=1e-4)
        perm = torch.tensor([2, 0, 1, 3, 5, 4])
        permuted = model(patches, windows, keyframes, crops[perm], person_frame, text)
        torch.testing.assert_close(permuted, batched[perm], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(batched[0], batched[1])  # persons of one frame differ


def test_scorer_handles_zero_degenerate_and_outside_boxes(model):
    rng = np.random.default_rng(0)
    images = {i: rng.integers(0, 255, (48, 80, 3), dtype=np.uint8) for i in range(12)}
    scorer = Scorer(model, ACTIONS)
    boxes = np.array([[10, 5, 40, 45], [20, 20, 20, 20], [-50, -50, -10, -10], [70, 30, 500, 900]], np.float32)
    requests = [
        KeyframeRequest(3, list(range(0, 9)), boxes),
        KeyframeRequest(4, list(range(0, 9)), np.zeros((0, 4), np.float32)),
        KeyframeRequest(8, list(range(3, 12)), boxes[:1]),
    ]
    out = scorer.score(images, requests)
    assert [o.shape for o in out] == [(4, 3), (0, 3), (1, 3)]
    assert np.isfinite(out[0]).all()
    np.testing.assert_allclose(out[0].sum(1), 1.0, rtol=1e-5)
    again = Scorer(model, ACTIONS).score(images, requests[2:])
    np.testing.assert_allclose(again[0], out[2], atol=1e-5)


def test_action_names_must_fit_the_text_context(model):
    fits = "a person who is slowly and carefully brushing their teeth in front of the"  # 14 BPE + start and end
    assert len(model.tokenizer.encode(fits)) + 2 == model.clip.context_length == 16
    assert model.encode_text(["sit", fits]).shape[0] == 2
    too_long = fits + " mirror"
    with pytest.raises(StclipError) as err:
        model.encode_text(["sit", too_long])
    assert str(err.value) == f"action name '{too_long}' is 17 tokens; the text encoder reads at most 16 (shorten it)"


def test_merged_lora_scores_as_the_peft_adapters_do(tmp_path):
    """The inference form (LoRA folded into the weights, no peft) equals the training form with non-zero LoRA factors,
    without ../shared (the golden test checks the same on the reference's weights)."""
    from stclip_cli.weights.cards import save_checkpoint
    from stclip_cli.model.lora import fold_adapters

    card = load_card("tiny-test")
    torch.manual_seed(0)
    trained = build_model(card).eval()
    _perturb_trainables(trained, seed=3)
    assert any("lora_B" in name and p.abs().sum() > 0 for name, p in trained.named_parameters())
    path = tmp_path / "lora.safetensors"
    save_checkpoint(path, trained, card, {"step": 0})
    torch.manual_seed(0)
    merged = build_model(card, checkpoint=path, inference=True)
    assert not any("lora_" in name for name, _ in merged.named_parameters())
    patches, windows, keyframes, crops, person_frame = _inputs(trained, persons=(2, 3))
    text = trained.encode_text(ACTIONS)
    with torch.inference_mode():
        expected = trained(patches, windows, keyframes, crops, person_frame, text)
        torch.testing.assert_close(merged(patches, windows, keyframes, crops, person_frame, text), expected,
                                   atol=1e-4, rtol=1e-4)
        assert fold_adapters(trained) > 0 and not any("lora_" in name for name, _ in trained.named_parameters())
        torch.testing.assert_close(trained(patches, windows, keyframes, crops, person_frame, text), expected,
                                   atol=1e-4, rtol=1e-4)


def test_whole_frame_baseline_cuts_no_person_crops(monkeypatch):
    """The default fallback (whole-frame baseline) never reads the crops, yet every person's crop was cut and
    preprocessed; its scores stay the whole frame's, one row per person."""
    torch.manual_seed(0)
    net = build_model(load_card("baseline").replace(backbone="stclip-tiny-test", pretrained="none"))
    assert not net.uses_crops
    rng = np.random.default_rng(0)
    images = {0: rng.integers(0, 255, (48, 80, 3), dtype=np.uint8)}
    request = KeyframeRequest(0, [0], np.array([[10, 5, 40, 45], [50, 10, 70, 40]], np.float32))
    scorer = Scorer(net, ACTIONS)
    monkeypatch.setattr(scorer.pre, "person_crops", lambda *a: pytest.fail("a crop was cut for the whole-frame baseline"))
    scores = scorer.score(images, [request])[0]
    with torch.inference_mode():
        frame = scorer.pre.frames([images[0]])
        expected = net.cosine_logits(net.clip.encode_image(frame), net.encode_text(ACTIONS)).softmax(-1).numpy()
    np.testing.assert_allclose(scores, np.repeat(expected, 2, axis=0), atol=1e-5)
