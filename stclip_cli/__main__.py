"""`python -m stclip_cli` (what torchrun launches for multi-GPU training)."""

from .cli import app

app()
