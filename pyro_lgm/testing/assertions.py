r"""Property assertions for transforms and distributions.

Each assertion raises :class:`AssertionError` with a message saying which property failed,
where (batch index, position) and by how much; it returns ``None`` when the property holds.

* :func:`assert_bijective` - :math:`f^{-1}(f(x)) = x` and :math:`f(f^{-1}(y)) = y`,
  evaluated on fresh tensors so a transform's cache cannot hide a missing inverse.
* :func:`assert_log_abs_det_jacobian` - ``log_abs_det_jacobian`` equals
  :math:`\log|\det \partial f(x)/\partial x|` of the Jacobian built with
  :mod:`torch.autograd` on a float64 copy of the transform.
* :func:`assert_inverse_log_det` - the inverse's log-det is the negative of the forward's.
* :func:`assert_depends_on_context` - a conditional transform or distribution changes when
  its context does.
* :func:`assert_autoregressive` - output ``i`` has exactly zero gradient with respect to
  every input at or after ``i`` in the order, and optionally no blind spot.
* :func:`assert_normalized` - a discrete distribution sums to one over its whole support;
  a continuous one in one or two dimensions integrates to one.

Unless given, the tolerances of the first three are :func:`tolerance` of the input's dtype:
:math:`\sqrt{\epsilon}` for ``atol`` and ``rtol`` (1.5e-8 in float64, 3.5e-4 in float32); the
reasoning is in :func:`tolerance`'s docstring.
"""

from __future__ import annotations

import copy
import itertools
import math
import weakref
from collections.abc import Callable, Sequence

import torch
from pyro.distributions import ConditionalDistribution, ConditionalTransform
from torch import nn
from torch.distributions import Distribution, Transform, constraints
from torch.distributions.transforms import ComposeTransform, _InverseTransform

__all__ = [
    "assert_autoregressive",
    "assert_bijective",
    "assert_depends_on_context",
    "assert_inverse_log_det",
    "assert_log_abs_det_jacobian",
    "assert_normalized",
    "devices",
    "to_float64",
    "tolerance",
]


def tolerance(dtype: torch.dtype) -> dict[str, float]:
    r"""Default ``atol``/``rtol`` of the assertions for computations in ``dtype``.

    Both are :math:`\sqrt{\epsilon}` of ``dtype`` (``torch.finfo(dtype).eps``): about
    1.5e-8 in float64, 3.5e-4 in float32, 3.1e-2 in float16 and 8.8e-2 in bfloat16. A value
    ``v`` passes against its reference ``r`` when :math:`|v - r| \le a + r_{tol} |r|`.

    Why :math:`\sqrt{\epsilon}`: a correct computation in ``dtype`` is off by about
    :math:`k\,\epsilon\,\kappa` (``k`` rounding steps, condition number :math:`\kappa`), so
    the default lets a computation lose up to half of its significant digits to rounding and
    conditioning (:math:`k \kappa \le 1/\sqrt{\epsilon}`, i.e. 6.7e7 in float64, 2.9e3 in
    float32), while an error that is not rounding - a wrong constant or term, an inverse
    that stops early - is far larger than :math:`\sqrt{\epsilon}` relative and fails. The
    kit's own self-tests (``tests/test_testing_kit.py``) check that a log-det off by 1e-6
    in float64 or a float64 inverse off by 1e-5 relative fail with these defaults; both pass
    with tolerances 1000 times looser. A problem that is worse conditioned than
    :math:`1/\sqrt{\epsilon}` (a planar flow near its invertibility boundary in float32)
    needs an explicit tolerance derived from its conditioning, not a looser default.

    Example:
        >>> tolerance(torch.float64)
        {'atol': 1.4901161193847656e-08, 'rtol': 1.4901161193847656e-08}
        >>> round(tolerance(torch.float32)["rtol"], 6)
        0.000345
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype: expected a floating dtype, got {dtype}")
    root_eps = math.sqrt(torch.finfo(dtype).eps)
    return {"atol": root_eps, "rtol": root_eps}


def devices() -> list[torch.device]:
    """The devices the property suite runs on: the CPU, plus CUDA when it is visible.

    Example:
        >>> devices()[0]
        device(type='cpu')
    """
    out = [torch.device("cpu")]
    if torch.cuda.is_available():
        out.append(torch.device("cuda"))
    return out


def _tol(dtype: torch.dtype, atol: float | None, rtol: float | None) -> tuple[float, float]:
    d = tolerance(dtype if dtype.is_floating_point else torch.float64)
    return (d["atol"] if atol is None else atol, d["rtol"] if rtol is None else rtol)


def _fmt_index(flat: int, shape: torch.Size) -> tuple[int, ...]:
    idx = []
    for s in reversed(shape):
        idx.append(flat % s)
        flat //= s
    return tuple(reversed(idx))


def _assert_close(
    actual: torch.Tensor,
    expected: torch.Tensor,
    atol: float,
    rtol: float,
    what: str,
) -> None:
    if actual.shape != expected.shape:
        try:
            actual, expected = torch.broadcast_tensors(actual, expected)
        except RuntimeError:
            raise AssertionError(
                f"{what}: shape {tuple(actual.shape)} does not match expected "
                f"{tuple(expected.shape)}"
            ) from None
    a = actual.detach().to(torch.float64)
    e = expected.detach().to(device=a.device, dtype=torch.float64)
    if not torch.isfinite(a).all():
        bad = (~torch.isfinite(a)).nonzero()[0].tolist()
        raise AssertionError(f"{what}: non-finite value {a[tuple(bad)].item()} at index {bad}")
    err = (a - e).abs()
    allowed = atol + rtol * e.abs()
    if (err > allowed).any():
        flat = int(torch.argmax(err - allowed).item())
        idx = _fmt_index(flat, err.shape)
        raise AssertionError(
            f"{what}: max error {err.max().item():.3e} exceeds tolerance "
            f"(atol={atol:g}, rtol={rtol:g}); at index {idx} got {a[idx].item():.10g}, "
            f"expected {e[idx].item():.10g}"
        )


def _clear_cache(t: object) -> None:
    """Drop every cached value of ``t`` (and of its parts, for inverses and compositions):
    ``clear_cache()`` where the transform has one (the library's validated caches), torch's
    ``_cached_x_y`` otherwise."""
    if not isinstance(t, Transform):
        return
    clear = getattr(t, "clear_cache", None)
    if callable(clear):
        clear()
    if hasattr(t, "_cached_x_y"):
        t._cached_x_y = None, None
    inner = t.__dict__.get("_inv")
    if isinstance(inner, weakref.ref):
        inner = inner()
    if isinstance(t, _InverseTransform) and inner is not None:
        _clear_cache(inner)
    for part in getattr(t, "parts", ()) if isinstance(t, ComposeTransform) else ():
        _clear_cache(part)


def _cast64(obj: object, memo: dict[int, object]) -> object:
    key = id(obj)
    if key in memo:
        return memo[key]
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        if t.is_floating_point():
            t = t.to(torch.float64)
        elif t.is_complex():
            t = t.to(torch.complex128)
        else:
            t = t.clone()
        if isinstance(obj, nn.Parameter):
            t = nn.Parameter(t.clone(), requires_grad=obj.requires_grad)
        memo[key] = t
        return t
    if isinstance(obj, torch.Size):
        return obj
    if isinstance(obj, list):
        out_list: list = []
        memo[key] = out_list
        out_list.extend(_cast64(v, memo) for v in obj)
        return out_list
    if isinstance(obj, tuple):
        items = [_cast64(v, memo) for v in obj]
        if hasattr(obj, "_fields"):  # namedtuple
            out = type(obj)(*items)
        else:
            out = type(obj)(items)
        memo[key] = out
        return out
    if isinstance(obj, dict):
        out_dict = type(obj)()
        memo[key] = out_dict
        for k, v in obj.items():
            out_dict[k] = _cast64(v, memo)
        return out_dict
    if isinstance(obj, (nn.Module, Transform, Distribution)):
        new = copy.copy(obj)
        memo[key] = new
        for k, v in obj.__dict__.items():
            if isinstance(v, weakref.ref):
                new.__dict__[k] = None
            elif k == "_cached_x_y":
                new.__dict__[k] = (None, None)
            else:
                new.__dict__[k] = _cast64(v, memo)
        _clear_cache(new)  # the copy's cache entries hold float32 tensors of the original
        return new
    return obj


def to_float64(obj: object) -> object:
    """A float64 copy of a transform, module or distribution, leaving the original intact.

    Parameters, buffers and tensor attributes (also non-leaf tensors, e.g. the parameters
    of a conditioned transform) are detached and cast; caches are cleared.

    Example:
        >>> from torch.distributions import AffineTransform
        >>> t = AffineTransform(torch.zeros(2), torch.ones(2))
        >>> to_float64(t).scale.dtype
        torch.float64
    """
    return _cast64(obj, {})


def _event_shape(x: torch.Tensor, event_dim: int, name: str) -> torch.Size:
    if x.dim() < event_dim:
        raise ValueError(
            f"{name}: expected at least {event_dim} dimensions for event_dim={event_dim}, "
            f"got shape {tuple(x.shape)}"
        )
    return x.shape[x.dim() - event_dim :]


def assert_bijective(
    t: Transform, x: torch.Tensor, *, atol: float | None = None, rtol: float | None = None
) -> None:
    r"""Assert :math:`f^{-1}(f(x)) = x` and :math:`f(f^{-1}(y)) = y` for ``y = f(x)``.

    Every call gets a fresh tensor (``detach().clone()``), so a transform whose inverse
    only works through the ``cache_size=1`` cache (as Pyro's planar flow) fails here.

    Args:
        t: the transform.
        x: ``(*batch, *event)`` points in ``t.domain``.
        atol, rtol: tolerances; default :func:`tolerance` of ``x.dtype``
            (:math:`\sqrt{\epsilon}`). The round trip of a well-conditioned map loses a few
            ulps; an inverse whose Jacobian has condition number :math:`\kappa` loses
            :math:`\kappa` ulps, so past :math:`\kappa \approx 1/\sqrt{\epsilon}` pass an
            explicit tolerance.

    Example:
        >>> from torch.distributions import ExpTransform
        >>> assert_bijective(ExpTransform(), torch.randn(5, dtype=torch.float64))
    """
    atol, rtol = _tol(x.dtype, atol, rtol)
    name = type(t).__name__
    x = x.detach().clone()
    y = t(x).detach().clone()
    try:
        x_rec = t.inv(y.detach().clone())
    except Exception as exc:  # a missing inverse is a failed property, not a crash
        raise AssertionError(
            f"{name}: inverse raised {type(exc).__name__}: {exc} on a fresh tensor"
        ) from exc
    _assert_close(x_rec, x, atol, rtol, f"{name}: inv(f(x)) != x")
    y_rec = t(x_rec.detach().clone())
    _assert_close(y_rec, y, atol, rtol, f"{name}: f(inv(y)) != y")


def _jacobian_blocks(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, event_dim_in: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-batch-element Jacobians of ``fn`` (batch elements assumed independent).

    Returns ``(y, J)`` with ``J`` of shape ``(N, D_out, D_in)``.
    """
    x = x.detach().clone().requires_grad_(True)
    y = fn(x)
    n = int(math.prod(x.shape[: x.dim() - event_dim_in]))
    d_in = int(math.prod(x.shape[x.dim() - event_dim_in :]))
    y_flat = y.reshape(n, -1)
    d_out = y_flat.shape[1]
    rows = []
    for j in range(d_out):
        out_j = y_flat[:, j].sum()
        if not out_j.requires_grad:
            rows.append(torch.zeros(n, d_in, dtype=x.dtype, device=x.device))
            continue
        (g,) = torch.autograd.grad(out_j, x, retain_graph=True, allow_unused=True)
        if g is None:
            g = torch.zeros_like(x)
        rows.append(g.reshape(n, d_in))
    jac = torch.stack(rows, dim=1)
    return y, jac


def assert_log_abs_det_jacobian(
    t: Transform, x: torch.Tensor, *, atol: float | None = None, rtol: float | None = None
) -> None:
    r"""Assert ``t.log_abs_det_jacobian(x, t(x))`` equals :math:`\log|\det J_f(x)|`.

    The reference Jacobian is built with :mod:`torch.autograd` on a float64 copy of ``t``
    (see :func:`to_float64`), one block per batch element; for ``(C, H, W)`` events it is
    the Jacobian of the flattened event. Both the float64 copy and ``t`` itself (in its own
    dtype) must match the reference. Context batches of conditioned transforms that
    broadcast against ``x`` are handled by expanding ``x`` first.

    Args:
        t: the transform; ``t.domain.event_dim`` decides what an event is.
        x: ``(*batch, *event)`` points in ``t.domain``.
        atol, rtol: tolerances for ``t`` in ``x.dtype``; default :func:`tolerance` of
            ``x.dtype`` (:math:`\sqrt{\epsilon}`). The float64 copy is always checked too,
            with the float64 defaults (:math:`\sqrt{\epsilon_{64}} \approx 1.5\times10^{-8}`)
            unless ``x`` is float64 and tolerances are given, so an error in the formula
            shows at float64 precision even when ``x`` is float32.

    Example:
        >>> from torch.distributions import ExpTransform
        >>> assert_log_abs_det_jacobian(ExpTransform(), torch.randn(4, 3))
    """
    name = type(t).__name__
    atol, rtol = _tol(x.dtype, atol, rtol)
    ed_in = t.domain.event_dim
    ed_out = t.codomain.event_dim
    _event_shape(x, ed_in, "x")
    with torch.no_grad():
        y0 = t(x.detach().clone())
    out_batch = y0.shape[: y0.dim() - ed_out]
    in_event = x.shape[x.dim() - ed_in :]
    x_full = x.detach().expand(out_batch + in_event).clone()

    t64 = to_float64(t)
    _clear_cache(t)
    x64 = x_full.to(torch.float64)
    y64, jac = _jacobian_blocks(t64, x64, ed_in)
    if jac.shape[1] != jac.shape[2]:
        raise AssertionError(
            f"{name}: Jacobian is not square ({jac.shape[1]} outputs, {jac.shape[2]} inputs)"
        )
    ref = torch.linalg.slogdet(jac)[1].reshape(out_batch)

    ld64 = t64.log_abs_det_jacobian(x64, y64.detach())
    a64, r64 = _tol(torch.float64, None, None)
    if x.dtype == torch.float64:
        a64, r64 = atol, rtol
    _assert_close(
        ld64.expand(out_batch) if ld64.dim() <= len(out_batch) else ld64,
        ref,
        a64,
        r64,
        f"{name}: log_abs_det_jacobian (float64 copy) != log|det J| from autograd",
    )
    y = t(x_full)
    ld = t.log_abs_det_jacobian(x_full, y)
    _assert_close(
        ld.expand(out_batch) if ld.dim() <= len(out_batch) else ld,
        ref,
        atol,
        rtol,
        f"{name}: log_abs_det_jacobian ({x.dtype}) != log|det J| from autograd",
    )


def assert_inverse_log_det(
    t: Transform, x: torch.Tensor, *, atol: float | None = None, rtol: float | None = None
) -> None:
    r"""Assert ``t.inv.log_abs_det_jacobian(y, x) == -t.log_abs_det_jacobian(x, y)``.

    The inverse side is evaluated on a fresh ``y`` and the ``x`` that ``t.inv`` computes
    from it, *after* the forward call, so log-dets that silently reuse state from the last
    forward pass are caught.

    Args:
        t: the transform.
        x: ``(*batch, *event)`` points in ``t.domain``.
        atol, rtol: tolerances; default :func:`tolerance` of ``x.dtype``
            (:math:`\sqrt{\epsilon}`). The inverse's log-det is evaluated at the computed
            ``t.inv(y)``, so an inaccurate inverse shows here as well.

    Example:
        >>> from torch.distributions import ExpTransform
        >>> assert_inverse_log_det(ExpTransform(), torch.randn(4, dtype=torch.float64))
    """
    atol, rtol = _tol(x.dtype, atol, rtol)
    x = x.detach().clone()
    y = t(x)
    fwd = t.log_abs_det_jacobian(x, y).detach()
    y_fresh = y.detach().clone()
    x_back = t.inv(y_fresh)
    inv = t.inv.log_abs_det_jacobian(y_fresh, x_back).detach()
    _assert_close(
        inv,
        -fwd,
        atol,
        rtol,
        f"{type(t).__name__}: inv.log_abs_det_jacobian(y, x) != -log_abs_det_jacobian(x, y)",
    )


def _conditioned(obj: object, context: torch.Tensor) -> object:
    """What ``obj`` computes under ``context``: a Transform or a Distribution."""
    if isinstance(obj, ConditionalTransform | ConditionalDistribution):
        out = obj.condition(context)
    elif callable(obj):
        out = obj(context)
    else:
        raise ValueError(
            "obj: expected a conditional transform or distribution (with .condition(context)) "
            f"or a callable context -> Transform / Distribution, got {type(obj).__name__}"
        )
    if not isinstance(out, Transform | Distribution):
        raise ValueError(
            f"obj: conditioning on a context gave a {type(out).__name__}, expected a "
            "torch.distributions.Transform or Distribution"
        )
    return out


def _changed(
    a: torch.Tensor, b: torch.Tensor, batch_dims: int, atol: float, rtol: float, what: str
) -> tuple[bool, float]:
    """Whether some batch element of ``a`` and ``b`` differs beyond the tolerance, and the
    largest change."""
    a, b = torch.broadcast_tensors(a.detach().to(torch.float64), b.detach().to(torch.float64))
    for v in (a, b):
        if not torch.isfinite(v).all():
            raise AssertionError(f"{what}: non-finite value, cannot compare")
    excess = (a - b).abs() - (atol + rtol * torch.maximum(a.abs(), b.abs()))
    if excess.dim() > batch_dims:
        excess = excess.flatten(batch_dims).amax(-1)
    return bool((excess > 0).any()), float((a - b).abs().max()) if a.numel() else 0.0


def assert_depends_on_context(
    obj: object,
    x: torch.Tensor,
    context: torch.Tensor,
    other_context: torch.Tensor | None = None,
    *,
    atol: float | None = None,
    rtol: float | None = None,
) -> None:
    r"""Assert that changing the context changes what a conditional object computes.

    ``obj`` is conditioned on ``context`` and on ``other_context`` (:math:`c`, :math:`c'`):

    * a conditional transform (a Pyro ``ConditionalTransform``, e.g.
      :class:`~pyro_lgm.transforms.ConditionalPlanar`: ``obj.condition(c)``) must give
      :math:`f(x; c) \ne f(x; c')` and :math:`f^{-1}(y; c) \ne f^{-1}(y; c')` at
      :math:`y = f(x; c)`;
    * a conditional distribution (a Pyro ``ConditionalDistribution``:
      ``obj.condition(c)``, or any callable ``obj(c)`` returning a Distribution, such as
      ``pyro_lgm.models.NADE(..., context_dim=C)`` or a conditional
      :class:`~pyro_lgm.models.Flow`) must give :math:`\log p(x \mid c) \ne \log p(x \mid c')`;
    * a callable ``obj(c)`` returning a Transform is checked as a transform.

    "Differ" means: for at least one batch element, some value changes by more than
    ``atol + rtol * |value|`` (default :func:`tolerance` of the value's dtype,
    :math:`\sqrt{\epsilon}`), so rounding noise never counts as a dependence. One element
    suffices because a correct network can legitimately be flat in the context at some
    points (e.g. ReLU units dead for both contexts); give a batch of several contexts (as
    rows of ``context``) to make a false failure vanishingly unlikely. An object that
    ignores its context - parameters computed from ``zeros_like(context)``, a context that
    never reaches the network - changes nothing and fails.

    ``obj`` must be deterministic apart from the context (build EoNADE orderings from a
    seeded generator inside the callable). A newly built conditional transform or flow of
    this library *does* ignore its context: its networks' last layers start at zero so that
    it starts as the (near-)identity; perturb or train it first.

    Args:
        obj: the conditional transform / distribution, or a callable ``context -> object``.
        x: ``(*batch, *event)`` points in the transform's domain or the distribution's
            support.
        context: ``(*context_batch, C)`` context; its batch broadcasts against ``x``'s.
        other_context: the second context, same shape; default
            ``context + N(0, I)`` drawn from a generator seeded with 0.
        atol, rtol: the size of change that counts.

    Example:
        >>> from pyro_lgm.transforms import conditional_planar
        >>> _ = torch.manual_seed(0)
        >>> t = conditional_planar(3, context_dim=2, hidden_dims=[8])  # last layer: zero
        >>> x, context = torch.randn(5, 3), torch.randn(5, 2)
        >>> assert_depends_on_context(t, x, context)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        AssertionError: ConditionalPlanar: f(x; context) does not depend on the context: ...
        >>> with torch.no_grad():
        ...     _ = t.nn.layers[-1].weight.normal_()
        >>> assert_depends_on_context(t, x, context)
    """
    if not isinstance(x, torch.Tensor) or not isinstance(context, torch.Tensor):
        raise ValueError(
            f"x, context: expected tensors, got {type(x).__name__}, {type(context).__name__}"
        )
    if other_context is None:
        g = torch.Generator().manual_seed(0)
        noise = torch.randn(context.shape, generator=g, dtype=torch.float64)
        other_context = context + noise.to(dtype=context.dtype, device=context.device)
    elif not isinstance(other_context, torch.Tensor) or other_context.shape != context.shape:
        raise ValueError(
            f"other_context: expected a tensor of the context's shape {tuple(context.shape)}, "
            f"got {getattr(other_context, 'shape', type(other_context).__name__)}"
        )
    name = type(obj).__name__
    first, second = _conditioned(obj, context), _conditioned(obj, other_context)
    x = x.detach().clone()
    if isinstance(first, Transform):
        if not isinstance(second, Transform):
            raise ValueError("obj: the two contexts gave a Transform and a Distribution")
        ed_out = first.codomain.event_dim
        with torch.no_grad():
            y1 = first(x.clone())
            y2 = second(x.clone())
            x1 = first.inv(y1.clone())
            x2 = second.inv(y1.clone())
        checks = [
            ("f(x; context)", y1, y2, y1.dim() - ed_out),
            ("inv(y; context)", x1, x2, x1.dim() - first.domain.event_dim),
        ]
    else:
        if not isinstance(second, Distribution):
            raise ValueError("obj: the two contexts gave a Distribution and a Transform")
        with torch.no_grad():
            lp1, lp2 = first.log_prob(x), second.log_prob(x)
        checks = [("log_prob(x | context)", lp1, lp2, lp1.dim())]
    for what, a, b, batch_dims in checks:
        a_tol, r_tol = _tol(a.dtype, atol, rtol)
        changed, largest = _changed(a, b, batch_dims, a_tol, r_tol, f"{name}: {what}")
        if not changed:
            raise AssertionError(
                f"{name}: {what} does not depend on the context: changing the context changed "
                f"no batch element by more than atol={a_tol:.3g} + rtol={r_tol:.3g} * |value| "
                f"(largest change {largest:.3e} over {int(math.prod(a.shape[:batch_dims]))} "
                "batch elements)"
            )


def _order_ranks(order: Sequence[int] | torch.Tensor | None, d: int) -> torch.Tensor:
    if order is None:
        order_t = torch.arange(d)
    else:
        order_t = torch.as_tensor(order, dtype=torch.long).flatten().cpu()
    if order_t.numel() != d or not torch.equal(order_t.sort().values, torch.arange(d)):
        raise ValueError(
            f"order: expected a permutation of the {d} flat event positions, got "
            f"{order_t.tolist() if order_t.numel() <= 20 else tuple(order_t.shape)}"
        )
    rank = torch.empty(d, dtype=torch.long)
    rank[order_t] = torch.arange(d)
    return rank


def image_order(channels: int, height: int, width: int) -> torch.Tensor:
    """The generation order of an image event ``(C, H, W)``: raster order over pixels (rows
    top to bottom, pixels left to right), channels in order inside a pixel, as flat indices
    of the ``(C, H, W)`` layout (for :func:`assert_autoregressive`'s ``order``).

    Example:
        >>> image_order(2, 1, 2).tolist()  # (c0, p0), (c1, p0), (c0, p1), (c1, p1)
        [0, 2, 1, 3]
    """
    for name, v in (("channels", channels), ("height", height), ("width", width)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}: expected a positive int, got {v!r}")
    return torch.arange(channels * height * width).reshape(channels, height * width).t().flatten()


def assert_autoregressive(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    order: Sequence[int] | torch.Tensor | None = None,
    *,
    include_self: bool = False,
    no_blind_spot: bool = False,
    outputs: Sequence[int] | None = None,
    within: torch.Tensor | None = None,
) -> None:
    r"""Assert that ``fn`` is autoregressive in ``order``.

    For a position :math:`i` with rank :math:`r(i)` in the order, the output at :math:`i`
    must satisfy :math:`\partial\, \mathrm{out}_i / \partial x_j = 0` exactly for every
    :math:`j` with :math:`r(j) \ge r(i)` (:math:`r(j) > r(i)` when ``include_self``, as for
    an autoregressive *transform* whose :math:`y_i` depends on :math:`x_i`). With
    ``no_blind_spot`` every :math:`j` with :math:`r(j) < r(i)` must reach output :math:`i`
    (a nonzero gradient for at least one batch element) - the check that catches the
    PixelCNN blind spot. For images ``(C, H, W)`` pass ``order=image_order(C, H, W)``:
    then an output channel may read the earlier channels of its own pixel and nothing
    after them.

    Args:
        fn: maps ``x`` of shape ``(B, *event)`` to a tensor whose leading dimensions are
            ``(B, *event)`` (extra trailing dimensions, e.g. logits per class, are allowed).
        x: ``(B, *event)`` inputs; use several batch elements and generic values so that
            a dependence is not hidden by a zero gradient at one point.
        order: the flat event positions in generation order (default: natural order).
        include_self: allow output ``i`` to depend on input ``i``.
        no_blind_spot: also require every earlier input to reach each output.
        outputs: check only these flat output positions (default: all).
        within: ``(D, D)`` bool, ``within[i, j]`` when input ``j`` lies in output ``i``'s
            receptive field; ``no_blind_spot`` then requires only those earlier inputs
            (a model with a bounded receptive field on a large image).

    Example:
        >>> w = torch.tril(torch.randn(4, 4), diagonal=-1)  # strictly lower triangular
        >>> assert_autoregressive(lambda x: x @ w.T, torch.randn(3, 4))
    """
    if x.dim() < 2:
        raise ValueError(f"x: expected shape (B, *event) with an event, got {tuple(x.shape)}")
    b = x.shape[0]
    d = int(math.prod(x.shape[1:]))
    rank = _order_ranks(order, d)
    xg = x.detach().clone().requires_grad_(True)
    out = fn(xg)
    if out.shape[: x.dim()] != x.shape:
        raise ValueError(
            f"fn: expected an output whose leading dimensions are {tuple(x.shape)}, got "
            f"{tuple(out.shape)}"
        )
    out_flat = out.reshape(b, d, -1)
    if within is not None and (within.shape != (d, d) or within.dtype != torch.bool):
        raise ValueError(f"within: expected a ({d}, {d}) bool tensor, got {tuple(within.shape)}")
    for i in range(d) if outputs is None else [int(o) for o in outputs]:
        if not 0 <= i < d:
            raise ValueError(f"outputs: expected flat positions in [0, {d}), got {i}")
        s = out_flat[:, i].sum()
        if s.requires_grad:
            (g,) = torch.autograd.grad(s, xg, retain_graph=True, allow_unused=True)
        else:
            g = None
        if g is None:
            reach = torch.zeros(d)
        else:
            if not torch.isfinite(g).all():
                raise AssertionError(f"output {i}: non-finite gradient")
            reach = g.detach().abs().reshape(b, d).sum(0).cpu()
        forbidden = rank > rank[i] if include_self else rank >= rank[i]
        leak = (forbidden & (reach != 0)).nonzero().flatten().tolist()
        if leak:
            raise AssertionError(
                f"output at position {i} (rank {int(rank[i])} in the order) depends on "
                f"input position(s) {leak[:10]} that come "
                f"{'after' if include_self else 'at or after'} it in the order"
            )
        if no_blind_spot:
            earlier = rank < rank[i]
            if within is not None:
                earlier = earlier & within[i].cpu()
            missing = (earlier & (reach == 0)).nonzero().flatten().tolist()
            if missing:
                raise AssertionError(
                    f"blind spot: output at position {i} (rank {int(rank[i])}) gets no "
                    f"gradient from earlier input position(s) {missing[:10]}"
                )


def _support_values(support: constraints.Constraint) -> tuple[list[float], int]:
    """Values of one coordinate of a discrete support, and the reinterpreted ndims."""
    ndims = 0
    base = support
    while isinstance(base, constraints.independent):
        ndims += base.reinterpreted_batch_ndims
        base = base.base_constraint
    if base is constraints.boolean or isinstance(base, type(constraints.boolean)):
        return [0.0, 1.0], ndims
    if isinstance(base, constraints.integer_interval):
        lo_t, hi_t = torch.as_tensor(base.lower_bound), torch.as_tensor(base.upper_bound)
        if lo_t.unique().numel() != 1 or hi_t.unique().numel() != 1:
            raise ValueError(
                "dist.support: the integer interval differs across the batch; pass values=..."
            )
        lo, hi = int(lo_t.flatten()[0]), int(hi_t.flatten()[0])
        return [float(v) for v in range(lo, hi + 1)], ndims
    raise ValueError(
        f"dist.support: cannot enumerate {base!r}; pass values=... with the values of one "
        "coordinate"
    )


def _enumerate_discrete(
    d: Distribution,
    values: Sequence[float],
    max_support_size: int,
    chunk: int = 4096,
) -> torch.Tensor:
    event_shape = d.event_shape
    e = int(math.prod(event_shape))
    n = len(values) ** e
    if n > max_support_size:
        raise ValueError(
            f"dist: support has {len(values)}**{e} = {n} points, more than "
            f"max_support_size={max_support_size}"
        )
    sample = d.sample()
    dtype, device = sample.dtype, sample.device
    vals = torch.tensor(list(values), dtype=torch.float64)
    batch = d.batch_shape
    totals = []
    grid_iter = itertools.product(range(len(values)), repeat=e)
    while True:
        idx = list(itertools.islice(grid_iter, chunk))
        if not idx:
            break
        pts = vals[torch.tensor(idx, dtype=torch.long)].reshape(len(idx), *event_shape)
        pts = pts.to(dtype=dtype, device=device)
        pts = pts.reshape(len(idx), *([1] * len(batch)), *event_shape).expand(
            len(idx), *batch, *event_shape
        )
        lp = d.log_prob(pts).to(torch.float64)
        totals.append(torch.logsumexp(lp, dim=0, keepdim=True))
    return torch.logsumexp(torch.cat(totals, 0), dim=0)


def _trapezoid_weights(n: int, h: float) -> torch.Tensor:
    w = torch.full((n,), h, dtype=torch.float64)
    w[0] = w[-1] = h / 2
    return w


def _integrate_continuous(
    d: Distribution,
    bounds: Sequence[tuple[float, float]] | None,
    num_points: int | None,
    chunk: int = 65536,
) -> torch.Tensor:
    """Trapezoid-rule integral of ``d``'s density, one value per batch element.

    Without ``bounds`` every batch element gets its own grid over the range of its own
    samples, so a batch mixing narrow and wide densities resolves each of them equally.
    """
    event_shape = d.event_shape
    e = int(math.prod(event_shape))
    if e not in (1, 2):
        raise ValueError(
            f"dist: numerical integration supports events of 1 or 2 numbers, got event_shape "
            f"{tuple(event_shape)}"
        )
    batch = d.batch_shape
    n_samples = 4000
    sample = d.sample((n_samples,))
    dtype, device = sample.dtype, sample.device
    if bounds is None:
        flat = sample.detach().reshape(n_samples, *batch, e).to(torch.float64).cpu()
        lo, hi = flat.amin(0), flat.amax(0)  # (*batch, e)
        span = (hi - lo).clamp_min(1e-3)
        lo, hi = lo - 0.5 * span, hi + 0.5 * span
        sup = d.support
        while isinstance(sup, constraints.independent):
            sup = sup.base_constraint
        # Clip to a bounded support (interval, positive, greater_than, ...). An open bound
        # at a singular point is integrated up to it; the trapezoid end-weight is h/2.
        lower = getattr(sup, "lower_bound", None)
        upper = getattr(sup, "upper_bound", None)
        if lower is not None:
            lo = torch.maximum(lo, _per_element(lower, batch, event_shape, torch.amax))
        if upper is not None:
            hi = torch.minimum(hi, _per_element(upper, batch, event_shape, torch.amin))
    else:
        if len(bounds) != e:
            raise ValueError(f"bounds: expected {e} (low, high) pairs, got {len(bounds)}")
        for lo_i, hi_i in bounds:
            if not hi_i > lo_i:
                raise ValueError(f"bounds: expected low < high, got ({lo_i}, {hi_i})")
        lims = torch.tensor([list(b) for b in bounds], dtype=torch.float64)
        size = torch.Size([*batch, e])
        lo, hi = lims[:, 0].expand(size), lims[:, 1].expand(size)
    if num_points is None:
        num_points = 20001 if e == 1 else 801
    # a unit grid on [0, 1]^e, mapped affinely onto each element's box
    unit = torch.linspace(0.0, 1.0, num_points, dtype=torch.float64)
    w1 = _trapezoid_weights(num_points, 1.0 / (num_points - 1))
    if e == 1:
        u, w = unit[:, None], w1
    else:
        gx, gy = torch.meshgrid(unit, unit, indexing="ij")
        u = torch.stack([gx.flatten(), gy.flatten()], -1)
        w = (w1[:, None] * w1[None, :]).flatten()
    volume = (hi - lo).prod(-1)  # (*batch)
    total = torch.zeros(batch, dtype=torch.float64)
    for start in range(0, u.shape[0], chunk):
        uc = u[start : start + chunk].reshape(-1, *([1] * len(batch)), e)
        p = (lo + (hi - lo) * uc).reshape(-1, *batch, *event_shape).to(dtype=dtype, device=device)
        with torch.no_grad():
            inside = d.support.check(p)
            safe = torch.where(
                inside.reshape(*inside.shape, *([1] * (p.dim() - inside.dim()))), p, sample[0]
            )
            lp = d.log_prob(safe).to(torch.float64)
            dens = torch.where(inside, lp.exp(), torch.zeros_like(lp)).cpu()
        wc = w[start : start + chunk].reshape(-1, *([1] * len(batch)))
        total = total + (dens * wc).sum(0)
    return total * volume


def _per_element(
    bound: object, batch: torch.Size, event_shape: torch.Size, reduce: Callable
) -> torch.Tensor:
    """A support bound as a ``(*batch, e)`` tensor (``reduce``-d to one value if it won't fit)."""
    b = torch.as_tensor(bound, dtype=torch.float64).cpu()
    e = int(math.prod(event_shape))
    try:
        return b.expand(torch.Size([*batch, *event_shape])).reshape(*batch, e)
    except RuntimeError:
        return reduce(b).expand(torch.Size([*batch, e]))


def assert_normalized(
    d: Distribution,
    *,
    atol: float | None = None,
    values: Sequence[float] | None = None,
    bounds: Sequence[tuple[float, float]] | None = None,
    num_points: int | None = None,
    max_support_size: int = 2**16,
) -> None:
    r"""Assert that ``d`` is normalized, for every element of its batch.

    * Discrete support (``boolean`` or ``integer_interval``, possibly ``independent``):
      :math:`\operatorname{logsumexp}_{x} \log p(x) = 0` over every point of the support,
      enumerated exhaustively (at most ``max_support_size`` points).
    * Continuous, with events of one or two numbers:
      :math:`\int p(x)\,dx = 1` by the trapezoid rule on a grid (``num_points`` per axis,
      default 20001 in 1-D and 801 in 2-D) over ``bounds`` (default: for each batch
      element its own box, the range of 4000 of its samples widened by half of it on each
      side and clipped to an interval support, so narrow and wide members of one batch are
      resolved alike).

    Args:
        d: the distribution; any ``batch_shape``.
        atol: allowed ``|log Z|`` (discrete; default 1e-4 in float32, 1e-8 in float64) or
            ``|Z - 1|`` (continuous; default 1e-4 in 1-D, 2e-3 in 2-D).
        values: the values of one coordinate, to enumerate a support whose constraint
            does not say them.
        bounds: ``[(low, high), ...]`` one pair per event coordinate (continuous).
        num_points: grid points per axis (continuous).
        max_support_size: refuse to enumerate more points than this.

    Example:
        >>> import torch.distributions as td
        >>> assert_normalized(td.Bernoulli(torch.tensor([0.3, 0.9])))
        >>> assert_normalized(td.Normal(torch.tensor(0.0), torch.tensor(1.0)))
    """
    if d.support.is_discrete:
        if values is None:
            values, _ = _support_values(d.support)
        log_z = _enumerate_discrete(d, values, max_support_size)
        sample_dtype = d.sample().dtype
        if atol is None:
            atol = 1e-8 if sample_dtype == torch.float64 else 1e-4
        bad = log_z.abs() > atol
        if bad.any():
            flat = int(torch.argmax(log_z.abs()).item())
            idx = _fmt_index(flat, log_z.shape) if log_z.dim() else ()
            raise AssertionError(
                f"{type(d).__name__} is not normalized: log of the total mass over the "
                f"support is {log_z.flatten()[flat].item():.6g} (mass "
                f"{log_z.flatten()[flat].exp().item():.8g}) at batch index {idx}; expected "
                f"0 within {atol:g}"
            )
        return
    z = _integrate_continuous(d, bounds, num_points)
    e = int(math.prod(d.event_shape))
    if atol is None:
        atol = 1e-4 if e == 1 else 2e-3
    err = (z - 1).abs()
    if (err > atol).any():
        flat = int(torch.argmax(err).item())
        idx = _fmt_index(flat, z.shape) if z.dim() else ()
        raise AssertionError(
            f"{type(d).__name__} is not normalized: integral of the density is "
            f"{z.flatten()[flat].item():.8g} at batch index {idx}; expected 1 within {atol:g}"
        )
