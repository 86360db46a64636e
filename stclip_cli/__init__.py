"""stclip: zero-shot spatio-temporal action detection in video with ST-CLIP on open_clip."""

__version__ = "0.1.0"

from pathlib import Path as _Path

ASSETS = _Path(__file__).resolve().parent / "assets"
SAMPLE_VIDEO = ASSETS / "arm_wrestling.mp4"  # mmaction2's Apache-2.0 demo clip (see assets/NOTICE)
# the model cards: models/ at the top of a source checkout, installed as stclip_cli/models by a wheel
MODELS = _Path(__file__).resolve().parent / "models"
if not MODELS.is_dir():
    MODELS = MODELS.parents[1] / "models"
