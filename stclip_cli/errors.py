"""The one exception type users see: a one-line reason, printed by the CLI without a traceback."""


class StclipError(Exception):
    """A user-facing error; ``str(err)`` is the single line the CLI prints before exiting non-zero."""


def first_line(err: BaseException) -> str:
    """The first line of a library's exception message (its type name when empty), to quote in a StclipError."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
