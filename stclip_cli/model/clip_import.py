"""Import open_clip without the transformers and timm libraries when the backbone does not use them.

open_clip imports transformers (about 0.5 s and 100 MB on a 2-core machine) for Hugging Face text towers and CoCa's
text generation, and timm (about 0.45 s) for timm image towers, at its own import, whether or not the model uses
them; it treats both as optional (it catches the ImportError). A plain CLIP ViT, the only tower ST-CLIP runs on,
never touches them, so for a backbone whose config names no such part the import is made to fail for that moment
only; both stay importable afterwards (peft imports transformers when training).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

from stclip_cli import MODELS

# a model config with one of these text_cfg keys (or a multimodal CoCa decoder) needs transformers in open_clip
_HF_TEXT_KEYS = ("hf_model_name", "hf_tokenizer_name")


def import_open_clip(backbone: str | None = None) -> ModuleType:
    """The open_clip module; its first import skips the optional libraries ``backbone`` is known not to need."""
    if "open_clip" in sys.modules:
        return sys.modules["open_clip"]
    skipped = [name for name in unneeded_libraries(backbone) if name not in sys.modules]
    for name in skipped:
        sys.modules[name] = None  # type: ignore[assignment]  # `import name` raises ImportError
    try:
        import open_clip
    finally:
        for name in skipped:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    return open_clip


def unneeded_libraries(backbone: str | None) -> list[str]:
    """The optional libraries open_clip can be imported without for ``backbone``: none unless its config file is
    found (an hf-hub: backbone's is not known yet); transformers unless it names a Hugging Face text tower or
    tokenizer or a CoCa decoder; timm unless it names a timm image tower."""
    config = _config(backbone) if backbone is not None else None
    if config is None:
        return []
    text, vision = config.get("text_cfg"), config.get("vision_cfg")
    if not isinstance(text, dict) or not isinstance(vision, dict):
        return []
    unneeded = []
    if "multimodal_cfg" not in config and not any(key in text for key in _HF_TEXT_KEYS):
        unneeded.append("transformers")
    if "timm_model_name" not in vision:
        unneeded.append("timm")
    return unneeded


def needs_transformers(backbone: str) -> bool:
    """Whether open_clip needs transformers for ``backbone`` (true unless its config is known to name no Hugging
    Face part)."""
    return "transformers" not in unneeded_libraries(backbone)


def _config(backbone: str) -> dict | None:
    """The JSON config open_clip would read for ``backbone`` (ours in models/open_clip, or open_clip's own)."""
    if backbone.startswith("hf-hub:") or "/" in backbone or "\\" in backbone:
        return None
    spec = importlib.util.find_spec("open_clip")
    folders = [MODELS / "open_clip"]
    if spec is not None and spec.submodule_search_locations:
        folders.append(Path(next(iter(spec.submodule_search_locations))) / "model_configs")
    for folder in folders:
        path = folder / f"{backbone}.json"
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                return None
            return data if isinstance(data, dict) else None
    return None


__all__ = ["import_open_clip", "needs_transformers", "unneeded_libraries"]
