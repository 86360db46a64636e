"""Loading files that hold pickles without running code from them: one policy, its messages, in one place.

A pickle names the functions and classes that rebuild it, so loading one unrestricted runs whatever a crafted file
names. The policy: every pickle stclip reads goes through a restricted unpickler whose allow-list is what that kind
of file genuinely holds, and anything else is refused in one line naming it.

- dataset annotation pickles (JHMDB-GT.pkl, UCF101v2-GT.pkl, AVA proposals): plain containers and numpy arrays only
  (``load_data_pickle``, the standard library's documented ``find_class`` override);
- ultralytics detector ``.pt`` files: torch's restricted unpickler with an allow-list derived from the packages that
  define ultralytics models; model classes are rebuilt as bare instances, never constructed, and ``getattr`` is
  limited to their methods; the loaded checkpoint is then handed to ultralytics' own ``YOLO`` so that it never reads
  the file itself (``load_detector_checkpoint``); a ``.yaml`` architecture is checked for the one field ultralytics
  ``eval``s (``check_detector_architecture``);
- CLIP weights read by open_clip: torch's restricted unpickler, kept restricted on open_clip's retry whatever the
  environment says (``restricted_torch_load``).

Not delegated to ultralytics' own ``torch_safe_load(..., safe_only=True)`` (8.4): it refuses our crafted files, but
it constructs allow-listed classes with arguments from the file (``DetectionModel(cfg)`` runs; only its activation
check stops a crafted cfg) and registers its allow-list for the whole process (``add_safe_globals``), so every later
``weights_only`` load (CLIP weights, our checkpoints) would accept ultralytics classes too.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import importlib
import inspect
import os
import pickle
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from stclip_cli.errors import StclipError, first_line


# ---------------------------------------------------------------- dataset pickles

# what numpy arrays, dtypes and scalars and the plain containers are rebuilt from (numpy 1 and 2 module names)
DATA_GLOBALS = {
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
        if (module, name) not in DATA_GLOBALS:
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


# ---------------------------------------------------------------- ultralytics detector files

MODEL_PACKAGES = ("torch.nn.modules", "ultralytics.nn.modules")
MODEL_MODULES = ("ultralytics.nn.tasks",)
CRITERION_MODULES = ("ultralytics.utils.loss", "ultralytics.utils.tal")  # training checkpoints may pickle their loss
RENAMED = {  # names older ultralytics releases pickled, mapped as ultralytics' own loader maps them
    "ultralytics.yolo.utils.IterableSimpleNamespace": "ultralytics.utils.IterableSimpleNamespace",
    "ultralytics.nn.modules.block.Silence": "torch.nn.modules.linear.Identity",
    "ultralytics.nn.tasks.YOLOv10DetectionModel": "ultralytics.nn.tasks.DetectionModel",
    "ultralytics.utils.loss.v10DetectLoss": "ultralytics.utils.loss.E2EDetectLoss",
}
PATH_NAMES = ("pathlib.PosixPath", "pathlib.WindowsPath", "pathlib._local.PosixPath", "pathlib._local.WindowsPath")
WHY = (
    "only ultralytics and torch.nn model classes are rebuilt from a detector checkpoint, "
    "so that loading it cannot run code"
)


def load_detector_checkpoint(path: Path, shown: str) -> Any:
    """An ultralytics ``YOLO`` from the local ``.pt`` file ``path``, unpickled by torch's restricted unpickler.

    Anything the file needs beyond the allow-list is refused with one line naming it; ``shown`` is the name the user
    gave, used in messages.
    """
    import torch
    from ultralytics import YOLO
    from ultralytics.nn import tasks

    ckpt = read_checkpoint(path, shown)

    def serve(weight: Any, *args: Any, **kwargs: Any) -> tuple[dict, str]:
        if Path(weight).resolve() != path.resolve():
            raise StclipError(f"person detector '{shown}': ultralytics asked for another file ({weight})")
        return ckpt, str(weight)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise StclipError(f"person detector '{shown}': ultralytics tried to unpickle a file itself; refused")

    # ultralytics' one file reader is tasks.torch_safe_load; while YOLO is built it serves the checkpoint read above,
    # and torch.load refuses outright, so no ultralytics version can fall back to reading the file unrestricted
    with _replaced(tasks, "torch_safe_load", serve), _replaced(torch, "load", refuse):
        return YOLO(str(path))


@contextlib.contextmanager
def _replaced(owner: Any, name: str, value: Any) -> Iterator[None]:
    """``owner.name`` is ``value`` inside the block and its own again after it, however the block ends. The one
    place stclip swaps a library attribute: ultralytics' ``YOLO`` takes a file name and reads the file itself, with
    no way to hand it a checkpoint already read (the lead may replace this once ultralytics takes one)."""
    saved = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, saved)


def read_checkpoint(path: Path, shown: str) -> dict:
    """The checkpoint dict of an ultralytics ``.pt`` file, or a one-line refusal naming what it needs."""
    import torch
    from torch import nn

    try:
        needed = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except (ValueError, RuntimeError, OSError) as err:
        raise StclipError(
            f"cannot load person detector '{shown}': not an ultralytics .pt checkpoint ({first_line(err)})"
        ) from None
    allowed = allow_list()
    refused = sorted(name for name in needed if name not in allowed.names)
    if refused:
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise StclipError(
            f"{shown}: refusing to load: it needs {refused[0]}{more}, which is not an ultralytics model class ({WHY})"
        )
    try:
        with torch.serialization.safe_globals(allowed.entries_for(needed)):
            ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # the restricted unpickler raises UnpicklingError, TypeError, RuntimeError, ...
        raise StclipError(f"cannot load person detector '{shown}': {first_line(err)}") from None
    if isinstance(ckpt, nn.Module):
        ckpt = {"model": ckpt}
    model = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else None
    if not isinstance(model, nn.Module) or not hasattr(model, "_modules"):
        raise StclipError(f"cannot load person detector '{shown}': the file holds no ultralytics model")
    return ckpt


def check_detector_architecture(model: str) -> None:
    """Refuse a ``.yaml`` architecture whose ``activation`` is not a plain ``nn.X(literals)``: ultralytics evals it.

    The file is found as ultralytics finds it when it builds (``yolov8n.yaml`` -> ``yolov8.yaml``, ``yolov8n6`` ->
    ``yolov8n-p6``, its packaged configs), so the file checked is the file built.
    """
    from ultralytics.nn.tasks import yaml_model_load

    try:
        config = yaml_model_load(model)
    except Exception as err:  # missing file, YAML syntax: whatever ultralytics raises, one line
        raise StclipError(f"cannot build person detector '{model}': {first_line(err)}") from None
    shown = config.get("yaml_file", model) if isinstance(config, dict) else model
    activation = config.get("activation") if isinstance(config, dict) else None
    if activation is not None and not _is_plain_activation(str(activation)):
        raise StclipError(
            f"{shown}: refusing to build: its activation {str(activation)[:60]!r} is not a torch.nn layer with "
            "literal arguments (ultralytics would run it as Python code)"
        )


def _is_plain_activation(text: str) -> bool:
    """True for ``nn.SiLU()``, ``torch.nn.LeakyReLU(0.1)``: a torch.nn module class called with literals only."""
    from torch import nn

    try:
        call = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        return False
    if not isinstance(call, ast.Call):
        return False
    dotted = ast.unparse(call.func).split(".")
    if dotted[:-1] not in (["nn"], ["torch", "nn"]):
        return False
    cls = getattr(nn, dotted[-1], None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        return False
    try:
        for arg in [*call.args, *(k.value for k in call.keywords)]:
            ast.literal_eval(arg)
    except ValueError:
        return False
    return all(k.arg is not None for k in call.keywords)


class AllowList:
    """What torch's restricted unpickler may rebuild: ``names`` (as a pickle spells them) and the entries to register.

    Every model class is registered as a stand-in that makes a bare instance without running ``__init__``: pickles of
    modules only ever need that, and a crafted file could otherwise call a constructor, and ``DetectionModel(cfg)``
    evaluates a string from ``cfg``. The real class is registered too, because torch checks an instance's own class
    before filling it in, but under a name holding a newline, which no pickle can spell.
    """

    def __init__(self) -> None:
        self._allowed: dict[str, Any] = {}
        self._entries: dict[str, list[tuple[Any, str]]] = {}
        self._values: set[str] = set()
        self._real: dict[Any, type] = {}

    @property
    def names(self) -> set[str]:
        """Every global name a checkpoint may use."""
        return set(self._allowed)

    def add_class(self, cls: type, name: str | None = None) -> None:
        """Allow instances of ``cls`` (pickled as ``name``, default its own) to be rebuilt, never constructed."""
        name = name or f"{cls.__module__}.{cls.__qualname__}"
        stand_in = _bare_instances_of(cls)
        self._real[stand_in] = cls
        self._allowed[name] = cls
        self._entries[name] = [(stand_in, name), (cls, f"{name}\n(instances only)")]

    def add_value(self, value: Any, name: str) -> None:
        """Allow a plain data helper (numpy dtypes and scalars, namespaces, paths) under ``name``."""
        self._allowed[name] = value
        self._entries[name] = [(value, name)]
        self._values.add(name)

    def entries_for(self, needed: list[str]) -> list[tuple[Any, str]]:
        """What to register for a checkpoint naming ``needed``: its classes and every data helper (numpy rebuilds
        dtype instances whose classes the scan of globals does not list). Fewer entries: torch looks them all up
        again at every object it rebuilds."""
        return [e for name, group in self._entries.items() if name in needed or name in self._values for e in group]

    def add_alias(self, old: str, new: str) -> None:
        """Let an older release's name stand for an allowed one (no-op when this ultralytics lacks ``new``)."""
        if new not in self._allowed:
            return
        target = self._allowed[new]
        if target in self._real.values():
            self.add_class(target, old)
        else:
            self.add_value(target, old)

    def getattr(self, obj: Any, name: str) -> Any:
        """``builtins.getattr`` as pickles use it (``Detect.forward``, a fused ``conv.forward_fuse``): methods only."""
        cls = self._real.get(obj)
        owner = cls if cls is not None else type(obj)
        if owner not in self._real.values() or name.startswith("_"):
            raise StclipError(f"refusing getattr({owner.__qualname__}, {name!r}) while loading a detector")
        if not inspect.isfunction(inspect.getattr_static(owner, name, None)):
            raise StclipError(f"refusing getattr({owner.__qualname__}, {name!r}): not a method")
        return getattr(cls if cls is not None else obj, name)


def _bare_instances_of(cls: type) -> type:
    """A class whose construction, however called, returns a bare ``cls`` whose ``__init__`` never ran."""

    def __new__(stand_in: type, *args: Any, **kwargs: Any) -> Any:
        return cls.__new__(cls)

    return type(f"Bare{cls.__name__}", (), {"__new__": __new__, "__module__": __name__})


@functools.cache
def allow_list() -> AllowList:
    """The classes an ultralytics checkpoint needs, derived from the packages that define them (built once)."""
    import numpy as np
    from torch import nn
    from ultralytics.utils import IterableSimpleNamespace

    allowed = AllowList()
    classes: dict[str, type] = {}
    for package in MODEL_PACKAGES:
        for module in _submodules(package):
            classes.update(_defined_classes(module, nn.Module))
    for module in MODEL_MODULES:
        classes.update(_defined_classes(module, nn.Module))
    for module in CRITERION_MODULES:
        classes.update(_defined_classes(module, object))
    for cls in classes.values():
        allowed.add_class(cls)
    allowed.add_value(IterableSimpleNamespace, "ultralytics.utils.IterableSimpleNamespace")
    allowed.add_value(np.dtype, "numpy.dtype")
    scalar = np.float64(0).__reduce__()[0]
    allowed.add_value(scalar, "numpy.core.multiarray.scalar")
    allowed.add_value(scalar, "numpy._core.multiarray.scalar")
    for dtype in {c for c in vars(np.dtypes).values() if isinstance(c, type) and issubclass(c, np.dtype)}:
        allowed.add_value(dtype, f"{dtype.__module__}.{dtype.__qualname__}")
    for name in PATH_NAMES:
        allowed.add_value(type(Path()), name)
    allowed.add_value(allowed.getattr, "builtins.getattr")
    for old, new in RENAMED.items():
        allowed.add_alias(old, new)
    return allowed


def _submodules(package: str) -> list[str]:
    """``package`` and its direct submodules."""
    module = importlib.import_module(package)
    return [package] + [f"{package}.{info.name}" for info in pkgutil.iter_modules(module.__path__)]


def _defined_classes(module_name: str, base: type) -> dict[str, type]:
    """The ``base`` subclasses defined (not imported) in a module, by the name a pickle gives them."""
    module = importlib.import_module(module_name)
    return {
        f"{module_name}.{c.__qualname__}": c
        for c in vars(module).values()
        if isinstance(c, type) and c.__module__ == module_name and issubclass(c, base)
    }


def load_tensor_file(path: Path, what: str) -> Any:
    """A weights-only torch file (tensors, numbers, strings, plain containers) through torch's restricted unpickler,
    with the policy's messages: what it would need to run is named and refused, and garbage is one line."""
    import pickle
    import re
    import warnings

    import torch

    from stclip_cli.errors import StclipError, first_line

    try:
        with warnings.catch_warnings(), restricted_torch_load():  # torch warns about pickle protocols on stderr
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        wanted = re.search(r"GLOBAL ([\w.]+)", text)
        if wanted:
            raise StclipError(f"{path}: refusing to unpickle: it needs {wanted.group(1)}; only weights are imported") from None
        reason = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
        raise StclipError(f"{path}: not a torch checkpoint ({_shown(reason.group(1) if reason else first_line(err))})") from None
    except OSError as err:
        raise StclipError(f"cannot read {what} {path}: {err.strerror or first_line(err)}") from None
    except Exception as err:  # garbage bytes: pickle and torch raise KeyError, IndexError, struct.error, EOFError...
        raise StclipError(f"{path}: not a torch checkpoint ({type(err).__name__}: {_shown(first_line(err))})") from None


def _shown(text: str) -> str:
    """Text from a file or a library, printable and short, for a one-line message."""
    text = ascii(text)[1:-1]
    return text if len(text) <= 80 else text[:77] + "..."


# ---------------------------------------------------------------- CLIP weights (open_clip)


@contextlib.contextmanager
def restricted_torch_load() -> Iterator[None]:
    """Make every ``torch.load`` inside the block use torch's restricted unpickler, whatever the environment says.

    open_clip retries a restricted load that raised TypeError without ``weights_only`` (factory.load_state_dict), and
    $TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD turns that retry into a full unpickle, which a crafted weights file can steer to
    run code. torch's own switch TORCH_FORCE_WEIGHTS_ONLY_LOAD keeps the retry restricted too. The environment is
    given back as it was when the block ends.
    """
    names = ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    saved = {name: os.environ.get(name) for name in names}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
