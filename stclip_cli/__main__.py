"""`python -m stclip_cli` (what torchrun launches for multi-GPU training)."""

from stclip_cli.cli import app

app()
