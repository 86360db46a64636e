"""Model cards (models/*.yaml) -> configuration -> ready model; the one place that knows where weights come from.

A card names the backbone, its weight source and the ST-CLIP hyper-parameters. Checkpoints written by
``stclip train`` are safetensors files holding only the trainable weights, with the card they were trained with
in their metadata, so a checkpoint for another backbone or window is refused before any weight is touched.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from stclip_cli import MODELS
from stclip_cli.sinks.destinations import Destination, classify
from stclip_cli.errors import StclipError, first_line

if TYPE_CHECKING:  # torch and open_clip load in seconds: imported where a model is built, not to read a card
    import open_clip
    import torch

    from stclip_cli.model.base import ActionModel

CARDS_DIR = MODELS
MODEL_ALIASES = {"stclip": "stclip-vitb16"}
# what `detect` scores with when ST-CLIP has no checkpoint: the paper's training-free baseline, the best published
# training-free result (73.42 ZS-JHMDB, 48.22 ZS-UCF frame mAP)
TRAINING_FREE_FALLBACK = "baseline"
KINDS = ("stclip", "frame-baseline", "crop-baseline")
# what a checkpoint's weights depend on: a checkpoint is refused when any of these differ
ARCHITECTURE_KEYS = ("kind", "backbone", "window", "lora_rank")


@dataclass(frozen=True)
class ModelCard:
    """One shipped configuration: which CLIP, where its weights come from, and the ST-CLIP hyper-parameters."""

    name: str
    kind: str
    backbone: str
    pretrained: str | None = "openai"
    window: int = 9
    lora_rank: int = 8
    lora_alpha: float = 1.0
    interest_k: int | None = None
    rho_init: float = 0.2
    temperature: float | str = 0.07
    multi_label: bool = False
    checkpoint: str | None = None

    def replace(self, **changes: Any) -> "ModelCard":
        """A copy with some fields changed (None values are ignored, so CLI options can be passed straight in)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON/YAML-ready)."""
        return dataclasses.asdict(self)


def list_cards() -> list[str]:
    """Names of the cards shipped in models/."""
    return sorted(p.stem for p in CARDS_DIR.glob("*.yaml"))


def load_card(name_or_path: str | Path) -> ModelCard:
    """Read a card by name (``stclip``, ``baseline``, ``stclip-vitb16``...) or by path to a YAML file."""
    name = MODEL_ALIASES.get(str(name_or_path), str(name_or_path))
    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        path = CARDS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise StclipError(f"unknown model '{name_or_path}'; choose one of {', '.join(['stclip', *list_cards()])} or a card .yaml")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise StclipError(f"model card {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    return card_from_dict(data, str(path))


def card_from_dict(data: Any, source: str) -> ModelCard:
    """Validate a card's fields (from YAML or a checkpoint's metadata): every type and range checked here, the one
    place, so a bad value is one line naming the card and the field, never a failure deep in model code."""
    fields = {f.name for f in dataclasses.fields(ModelCard)}
    if not isinstance(data, dict) or not {"name", "kind", "backbone"} <= set(data):
        raise StclipError(f"model card {source} must be a mapping with at least name, kind and backbone")
    unknown = {str(k) for k in data} - fields
    if unknown:
        raise StclipError(f"model card {source} has unknown fields: {', '.join(sorted(unknown))}")
    if data["kind"] not in KINDS:
        raise StclipError(f"model card {source}: kind must be one of {', '.join(KINDS)}, not {_shown(data['kind'])}")
    for name, check in _CARD_CHECKS.items():
        if name in data and not check[0](data[name]):
            raise StclipError(f"model card {source}: {name} must be {check[1]} (got {_shown(data[name])})")
    return ModelCard(**data)


def _whole(low: int, high: int) -> Any:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def _number(low: float, above: bool = False) -> Any:
    def check(v: Any) -> bool:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            return False
        return v > low if above else v >= low

    return check


def _text(v: Any) -> bool:
    return isinstance(v, str) and v.strip() != "" and v.isprintable()


def _shown(value: Any) -> str:
    """A value from a file, quoted short enough for one line."""
    text = json.dumps(value) if isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# field -> (check, what it must be); windows and ranks are capped so that a hostile card cannot ask for a
# temporal embedding or LoRA factors of billions of rows
_CARD_CHECKS: dict[str, tuple[Any, str]] = {
    "name": (_text, "a non-empty string"),
    "backbone": (_text, "a non-empty string"),
    "pretrained": (lambda v: v is None or _text(v), "a string or null"),
    "window": (_whole(1, 1024), "a whole number from 1 to 1024"),
    "lora_rank": (_whole(1, 4096), "a whole number from 1 to 4096"),
    "lora_alpha": (_number(0.0, above=True), "a finite number above 0"),
    "interest_k": (lambda v: v is None or _whole(0, 2**31)(v), "null or a whole number of at least 0"),
    "rho_init": (_number(-math.inf), "a finite number"),
    "temperature": (lambda v: v == "clip" or _number(0.0, above=True)(v), "clip or a finite number above 0"),
    "multi_label": (lambda v: isinstance(v, bool), "true or false"),
    "checkpoint": (lambda v: v is None or _text(v), "a string or null"),
}


def temperature_of(card: ModelCard, clip: "open_clip.CLIP") -> float:
    """The card's fixed temperature, or CLIP's own (1 / exp(logit_scale)) when the card says ``clip``."""
    value = float(1.0 / clip.logit_scale.exp()) if card.temperature == "clip" else float(card.temperature)
    if not math.isfinite(value) or value <= 0:  # logits divided by it would be inf or NaN scores
        raise StclipError(f"model card {card.name}: temperature {card.temperature} gives {value}, not a number above 0")
    return value


def build_model(
    card: ModelCard, clip_weights: str | Path | None = None, checkpoint: str | Path | None = None,
    inference: bool = False,
) -> "ActionModel":
    """Create the CLIP of the card (tag or local file), wrap it in the card's model, and load a checkpoint if given.

    ``inference`` builds the form that only scores: LoRA merged into the weights (no peft), nothing trainable.
    """
    from stclip_cli.model.clip_import import import_open_clip

    import_open_clip(card.backbone)  # first: a plain CLIP imports open_clip without transformers

    from stclip_cli.model.baselines import CropBaseline, FrameBaseline
    from stclip_cli.model.clip_backbone import clip_tokenizer, create_clip
    from stclip_cli.model.skip_init import skipped_random_init
    from stclip_cli.model.stclip import STCLIP

    if checkpoint is not None:
        check_checkpoint(card, checkpoint)
    clip = create_clip(card.backbone, None if clip_weights else card.pretrained, clip_weights)
    tokenizer = clip_tokenizer(card.backbone)
    temperature = temperature_of(card, clip)
    if card.kind == "stclip":
        with skipped_random_init(checkpoint is not None):  # load_weights replaces every ST-CLIP weight, names checked
            model: ActionModel = STCLIP(
                clip, tokenizer, card.window, card.lora_rank, card.lora_alpha, card.interest_k, card.rho_init,
                temperature, lora=not inference,
            )
    elif card.kind == "frame-baseline":
        model = FrameBaseline(clip, tokenizer, temperature)
    else:
        model = CropBaseline(clip, tokenizer, temperature)
    if checkpoint is not None:
        load_weights(model, checkpoint)
    if inference:
        model.requires_grad_(False)
    model.eval()
    return model


def precision(model: "ActionModel", half: bool, int8: bool) -> str:
    """The arithmetic a scoring model runs in, as the JSON's "model" object records it."""
    return "int8" if int8 else "bf16" if half and model.device.type == "cuda" else "fp32"


def card_for_checkpoint(checkpoint: str | Path, requested: ModelCard | None = None) -> ModelCard:
    """The card a checkpoint was trained with; a different requested architecture is refused with one line."""
    stored = card_from_dict(read_metadata(checkpoint).get("card"), f"in checkpoint {checkpoint}")
    if requested is not None:
        check_compatible(stored, requested, checkpoint)
        return requested.replace(checkpoint=str(checkpoint))
    return stored.replace(checkpoint=str(checkpoint))


def training_free_fallback(requested: ModelCard) -> ModelCard:
    """The baseline card that scores when an ST-CLIP card has no checkpoint, on the requested card's CLIP."""
    return load_card(TRAINING_FREE_FALLBACK).replace(backbone=requested.backbone, pretrained=requested.pretrained)


def check_checkpoint(card: ModelCard, checkpoint: str | Path) -> None:
    """Refuse a checkpoint trained for another architecture than ``card``."""
    stored = card_from_dict(read_metadata(checkpoint).get("card"), f"in checkpoint {checkpoint}")
    check_compatible(stored, card, checkpoint)


def check_compatible(stored: ModelCard, card: ModelCard, checkpoint: str | Path) -> None:
    """One-line refusal naming what differs (backbone, window T, LoRA rank or model kind)."""
    diffs = [f"{k} {getattr(stored, k)} (this run: {getattr(card, k)})" for k in ARCHITECTURE_KEYS if getattr(stored, k) != getattr(card, k)]
    if diffs:
        raise StclipError(f"checkpoint {checkpoint} was trained for {'; '.join(diffs)}; use a matching --backbone/--model")


def read_metadata(checkpoint: str | Path) -> dict[str, Any]:
    """The JSON metadata stored in a stclip checkpoint (card, split, step, ...), every field checked: the one reader
    of checkpoint metadata, so a bad value is one line naming the file and the field."""
    from safetensors import SafetensorError, safe_open

    path = Path(checkpoint)
    _check_readable(path)
    try:
        with safe_open(str(path), framework="numpy") as f:  # the header only: no torch import needed
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, OverflowError) as err:
        raise StclipError(f"{path} is not a safetensors checkpoint ({str(err).splitlines()[0][:80] if str(err) else type(err).__name__})") from None
    if "stclip" not in meta:
        raise StclipError(f"{path} is not a stclip checkpoint (no 'stclip' metadata); train one with `stclip train`")
    try:
        data = json.loads(meta["stclip"], parse_constant=_no_constant)
    except (ValueError, RecursionError) as err:  # ValueError: syntax, NaN, 4300-digit numbers
        raise StclipError(f"checkpoint {path}: its stclip metadata is not JSON ({first_line(err)[:80]})") from None
    if not isinstance(data, dict):
        raise StclipError(f"checkpoint {path}: its stclip metadata must be a JSON object, not {type(data).__name__}")
    card_from_dict(data.get("card"), f"in checkpoint {path}")
    for key, (check, what) in _METADATA_CHECKS.items():
        if key in data and not check(data[key]):
            raise StclipError(f"checkpoint {path}: metadata {key} must be {what} (got {_shown(data[key])})")
    config = data.get("config")
    if isinstance(config, dict) and "options" in config and not isinstance(config["options"], dict):
        raise StclipError(f"checkpoint {path}: metadata config.options must be an object (got {_shown(config['options'])})")
    root = (config or {}).get("options", {}).get("data_root")  # config is absent or an object here
    if root is not None and not _text(root):
        raise StclipError(f"checkpoint {path}: metadata config.options.data_root must be a path (got {_shown(root)})")
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


# metadata key -> (check, what it must be); absent keys are allowed (imported checkpoints carry fewer)
_METADATA_CHECKS: dict[str, tuple[Any, str]] = {
    "step": (lambda v: v is None or _whole(0, 2**62)(v), "null or a whole number of at least 0"),
    "dataset": (lambda v: v is None or (_text(v) and len(v) <= 64), "null or a dataset name"),
    "split": (lambda v: v is None or _whole(0, 2**31)(v), "null or a split number of at least 0"),
    "classes": (lambda v: isinstance(v, list) and all(_text(c) for c in v), "a list of class names"),
    "config": (lambda v: isinstance(v, dict), "an object"),
    "schedule": (lambda v: isinstance(v, dict), "an object"),
    "imported_from": (lambda v: v is None or isinstance(v, str), "a string or null"),
}


def _check_readable(path: Path) -> None:
    """A checkpoint path that is missing, a folder or unreadable is said as such, before safetensors reads it."""
    if not path.exists():
        raise StclipError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise StclipError(f"checkpoint {path} is a folder; give the .safetensors file")
    if not path.is_file():
        raise StclipError(f"checkpoint {path} is not a regular file")
    try:
        with path.open("rb") as f:
            f.read(1)
    except OSError as err:
        raise StclipError(f"cannot read checkpoint {path}: {err.strerror or first_line(err)}") from None


def save_checkpoint(
    path: str | Path, model: "ActionModel", card: ModelCard, metadata: dict[str, Any],
    extra: "dict[str, torch.Tensor] | None" = None,
) -> None:
    """Write the trainable weights (plus optional extra tensors such as optimizer state) atomically with the card."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {f"model.{k}": v.contiguous().cpu() for k, v in model.trainable_state_dict().items()}
    tensors.update({k: v.contiguous().cpu() for k, v in (extra or {}).items()})
    meta = {"stclip": json.dumps({"card": card.to_dict(), **metadata})}
    destination = Destination(classify(path, "checkpoint"))
    try:
        temp = destination.temp_path()
        with destination.guard():
            save_file(tensors, str(temp), metadata=meta)
        destination.commit()
    except BaseException:
        destination.discard()
        raise


def load_tensors(checkpoint: str | Path) -> "dict[str, torch.Tensor]":
    """Every tensor of a checkpoint (model weights under ``model.``, training state under other prefixes); a tensor
    that cannot be read, or a floating-point one holding NaN or inf, is refused naming the file and the tensor."""
    from safetensors import safe_open

    read_metadata(checkpoint)
    out = {}
    with safe_open(str(checkpoint), framework="pt") as f:
        for key in f.keys():
            out[key] = _tensor(f, key, checkpoint)
    return out


def _tensor(f: Any, key: str, checkpoint: str | Path) -> "torch.Tensor":
    """One tensor of an open checkpoint, checked finite: NaN weights would score NaN, which no JSON can hold."""
    import torch

    try:
        tensor = f.get_tensor(key)
    except Exception as err:  # safetensors raises its own error types, and torch may lack the dtype
        raise StclipError(f"checkpoint {checkpoint}: tensor {key} cannot be read ({first_line(err)[:80]})") from None
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        raise StclipError(f"checkpoint {checkpoint}: tensor {key} holds NaN or infinite values; it cannot score")
    return tensor


def load_weights(model: "ActionModel", checkpoint: str | Path) -> None:
    """Load a checkpoint's trainable weights into ``model``; the sets of names and shapes must match exactly, and
    every value must be finite.

    A model built without LoRA adapters (inference) gets the checkpoint's LoRA factors merged into its weights.
    Tensors are read one at a time from the file (safetensors maps it), so loading needs no second copy of them.
    """
    import torch
    from safetensors import safe_open

    from stclip_cli.model.lora import LORA_NAME, merge_lora

    read_metadata(checkpoint)
    with safe_open(str(checkpoint), framework="pt") as f:
        names = {k[len("model."):]: k for k in f.keys() if k.startswith("model.")}
        has_adapters = any(LORA_NAME.fullmatch(name) for name, _ in model.named_parameters())
        if not has_adapters and any(LORA_NAME.fullmatch(name) for name in names):
            factors = {n: _tensor(f, k, checkpoint) for n, k in names.items() if LORA_NAME.fullmatch(n)}
            try:
                merge_lora(model, factors, model.lora_rank, model.lora_alpha)
            except (ValueError, AttributeError, RuntimeError, KeyError) as err:
                raise StclipError(f"checkpoint {checkpoint} does not fit this model ({first_line(err)[:120]})") from None
            merged = dict(model.named_parameters())
            layers = {LORA_NAME.fullmatch(n)["layer"].removesuffix(".base_layer") + ".weight" for n in factors}
            if not all(bool(torch.isfinite(merged[n]).all()) for n in layers if n in merged):
                raise StclipError(f"checkpoint {checkpoint}: its LoRA factors merge into infinite weights; it cannot score")
            names = {n: k for n, k in names.items() if n not in factors}
        params = {k: v for k, v in model.named_parameters() if v.requires_grad}
        shapes = {n: tuple(f.get_slice(k).get_shape()) for n, k in names.items()}
        if set(names) != set(params) or any(shapes[n] != tuple(p.shape) for n, p in params.items()):
            missing = sorted(set(params) - set(names))[:2]
            raise StclipError(f"checkpoint {checkpoint} does not fit this model (e.g. {missing or 'shape mismatch'})")
        with torch.no_grad():
            for name, key in names.items():
                params[name].copy_(_tensor(f, key, checkpoint))


__all__ = [
    "ModelCard", "TRAINING_FREE_FALLBACK", "build_model", "card_for_checkpoint", "precision", "list_cards", "load_card",
    "load_weights", "read_metadata", "save_checkpoint", "training_free_fallback",
]
