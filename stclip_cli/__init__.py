"""stclip: zero-shot spatio-temporal action detection in video with ST-CLIP on open_clip."""

__version__ = "0.1.0"

from pathlib import Path as _Path

ASSETS = _Path(__file__).resolve().parent / "assets"
SAMPLE_VIDEO = ASSETS / "arm_wrestling.mp4"  # mmaction2's Apache-2.0 demo clip (see assets/NOTICE)
# the model cards (models/ at the repository's top level) are installed as stclip_cli/models by a wheel
MODELS = next((d for d in (_Path(__file__).resolve().parent / "models", _Path(__file__).resolve().parents[1] / "models")
               if (d / "stclip-vitb16.yaml").is_file()), _Path(__file__).resolve().parents[1] / "models")
