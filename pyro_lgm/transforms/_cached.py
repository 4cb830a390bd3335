r"""Validated caches for the library's transforms.

:class:`CachedTransform` replaces :class:`torch.distributions.Transform`'s cache, which is
keyed on the identity of the input tensor alone and so serves old values after a parameter
update, with two caches that are correct by construction (see :mod:`pyro_lgm._cache`):

* the *pair* cache (``cache_size=1``): after ``y = t(x)``, ``t.inv(y)`` returns ``x`` (and
  after ``x = t.inv(y)``, ``t(x)`` returns ``y``) without recomputation - the pattern of
  ``rsample`` followed by ``log_prob`` of the sample, where the inverse may cost ``D`` network
  passes. Only this *reverse* lookup is served: a second call in the *same* direction with
  the same input (every training loop that reuses its data tensor) always recomputes;
* the *log-det* cache: ``log_abs_det_jacobian(x, y)`` for the exact pair ``(x, y)`` that the
  last ``_call`` / ``_inverse`` computed reuses the log-det computed with it (a
  ``TransformedDistribution`` asks for it right after the inverse).

Either is served only while a :class:`~pyro_lgm._cache.Stamp` over the transform's
parameters and buffers, the input and the output is valid: no optimizer step, no in-place
edit, no ``load_state_dict``, no ``.to()`` since, and the grad mode allows it.
"""

from __future__ import annotations

import weakref

import torch
from torch import nn

from pyro_lgm._cache import Stamp

__all__ = ["CachedTransform"]


def _module_tensors(module: nn.Module) -> list[torch.Tensor]:
    """The parameters and buffers of ``module`` and its submodules, read afresh at every call
    (a replaced parameter is seen at once), in a fixed order.

    What ``[*module.parameters(), *module.buffers()]`` holds (a tensor shared between
    submodules may appear twice: harmless in a stamp), without the cost of two recursive
    ``named_modules`` walks with their name bookkeeping - a stamp is taken or checked
    several times per layer and step.
    """
    out: list[torch.Tensor] = []
    seen: set[int] = set()
    stack = [module]
    while stack:
        m = stack.pop()
        if id(m) in seen:
            continue
        seen.add(id(m))
        out.extend(p for p in m._parameters.values() if p is not None)
        out.extend(b for b in m._buffers.values() if b is not None)
        stack.extend(c for c in m._modules.values() if c is not None)
    return out


class CachedTransform:
    """Mixin placed before ``Transform`` / ``TransformModule`` in the bases of a transform.

    Subclasses with tensors that are neither parameters nor buffers of the module (e.g. a
    conditioned transform holding its parameters as plain tensors) extend
    :meth:`_cache_tensors`; ``_call`` / ``_inverse`` may call :meth:`_remember_ldj`, and
    ``log_abs_det_jacobian`` then :meth:`_recall_ldj`.
    """

    _cache_size: int

    def _cache_tensors(self) -> list[torch.Tensor]:
        """Every tensor the transform's values depend on (besides the input)."""
        if isinstance(self, nn.Module):
            return _module_tensors(self)
        return []

    # ------------------------------------------------------------------ pair cache
    def _pair_lookup(self, arg: torch.Tensor, direction: str) -> torch.Tensor | None:
        entry = self.__dict__.get("_pair_entry")
        if entry is None:
            return None
        inp, out, produced_by, stamp = entry
        if produced_by == direction or arg is not out:
            return None
        if not stamp.valid([*self._cache_tensors(), inp, out]):
            return None
        return inp

    def _pair_store(
        self, inp: torch.Tensor, out: torch.Tensor, direction: str, ldj_before: object = None
    ) -> None:
        entry = self.__dict__.get("_ldj_entry")
        if (
            direction == "forward"
            and entry is not None
            and entry is not ldj_before
            and entry[0]() is inp
            and entry[1]() is out
        ):
            # the _call that just ran remembered the log-det of this very pair: its stamp
            # covers the same tensors, in the same order, and nothing ran since
            stamp = entry[3]
        else:
            stamp = Stamp([*self._cache_tensors(), inp, out])
        self.__dict__["_pair_entry"] = (inp, out, direction, stamp)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._cache_size == 0:
            return self._call(x)  # type: ignore[attr-defined]
        hit = self._pair_lookup(x, "forward")
        if hit is not None:
            return hit
        ldj_before = self.__dict__.get("_ldj_entry")
        y = self._call(x)  # type: ignore[attr-defined]
        self._pair_store(x, y, "forward", ldj_before)
        return y

    def _inv_call(self, y: torch.Tensor) -> torch.Tensor:
        if self._cache_size == 0:
            return self._inverse(y)  # type: ignore[attr-defined]
        hit = self._pair_lookup(y, "inverse")
        if hit is not None:
            return hit
        x = self._inverse(y)  # type: ignore[attr-defined]
        self._pair_store(y, x, "inverse")
        return x

    # ------------------------------------------------------------------ log-det cache
    def _remember_ldj(self, x: torch.Tensor, y: torch.Tensor, ldj: torch.Tensor) -> None:
        """Keep ``ldj`` as the log-det of exactly the pair ``(x, y)`` just computed."""
        stamp = Stamp([*self._cache_tensors(), x, y])
        self.__dict__["_ldj_entry"] = (weakref.ref(x), weakref.ref(y), ldj, stamp)

    def _recall_ldj(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        """The remembered log-det if ``(x, y)`` is that pair and nothing changed since."""
        entry = self.__dict__.get("_ldj_entry")
        if entry is None:
            return None
        x_ref, y_ref, ldj, stamp = entry
        if x_ref() is not x or y_ref() is not y:
            return None
        if not stamp.valid([*self._cache_tensors(), x, y]):
            return None
        return ldj

    def clear_cache(self) -> None:
        """Drop both cached entries (never needed for correctness; frees their memory)."""
        self.__dict__["_pair_entry"] = None
        self.__dict__["_ldj_entry"] = None

    def __getstate__(self) -> dict:
        state = super().__getstate__()  # type: ignore[misc]
        state["_pair_entry"] = None
        state["_ldj_entry"] = None
        return state
