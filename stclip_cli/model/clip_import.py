"""Import open_clip without the transformers library when the backbone does not use it.

open_clip imports transformers (about 0.5 s and 100 MB on a 2-core machine) at its own import, for Hugging Face
text towers and CoCa's text generation, and treats it as optional (it catches the ImportError). A plain CLIP
never touches it, so for a backbone whose config names no Hugging Face part the import is made to fail for that
moment only; transformers stays importable afterwards (peft imports it when training).
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
    """The open_clip module; its first import skips transformers when ``backbone`` is known not to need it."""
    if "open_clip" in sys.modules:
        return sys.modules["open_clip"]
    if backbone is None or "transformers" in sys.modules or needs_transformers(backbone):
        import open_clip

        return open_clip
    sys.modules["transformers"] = None  # type: ignore[assignment]  # `import transformers` raises ImportError
    try:
        import open_clip
    finally:
        if "transformers" in sys.modules and sys.modules["transformers"] is None:
            del sys.modules["transformers"]
    return open_clip


def needs_transformers(backbone: str) -> bool:
    """Whether open_clip needs transformers for ``backbone``: true unless its config file is found and names no
    Hugging Face text tower or tokenizer and no CoCa decoder (an hf-hub: backbone's config is not known yet)."""
    config = _config_file(backbone)
    if config is None:
        return True
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        return True
    text = data.get("text_cfg") if isinstance(data, dict) else None
    if not isinstance(text, dict) or "multimodal_cfg" in data:
        return True
    return any(key in text for key in _HF_TEXT_KEYS)


def _config_file(backbone: str) -> Path | None:
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
            return path
    return None


__all__ = ["import_open_clip", "needs_transformers"]
