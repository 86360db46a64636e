"""Build modules without drawing the random initial weights that loaded weights replace next.

ViT-B/16 CLIP and the ST-CLIP heads are about 200 M parameters; drawing their random initial values takes about
2 s on a 2-core CPU, and every one of them is overwritten when a weights file or a checkpoint is loaded with
every name checked. Inside ``skipped_random_init`` every ``torch.nn.init`` function returns its tensor untouched,
and so do the tensor's own random fills (``uniform_``, ``normal_``, ...; what modules that imported an initialiser
by name end in), leaving the freshly allocated memory as it is. Everything else (constant buffers such as CLIP's
causal mask, ``fill_``/``zero_``, copies) runs as usual. torch has no switch for this (``skip_init`` builds on the
meta device, which loses such buffers): the initialisers are swapped for the block (as transformers'
``no_init_weights`` does) and a TorchFunctionMode catches the fills; the swap also keeps ``trunc_normal_``'s
rejection loop from ever running on memory no fill has touched.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

_RANDOM_FILLS = {
    torch.Tensor.uniform_, torch.Tensor.normal_, torch.Tensor.random_, torch.Tensor.bernoulli_,
    torch.Tensor.exponential_, torch.Tensor.log_normal_, torch.Tensor.cauchy_, torch.Tensor.geometric_,
}
_INIT_NAMES = [name for name in dir(torch.nn.init)
               if name.endswith("_") and not name.startswith("_") and callable(getattr(torch.nn.init, name))]
_INIT_FUNCTIONS = {getattr(torch.nn.init, name) for name in _INIT_NAMES}


class _SkipRandomFills(TorchFunctionMode):
    """Returns the tensor unchanged for random fills and ``torch.nn.init`` initialisers; runs every other call."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        if func in _RANDOM_FILLS or func in _INIT_FUNCTIONS:
            return args[0] if args else next(iter((kwargs or {}).values()))
        return func(*args, **(kwargs or {}))


def _untouched(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    return tensor


@contextmanager
def skipped_random_init(enabled: bool = True) -> Iterator[None]:
    """Within, modules are built with uninitialised (not random) weights; use only when every weight is then
    loaded with all names checked (open_clip's strict loading, ``load_weights``). Not thread-safe (it swaps the
    ``torch.nn.init`` functions for the block)."""
    if not enabled:
        yield
        return
    saved = {name: getattr(torch.nn.init, name) for name in _INIT_NAMES}
    for name in _INIT_NAMES:
        setattr(torch.nn.init, name, _untouched)
    try:
        with _SkipRandomFills():
            yield
    finally:
        for name, function in saved.items():
            setattr(torch.nn.init, name, function)


__all__ = ["skipped_random_init"]
