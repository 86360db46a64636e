"""The one exception type users see: a one-line reason, printed by the CLI without a traceback."""


class StclipError(Exception):
    """A user-facing error; ``str(err)`` is the single line the CLI prints before exiting non-zero."""
