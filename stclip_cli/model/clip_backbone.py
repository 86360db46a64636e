"""The frozen open_clip CLIP: creation from a name and a weight source, and the image-encoder pieces ST-CLIP reuses."""

from __future__ import annotations

import functools
from pathlib import Path

import open_clip
import open_clip.factory
import torch
from open_clip.transformer import ResidualAttentionBlock, VisionTransformer
from torch import nn

from stclip_cli import MODELS
from stclip_cli.errors import StclipError
from stclip_cli.model.skip_init import skipped_random_init
from stclip_cli.quiet import quiet_logger
from stclip_cli.weights.safe_loading import restricted_torch_load
from stclip_cli.weights.sources import clip_source

OPEN_CLIP_CONFIGS = MODELS / "open_clip"
_registered = False


def register_model_configs() -> None:
    """Add the architectures shipped in models/open_clip (e.g. the tiny test CLIP) to open_clip's registry."""
    global _registered
    if not _registered and OPEN_CLIP_CONFIGS.is_dir():
        open_clip.add_model_config(OPEN_CLIP_CONFIGS)
        _registered = True


def create_clip(
    backbone: str, pretrained: str | None = None, clip_weights: str | Path | None = None
) -> open_clip.CLIP:
    """Build a frozen open_clip model: ``pretrained`` is an open_clip tag (cached download), ``clip_weights`` a local
    copy of that tag's weights.

    The MLP activation is the one the weights were trained with (QuickGELU for OpenAI's CLIPs), and preprocessing
    follows the tag. With neither a tag nor a file the weights are random (tests, parameter counts). Failures become
    one-line StclipErrors that name the file or flag to use.
    """
    register_model_configs()
    source = clip_source(backbone, pretrained, clip_weights)
    try:
        # random weights (no source) are drawn from a fixed seed: a checkpoint trained on them stays valid; weights
        # from a file replace every initial value (loaded strictly), so none are drawn
        with quiet_logger(), restricted_torch_load(), torch.random.fork_rng(devices=[]), \
                skipped_random_init(source.file is not None):
            torch.manual_seed(0)
            model = open_clip.create_model(
                backbone, pretrained=None, force_quick_gelu=source.quick_gelu, force_preprocess_cfg=source.preprocess or None
            )
            if source.file is not None:
                load_clip_weights(model, source.file)
    except Exception as err:  # open_clip raises RuntimeError/OSError/KeyError for every loading failure
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if clip_weights is not None:
            raise StclipError(f"could not load CLIP weights for {backbone} from {clip_weights}: {reason[:200]}") from None
        raise StclipError(f"could not load {source.description} from {source.file}: {reason[:200]}") from None
    check_supported(model)
    model.requires_grad_(False)
    model.eval()
    return model


def load_clip_weights(model: open_clip.CLIP, file: str) -> None:
    """open_clip's own loading of a weights file (its format conversions, every name checked), with the file's tensors
    becoming the weights instead of being copied into them: 600 MB (ViT-B/16) are never held twice."""
    built = {name: t.dtype for name, t in model.state_dict().items()}
    # open_clip's load_checkpoint has no ``assign`` flag: the instance's load_state_dict gets it for this call
    model.load_state_dict = functools.partial(type(model).load_state_dict, model, assign=True)  # type: ignore[method-assign]
    try:
        open_clip.factory.load_checkpoint(model, file, strict=True)
    finally:
        del model.load_state_dict
    changed = {name for name, t in model.state_dict().items() if t.dtype != built[name]}
    if changed:  # e.g. fp16 weights in the file: the model computes in the precision it was built in, as a copy would
        model.float()


def check_supported(model: nn.Module) -> None:
    """ST-CLIP edits the token sequence of a plain CLIP ViT; refuse towers built otherwise (timm, attention pooling)."""
    visual = getattr(model, "visual", None)
    ok = (
        isinstance(visual, VisionTransformer)
        and visual.attn_pool is None
        and visual.pool_type == "tok"
        and not visual.final_ln_after_pool
        and visual.transformer.batch_first
        and all(isinstance(b, ResidualAttentionBlock) for b in visual.transformer.resblocks)
    )
    if not ok:
        raise StclipError("this backbone is not a plain CLIP ViT (class-token pooling, standard blocks); ST-CLIP needs one")


def clip_tokenizer(backbone: str):
    """open_clip's tokenizer for ``backbone``, made once per process (reading its vocabulary takes about 0.1 s)."""
    if backbone not in _TOKENIZERS:
        register_model_configs()
        _TOKENIZERS[backbone] = open_clip.get_tokenizer(backbone)
    return _TOKENIZERS[backbone]


_TOKENIZERS: dict[str, object] = {}


def encode_text(clip: open_clip.CLIP, tokens: torch.Tensor) -> torch.Tensor:
    """``clip.encode_text(tokens)``, with the padding after the longest name's end token cut off first.

    The text tower is causal and pooled at the end token, so no output depends on what follows it: six short action
    names run through 5 positions instead of 77 (about 15x less work). Hand-written because open_clip's encode_text
    always runs the whole context; a tower of another kind (no causal mask, other pooling) runs open_clip's own.
    """
    ends = tokens.argmax(dim=-1)
    plain = (type(clip) is open_clip.CLIP and clip.text_pool_type == "argmax" and clip.attn_mask is not None
             and not isinstance(clip.text_projection, nn.Linear) and tokens.shape[1] == clip.positional_embedding.shape[0])
    if not plain or tokens.shape[0] == 0:
        return clip.encode_text(tokens)
    length = int(ends.max()) + 1
    cast = clip.transformer.get_cast_dtype()
    x = clip.token_embedding(tokens[:, :length]).to(cast) + clip.positional_embedding[:length].to(cast)
    x = clip.ln_final(clip.transformer(x, attn_mask=clip.attn_mask[:length, :length]))
    x = x[torch.arange(x.shape[0], device=x.device), ends]
    return x if clip.text_projection is None else x @ clip.text_projection


def patch_tokens(visual: VisionTransformer, images: torch.Tensor) -> torch.Tensor:
    """CLIP's own patch embedding (conv1) of preprocessed images: (F, 3, S, S) -> (F, N, D)."""
    return visual.conv1(images).flatten(2).transpose(1, 2)


def embed_context(visual: VisionTransformer, tokens: torch.Tensor) -> torch.Tensor:
    """Prepend the class embedding, add the positional embedding and apply ln_pre, as CLIP does: (K, N, D) -> (K, 1+N, D)."""
    cls = visual.class_embedding.to(tokens.dtype).expand(tokens.shape[0], 1, -1)
    x = torch.cat([cls, tokens], dim=1) + visual.positional_embedding.to(tokens.dtype)
    return visual.ln_pre(x)


def pooled_features(visual: VisionTransformer, images: torch.Tensor) -> torch.Tensor:
    """ln_post(cls) of images through the (LoRA-adapted) image encoder, before the projection: (n, 3, S, S) -> (n, D)."""
    x = visual.transformer(embed_context(visual, patch_tokens(visual, images)))
    return visual.ln_post(x[:, 0])


def run_block(
    block: ResidualAttentionBlock,
    x: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    need_weights: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One CLIP residual block with a key-padding mask, optionally returning the head-averaged attention (B, S, S).

    open_clip's block forward has no key-padding mask and never returns attention weights; we call its own modules.
    """
    h = block.ln_1(x)
    out, weights = block.attn(
        h, h, h, key_padding_mask=key_padding_mask, need_weights=need_weights, average_attn_weights=True
    )
    x = x + block.ls_1(out)
    x = x + block.ls_2(block.mlp(block.ln_2(x)))
    return x, weights
