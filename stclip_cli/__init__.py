"""stclip: zero-shot spatio-temporal action detection in video with ST-CLIP on open_clip."""

__version__ = "0.1.0"
