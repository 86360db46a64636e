"""Where weights come from: open_clip pretrained tags (through open_clip's and huggingface_hub's caches) and ST-CLIP
checkpoints (a file, an ``hf-hub:ORG/REPO`` id or ``$STCLIP_CHECKPOINT``).

A file already in a cache is used without touching the network, so everything works offline once fetched. When a
file must be downloaded and the host cannot be reached, one line says which file to fetch and which flag takes it,
within seconds (huggingface_hub alone retries for about a minute and logs every retry).
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from stclip_cli.errors import StclipError
from stclip_cli.quiet import quiet_logger

HF_PREFIX = "hf-hub:"
CHECKPOINT_ENV = "STCLIP_CHECKPOINT"
# the file an ST-CLIP Hub repository holds (a `stclip train` checkpoint, renamed)
HUB_CHECKPOINT_NAME = "stclip.safetensors"
RANDOM_TAGS = (None, "", "none", "random")
CONNECT_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class ClipSource:
    """What open_clip needs to build a CLIP: the weights file (None: random), whether its MLPs use QuickGELU, and
    the preprocessing (mean, std, ...) the weights were trained with."""

    file: str | None
    quick_gelu: bool
    preprocess: dict[str, Any]
    description: str


def clip_source(backbone: str, pretrained: str | None, clip_weights: str | Path | None = None) -> ClipSource:
    """Resolve a backbone and a pretrained tag (or a local ``--clip-weights`` copy of that tag's weights).

    The activation follows open_clip's own knowledge: a ``-quickgelu`` model config, or the tag's ``quick_gelu``
    (OpenAI's CLIPs were trained with QuickGELU; open_clip's plain ``ViT-B-16`` config builds GELU).
    """
    import open_clip

    config = open_clip.get_model_config(backbone)
    if config is None:
        raise StclipError(f"unknown backbone '{backbone}'; use an open_clip model name such as ViT-B-16 or ViT-L-14")
    tag = None if pretrained in RANDOM_TAGS else pretrained
    tag_cfg = open_clip.get_pretrained_cfg(backbone, tag) if tag else {}
    if tag and not tag_cfg and clip_weights is None:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(backbone)) or "none"
        raise StclipError(f"open_clip has no pretrained tag '{tag}' for {backbone} (--pretrained); its tags: {tags}")
    quick_gelu = bool(config.get("quick_gelu", False) or tag_cfg.get("quick_gelu", False))
    preprocess = {k: tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag_cfg}
    if clip_weights is not None:
        path = Path(clip_weights)
        if not path.is_file():
            raise StclipError(f"CLIP weights file not found: {path} (--clip-weights)")
        return ClipSource(str(path), quick_gelu, preprocess, f"{backbone} weights from {path}")
    if tag is None:
        return ClipSource(None, quick_gelu, preprocess, f"{backbone} with random weights")
    return ClipSource(_tag_file(backbone, tag, tag_cfg), quick_gelu, preprocess, f"{backbone} pretrained '{tag}'")


def _tag_file(backbone: str, tag: str, cfg: dict[str, Any]) -> str:
    """The local file of a pretrained tag: from the Hugging Face cache, open_clip's URL cache, or a download."""
    what = f"CLIP weights {backbone} (pretrained '{tag}')"
    if cfg.get("file"):
        return str(cfg["file"])
    if cfg.get("hf_hub"):
        from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

        repo, filename = os.path.split(cfg["hf_hub"])  # "org/name/" means open_clip's default file names
        names = [filename] if filename else [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME]
        if filename.endswith((".bin", ".pth")):
            names.insert(0, filename[:-4] + ".safetensors")  # open_clip prefers a safetensors copy too
        return hub_file(repo, names, what, "--clip-weights FILE")
    url = cfg.get("url", "")
    cached = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
    if cached.is_file():
        return str(cached)
    host = urlparse(url).hostname or ""
    _require_host(host, f"no cached copy of {what} and {host} cannot be reached; download {url} and pass --clip-weights FILE")
    from open_clip.pretrained import download_pretrained_from_url

    return download_pretrained_from_url(url)


def hub_file(repo: str, filenames: list[str], what: str, flag: str) -> str:
    """The first of ``filenames`` in Hub repository ``repo`` that is cached or can be downloaded."""
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache

    for name in filenames:
        cached = try_to_load_from_cache(repo, name)
        if isinstance(cached, str):
            return cached
    url = f"{constants.ENDPOINT}/{repo}/resolve/main/{filenames[0]}"
    host = urlparse(constants.ENDPOINT).hostname or ""
    if constants.HF_HUB_OFFLINE:
        raise StclipError(f"no cached copy of {what} and HF_HUB_OFFLINE is set; download {url} and pass {flag}")
    _require_host(host, f"no cached copy of {what} and {host} cannot be reached; download {url} and pass {flag}")
    last: Exception | None = None
    with quiet_logger("huggingface_hub"):  # it logs a warning per retry; our one line says what to do
        for name in filenames:
            try:
                return hf_hub_download(repo, name)
            except Exception as err:  # huggingface_hub raises several unrelated types (HTTP, entry-not-found, OS)
                last = err
    reason = (str(last).strip().splitlines() or [type(last).__name__])[0][:160] if last else "not found"
    raise StclipError(f"could not download {what} from {url} ({reason}); download it and pass {flag}")


def _require_host(host: str, message: str) -> None:
    """Fail at once with ``message`` when ``host`` cannot be reached (behind a proxy, leave it to the download)."""
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return
    try:
        with socket.create_connection((host, 443), timeout=CONNECT_TIMEOUT_S):
            return
    except OSError:
        raise StclipError(message) from None


HUB_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # an org, repo or file name on the Hub: never "..", "/" or "~"


def checkpoint_source(checkpoint: str | None) -> str | None:
    """The local ST-CLIP checkpoint file to use: ``--checkpoint`` (a file or ``hf-hub:ORG/REPO``), else
    ``$STCLIP_CHECKPOINT`` (the same forms), else None."""
    if checkpoint:
        return resolve_checkpoint(checkpoint, "--checkpoint")
    env = os.environ.get(CHECKPOINT_ENV, "").strip()
    return resolve_checkpoint(env, f"${CHECKPOINT_ENV}") if env else None


def resolve_checkpoint(spec: str, flag: str = "--checkpoint") -> str:
    """A local checkpoint file for ``spec``: a path, ``hf-hub:ORG/REPO`` (its stclip.safetensors) or
    ``hf-hub:ORG/REPO/FILE.safetensors``, fetched through huggingface_hub's cache (offline once cached)."""
    if not spec.startswith(HF_PREFIX):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise StclipError(f"checkpoint not found: {spec} ({flag})")
        return str(path)
    ident = spec[len(HF_PREFIX):].strip("/")
    parts = ident.split("/")
    if len(parts) < 2 or not all(HUB_PART.fullmatch(part) and part.strip(".") for part in parts):
        raise StclipError(f"'{spec}' is not a Hub id; use hf-hub:ORG/REPO or hf-hub:ORG/REPO/FILE.safetensors ({flag})")
    repo = "/".join(parts[:2])
    filename = "/".join(parts[2:]) or HUB_CHECKPOINT_NAME
    return hub_file(repo, [filename], f"the ST-CLIP checkpoint {spec}", f"{flag} FILE")


__all__ = ["ClipSource", "checkpoint_source", "clip_source", "hub_file", "resolve_checkpoint"]
