"""The model that scores, and its ``--int8`` form kept in the user's cache folder so that a run does not rebuild it.

Building the int8 model reads every fp32 weight of the image tower and the ST-CLIP heads, merges the checkpoint's
LoRA, then quantizes 136 layers (ViT-B/16): about a second and 0.5 GB of memory touched on every run. The entry
holds what that produces: each quantized layer's int8 weight, scale, zero point and bias, and the heads' other
weights. A run whose inputs are unchanged builds the model's skeleton (CLIP's remaining weights from its file,
read as used) and takes the rest from the entry; the fp32 weights of the quantized layers are never read.

- Key: the card, the real path, size, modification time and inode of the CLIP weights file and of the checkpoint,
  and the torch, open_clip and entry format versions: replacing either file makes a new entry.
- Trust: an entry is a safetensors file (no pickle), read whole and checked: its metadata must carry its own key,
  its names and shapes must be exactly the model's, floats finite, scales above 0. Anything else (damaged, foreign,
  written by another version) is rebuilt and written again, never used.
- Writing: a temporary file beside the entry (named by host and process), renamed into place (never half an entry);
  a killed run's temporary file is removed by the next write on that machine; a folder that cannot be written
  leaves the run uncached, silently. Where: ``$XDG_CACHE_HOME/stclip/int8`` (``~/.cache/stclip/int8``),
  one file per card, checkpoint and CLIP file (about 0.14 GB for ViT-B/16); the ``KEEP`` most recently used
  entries stay, older ones are removed when a new one is written (a retrained checkpoint makes a new entry each
  time); delete the folder to free it all.
- Random CLIP weights (no file) are not cached: they are for tests.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from stclip_cli.errors import StclipError

if TYPE_CHECKING:
    import torch

    from stclip_cli.model.base import ActionModel
    from stclip_cli.weights.cards import ModelCard

FORMAT = 1
T = TypeVar("T")
META_KEY = "stclip_int8"
KEEP = 4  # entries kept, most recently used first
ENTRY_NAME = re.compile(r"[0-9a-f]{40}\.safetensors")  # ours: nothing else in the folder is ever removed


def cache_folder() -> Path:
    """Where entries live: ``$XDG_CACHE_HOME/stclip/int8``, else ``~/.cache/stclip/int8``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "stclip" / "int8"


def entry_key(card: ModelCard, clip_file: str | Path) -> str:
    """The entry's name: a digest of the card, both weight files' identities and the library versions."""
    import open_clip
    import torch

    def identity(path: str | Path | None) -> list | None:
        if path is None:
            return None
        info = os.stat(path)
        return [os.path.realpath(path), info.st_size, info.st_mtime_ns, info.st_ino]

    payload = {"format": FORMAT, "torch": torch.__version__, "open_clip": open_clip.__version__,
               "card": card.to_dict(), "clip": identity(clip_file), "checkpoint": identity(card.checkpoint)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:40]


def build_scoring_model(
    card: ModelCard, clip_weights: str | Path | None = None, device: str | torch.device = "cpu", int8: bool = False
) -> ActionModel:
    """The model that scores (detect, eval, corpus actors): the card's inference form on ``device``, with its
    checkpoint's LoRA merged into the weights, and in int8 when asked (a CPU path, kept in the user's cache)."""
    import torch

    from stclip_cli.weights.cards import build_model, check_checkpoint

    if not int8:
        return build_model(card, clip_weights, card.checkpoint, inference=True).to(device)
    if torch.device(device).type != "cpu":
        raise StclipError("--int8 is the CPU path; pass --device cpu (or use --half on the GPU)")
    if card.checkpoint is not None:
        check_checkpoint(card, card.checkpoint)
    return int8_model(card, clip_weights)


def int8_model(card: ModelCard, clip_weights: str | Path | None = None) -> ActionModel:
    """The card's int8 inference model on the CPU (its checkpoint already checked against it): from its cache entry
    when a valid one exists, else built, quantized and written to the cache for the next run."""
    from stclip_cli.model.int8 import quantize_int8
    from stclip_cli.weights.cards import build_model as build
    from stclip_cli.weights.sources import clip_source

    clip_file = clip_source(card.backbone, None if clip_weights else card.pretrained, clip_weights).file
    if clip_file is None:  # random CLIP weights: nothing worth keeping
        return quantize_int8(build(card, clip_weights, card.checkpoint, inference=True))
    key = entry_key(card, clip_file)
    path = cache_folder() / f"{key}.safetensors"
    model = read_entry(path, key, lambda entry: model_from_entry(card, clip_weights, entry))
    if model is not None:
        with contextlib.suppress(OSError):
            os.utime(path)  # most recently used: the last to be removed
        return model
    model = quantize_int8(build(card, clip_weights, card.checkpoint, inference=True))
    write_entry(path, key, model)
    return model


def entry_tensors(model: ActionModel) -> dict[str, torch.Tensor]:
    """What an entry holds for an int8 model: per quantized layer ``<name>.int8``, ``.scale``, ``.zero_point``
    (and ``.bias``), and every other weight of the ST-CLIP heads by name (CLIP's own come from its file)."""
    import torch
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    out: dict[str, torch.Tensor] = {}
    for name, module in _quantizable(model, DynamicLinear):
        weight, bias = module.weight(), module.bias()
        out[f"{name}.int8"] = weight.int_repr().contiguous()
        out[f"{name}.scale"] = torch.tensor([weight.q_scale()], dtype=torch.float64)
        out[f"{name}.zero_point"] = torch.tensor([weight.q_zero_point()], dtype=torch.int64)
        if bias is not None:
            out[f"{name}.bias"] = bias.detach().contiguous()
    for name, tensor in _head_state(model).items():
        out[name] = tensor.detach().contiguous()
    return out


def _quantizable(model: ActionModel, kind: type) -> list[tuple[str, Any]]:
    """(name, module) of every module of exactly type ``kind`` in the parts int8 quantizes (not the text tower)."""
    parts = [("clip.visual", model.clip.visual), *((n, m) for n, m in model.named_children() if n != "clip")]
    return [(name, m) for prefix, part in parts for name, m in part.named_modules(prefix=prefix) if type(m) is kind]


def _head_state(model: ActionModel) -> dict[str, torch.Tensor]:
    """Parameters and buffers outside CLIP: the ST-CLIP heads' weights that are not in quantized layers."""
    state = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    return {name: t for name, t in state.items() if not name.startswith("clip.")}


def write_entry(path: Path, key: str, model: ActionModel) -> None:
    """Write the model's entry atomically (a temporary file renamed into place); a failure leaves no file behind."""
    from safetensors.torch import save_file

    from stclip_cli.sinks.destinations import host_name, process_running

    temp = path.with_name(f".{path.name}.{host_name()}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for left in path.parent.glob(f".*.{host_name()}.*.tmp"):  # a killed run's, on this machine: never a live one's
            pid = left.name.rsplit(".", 2)[-2]
            if pid.isdigit() and int(pid) != os.getpid() and not process_running(int(pid)):
                left.unlink(missing_ok=True)
        save_file(entry_tensors(model), str(temp), metadata={META_KEY: json.dumps({"key": key, "format": FORMAT})})
        os.replace(temp, path)
        entries = sorted((p for p in path.parent.iterdir() if ENTRY_NAME.fullmatch(p.name) and p.is_file()),
                         key=lambda p: p.stat().st_mtime_ns, reverse=True)
        for old in entries[KEEP:]:
            old.unlink(missing_ok=True)
    except Exception:  # no space, no permission, not a folder (OSError) or safetensors' own error: run uncached
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)


def read_entry(path: Path, key: str, use: Callable[[dict[str, torch.Tensor]], T | None]) -> T | None:
    """``use(tensors)`` of the entry at ``path`` while it is open (its tensors may be read from the file as used);
    None when the entry is missing, unreadable, not this key's, or ``use`` refuses it."""
    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        opened = safe_open(str(path), framework="pt")
    except Exception:  # not a safetensors file (safetensors' own error types): rebuilt, not trusted
        return None
    with opened as f:
        try:
            meta = json.loads((f.metadata() or {}).get(META_KEY, "null"))
            tensors = {name: f.get_tensor(name) for name in f.keys()}
        except Exception:  # damaged: bad JSON, a tensor that cannot be read, an unknown dtype
            return None
        if not isinstance(meta, dict) or meta.get("key") != key or meta.get("format") != FORMAT:
            return None
        return use(tensors)  # its own errors are real ones, not a bad entry


def model_from_entry(card: ModelCard, clip_weights: str | Path | None, entry: dict[str, torch.Tensor]) -> ActionModel | None:
    """The int8 model from its skeleton and ``entry``; None when the entry does not fit the model exactly."""
    import torch
    from torch import nn

    from stclip_cli.model.int8 import int8_parts, packed_int8_linear, split_attention
    from stclip_cli.model.skip_init import skipped_random_init
    from stclip_cli.weights.cards import build_model as build

    with skipped_random_init():  # heads: every weight comes from the entry; CLIP: from its file, as always
        model = build(card, clip_weights, None, inference=True)
    for part in int8_parts(model):
        split_attention(part, copy=False)
    layers = _quantizable(model, nn.Linear)
    heads = {name: t for name, t in _head_state(model).items() if not any(name.startswith(f"{n}.") for n, _ in layers)}
    expected = set(heads) | {f"{n}.{s}" for n, _ in layers for s in ("int8", "scale", "zero_point")}
    expected |= {f"{n}.bias" for n, linear in layers if linear.bias is not None}
    if set(entry) != expected:
        return None
    modules = dict(model.named_modules())
    try:
        with torch.no_grad(), warnings.catch_warnings():  # torch's deprecation notices: not the user's concern
            warnings.simplefilter("ignore")
            for name, linear in layers:
                int8, scale = entry[f"{name}.int8"], float(entry[f"{name}.scale"].reshape(-1)[0])
                zero = int(entry[f"{name}.zero_point"].reshape(-1)[0])
                if int8.dtype != torch.int8 or tuple(int8.shape) != tuple(linear.weight.shape) or not (math.isfinite(scale) and scale > 0):
                    return None
                bias = entry.get(f"{name}.bias")
                if bias is not None and (bias.shape != linear.bias.shape or not bool(torch.isfinite(bias).all())):
                    return None
                qweight = torch._make_per_tensor_quantized_tensor(int8, scale, zero)
                parent, _, child = name.rpartition(".")
                setattr(modules[parent], child, packed_int8_linear(qweight, None if bias is None else bias.float()))
            for name, target in heads.items():
                value = entry[name]
                if value.shape != target.shape or (value.is_floating_point() and not bool(torch.isfinite(value).all())):
                    return None
                target.copy_(value)
    except (RuntimeError, ValueError):  # torch refusing the entry's values (a scale or zero point it cannot take)
        return None
    model.requires_grad_(False)
    return model.eval()


__all__ = ["build_scoring_model", "cache_folder", "entry_key", "int8_model", "read_entry", "write_entry"]
