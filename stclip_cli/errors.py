"""The exception types users see: a one-line reason printed without a traceback, and termination by a signal."""


class StclipError(Exception):
    """A user-facing error; ``str(err)`` is the single line the CLI prints before exiting non-zero."""


class OutputClosed(StclipError):
    """Standard output's reader went away (``stclip ... | head -1``): the run stops quietly, as Unix tools do."""


class Terminated(BaseException):
    """SIGTERM (schedulers, ``timeout``), raised like Ctrl-C's KeyboardInterrupt so every output is cleaned up.

    A BaseException, as KeyboardInterrupt is, so that ``except Exception`` blocks do not swallow it.
    """


def first_line(err: BaseException) -> str:
    """The first line of a library's exception message (its type name when empty), to quote in a StclipError."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
