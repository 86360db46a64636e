"""Ultralytics person-detector files read without running code from them.

A ``.pt`` checkpoint is a pickle: ultralytics unpickles it whole (``torch.load(weights_only=False)``), so a crafted
file runs any code it names. We read it with torch's restricted unpickler and an allow-list derived from the packages
that define ultralytics models (``torch.nn.modules``, ``ultralytics.nn.modules``, ``ultralytics.nn.tasks``, and the
loss classes a training checkpoint may carry), then hand the loaded checkpoint to ultralytics' own ``YOLO`` so that it
never reads the file itself. A ``.yaml`` architecture is checked for the one field ultralytics ``eval``s.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import pkgutil
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch
from torch import nn

from .errors import StclipError, first_line

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


def load_yolo_checkpoint(path: Path, shown: str) -> Any:
    """An ultralytics ``YOLO`` from the local ``.pt`` file ``path``, unpickled by torch's restricted unpickler.

    Anything the file needs beyond the allow-list is refused with one line naming it; ``shown`` is the name the user
    gave, used in messages.
    """
    ckpt = read_checkpoint(path, shown)
    from ultralytics import YOLO
    from ultralytics.nn import tasks

    def serve(weight: Any, *args: Any, **kwargs: Any) -> tuple[dict, str]:
        if Path(weight).resolve() != path.resolve():
            raise StclipError(f"person detector '{shown}': ultralytics asked for another file ({weight})")
        return ckpt, str(weight)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise StclipError(f"person detector '{shown}': ultralytics tried to unpickle a file itself; refused")

    # ultralytics' one file reader is tasks.torch_safe_load; while YOLO is built it serves the checkpoint read above,
    # and torch.load refuses outright, so no ultralytics version can fall back to reading the file unrestricted
    with mock.patch.object(tasks, "torch_safe_load", serve), mock.patch.object(torch, "load", refuse):
        return YOLO(str(path))


def read_checkpoint(path: Path, shown: str) -> dict:
    """The checkpoint dict of an ultralytics ``.pt`` file, or a one-line refusal naming what it needs."""
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


def check_architecture(model: str) -> None:
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
