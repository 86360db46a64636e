"""Dataset annotation pickles (JHMDB-GT.pkl, UCF101v2-GT.pkl, AVA proposals) read without running code.

These files hold only plain containers and numpy arrays, so a restricted unpickler that can rebuild nothing else reads
every genuine one, and refuses a crafted one in one line instead of executing what it names. Hand-written (a dozen
lines) because the standard library's documented way to restrict pickle is exactly this ``find_class`` override.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from stclip_cli.errors import StclipError

# what numpy arrays, dtypes and scalars and the plain containers are rebuilt from (numpy 1 and 2 module names)
ALLOWED = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),  # protocol 5 arrays
    ("_codecs", "encode"),  # protocol 2 stores an array's bytes as a latin-1 string re-encoded on load
    ("collections", "OrderedDict"), ("collections", "defaultdict"),
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "list"), ("builtins", "dict"), ("builtins", "tuple"),
}


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED:
            raise pickle.UnpicklingError(f"it needs {module}.{name}")
        return super().find_class(module, name)


def load_data_pickle(path: str | Path, what: str = "annotation file") -> Any:
    """Read a dataset pickle (Python 2 pickles decoded as latin1), refusing anything but data."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _DataUnpickler(f, encoding="latin1").load()
    except FileNotFoundError:
        raise StclipError(f"{what} not found: {path}") from None
    except pickle.UnpicklingError as err:
        reason = str(err)
        if reason.startswith("it needs "):
            raise StclipError(f"{path}: refusing to unpickle: {reason}, which is not data") from None
        raise StclipError(f"{path} is not a readable pickle ({reason})") from None
    except (EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError) as err:
        raise StclipError(f"{path} is not a readable pickle ({err})") from None
