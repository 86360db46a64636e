"""Third-party log lines kept out of stclip's output: our own one-line messages say what matters."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_logger(name: str | None = None) -> Iterator[None]:
    """Raise logger ``name`` (the root logger when None) to ERROR for the duration, then restore its level."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
