r"""Stamps that prove a cached value is still the value a fresh computation would give.

A :class:`Stamp` records, when a value is computed, the tensors it was computed from -
parameters, buffers, the input - by *identity* (a weak reference), storage address, dtype,
device and in-place version counter, together with the grad mode and a global
*optimizer generation*. The cached value is served only while all of these are unchanged.

Why each part is needed (``docs/DESIGN.md``, "Caches are correct by construction"):

* ``Tensor._version`` catches in-place edits under ``no_grad``, ``load_state_dict``
  (``copy_``), mask resampling (``copy_``) and plain or foreach optimizer steps;
* torch's *fused* optimizers update parameters without bumping ``_version`` on the CPU, so
  every ``torch.optim.Optimizer.step`` (fused or not, including the torch optimizers inside
  Pyro's ``pyro.optim`` wrappers) increments the generation through a global
  optimizer-step post hook, and every stamp taken before the step is void;
* identity and storage address catch ``.to()`` / ``.double()`` (new storage) and
  ``param.data = ...`` (new storage, same version): a weak reference, unlike an address,
  cannot be fooled by a new tensor allocated where a freed one lived.

The one edit no stamp can see is an in-place write through ``.data`` (``p.data.add_(1)``:
torch gives ``.data`` its own version counter). Code that does this must call
:func:`invalidate_caches` afterwards.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

__all__ = ["Stamp", "invalidate_caches"]

_generation = 0


def invalidate_caches() -> None:
    """Void every cached value of every transform and network of the library.

    Called automatically after every ``torch.optim.Optimizer.step()``. Call it yourself
    after editing parameters through ``.data`` (which torch hides from version counters).

    Example:
        >>> import torch
        >>> from pyro_lgm.transforms import affine_autoregressive
        >>> t = affine_autoregressive(2, [8])
        >>> x = torch.randn(3, 2)
        >>> y = t(x)
        >>> _ = t.made.output_layer.bias.data.add_(1.0)  # invisible to torch
        >>> invalidate_caches()
        >>> torch.allclose(t.inv(y), x)  # recomputed with the new bias: no longer x
        False
    """
    global _generation
    _generation += 1


def _after_step(optimizer: object, args: object, kwargs: object) -> None:
    invalidate_caches()


_hook = register_optimizer_step_post_hook(_after_step)


def _entry(t: torch.Tensor) -> tuple:
    return (weakref.ref(t), t.data_ptr(), t._version, t.dtype, t.device)


class Stamp:
    """What a value was computed from; :meth:`valid` says whether it may still be served.

    Args:
        tensors: every tensor the value depends on (parameters, buffers, inputs).
        generation: also depend on the optimizer generation (``False`` for values that
            depend on buffers only, such as a MADE's masks, which optimizers never touch).
    """

    __slots__ = ("entries", "generation", "grad")

    def __init__(self, tensors: Iterable[torch.Tensor], generation: bool = True) -> None:
        self.entries = tuple(_entry(t) for t in tensors)
        self.generation = _generation if generation else None
        self.grad = torch.is_grad_enabled()

    def valid(self, tensors: Sequence[torch.Tensor]) -> bool:
        """True iff ``tensors`` are the stamped tensors, unchanged, and no step happened.

        A value computed without autograd is not valid while autograd is on (it carries
        no graph); one computed with autograd is valid in both modes.
        """
        if self.generation is not None and self.generation != _generation:
            return False
        if torch.is_grad_enabled() and not self.grad:
            return False
        if len(tensors) != len(self.entries):
            return False
        for t, (ref, ptr, version, dtype, device) in zip(tensors, self.entries):
            if (
                ref() is not t
                or t._version != version
                or t.data_ptr() != ptr
                or t.dtype != dtype
                or t.device != device
            ):
                return False
        return True
