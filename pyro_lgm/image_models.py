r"""Registries of the image models and image data sets that ``pyro-lgm train`` / ``sample`` use.

One command line for every image model family: a family joins by adding an
:class:`ImageModelSpec` to :data:`IMAGE_MODELS` with :func:`register_image_model`. A spec says
how to build the model for an image shape and a bit depth from a dict of options (the
defaults, overridable by ``--option key=value``), how to compute the negative
log-likelihood of integer images and how to draw integer images. The training loss is the
mean of :attr:`ImageModelSpec.nll`.

Registered here: ``pixelcnn``, ``gated-pixelcnn``, ``pixelcnn++``, ``row-lstm``,
``diagonal-bilstm`` and ``pixelsnail`` (:mod:`pyro_lgm.models`),
with CPU-sized defaults (8-bit digits trains in a minute or two). A flow registers the same
way; for a builder ``glow(shape, levels=..., steps=..., hidden=..., bits=8)`` whose model has
``log_likelihood(x)`` (nats per image of integer images, by uniform dequantization) and
``sample((n,), temperature=T)``::

    register_image_model(
        "glow",
        ImageModelSpec(
            build=lambda shape, bits, o: glow(shape, bits=bits, **o),
            defaults={"levels": 2, "steps": 4, "hidden": 64},
            nll=lambda model, x: -model.log_likelihood(x),
            sample=lambda model, n, t: model.sample((n,), temperature=t),
            supports_temperature=True,
            default_temperature=0.7,
            description="Glow (Kingma & Dhariwal 2018)",
        ),
    )

Data sets (:data:`IMAGE_DATASETS`): ``digits`` (scikit-learn's 8x8 digits as 8-bit images,
bundled, the default), ``binarized-mnist``, ``mnist`` (8-bit) and ``cifar10`` (the project's
subset); all but ``digits`` read files from a directory the caller names (``--data-dir``).

:class:`TrainedImageModel` wraps a built model with what is needed to rebuild it (model
name, data set, image shape, bits, options); it keeps them in its ``state_dict`` (PyTorch's
``_extra_state``), so every checkpoint :func:`pyro_lgm.train.fit` writes of it, atomically,
carries them and :func:`load_trained` rebuilds the model from the file alone.

Example:
    >>> import torch
    >>> spec = IMAGE_MODELS["gated-pixelcnn"]
    >>> options = resolve_options("gated-pixelcnn", {"hidden_channels": "4", "num_layers": "1"})
    >>> m = TrainedImageModel("gated-pixelcnn", "digits", (1, 8, 8), 8, options)
    >>> x = torch.randint(0, 256, (3, 1, 8, 8)).float()
    >>> m.nll(x).shape, m.sample(2).shape
    (torch.Size([3]), torch.Size([2, 1, 8, 8]))
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

__all__ = [
    "IMAGE_DATASETS",
    "IMAGE_MODELS",
    "ImageData",
    "ImageDatasetSpec",
    "ImageModelSpec",
    "OptionError",
    "TrainedImageModel",
    "load_trained",
    "register_image_dataset",
    "register_image_model",
    "resolve_options",
]

#: ``format`` of the metadata a :class:`TrainedImageModel` keeps in its state dict.
METADATA_FORMAT = "pyro_lgm.image_models/1"

Shape = tuple[int, int, int]


class OptionError(ValueError):
    """A bad model name, option key or option value (the command line exits 2 with it)."""


# ---------------------------------------------------------------------------- the specs


@dataclass(frozen=True)
class ImageModelSpec:
    """How the command line builds, scores and samples one image model family.

    Attributes:
        build: ``build(shape, bits, options) -> nn.Module`` for images ``shape = (C, H, W)``
            with values ``0 .. 2**bits - 1``; ``options`` holds every key of ``defaults``.
            A ``ValueError`` it raises is reported as a bad option.
        defaults: option name -> default value. The type of the default (``int``,
            ``float``, ``bool``, ``str``) is how a ``--option key=value`` text is parsed.
        nll: ``nll(model, x) -> (N,)`` negative log-likelihood in nats per image of
            ``x``, a float tensor ``(N, C, H, W)`` of integers ``0 .. 2**bits - 1``.
        sample: ``sample(model, n, temperature) -> (n, C, H, W)`` integer-valued images.
        binary: the model has Bernoulli outputs: only for binary (1-bit) data.
        supports_temperature: ``sample`` honours a temperature other than 1.
        default_temperature: the temperature of ``pyro-lgm sample`` when none is given.
        description: one line for ``pyro-lgm info``.
        loss: ``loss(model, x) -> ()`` the training loss (default: the mean of ``nll``), for
            models whose objective is not a per-image sum (free bits, KL warm-up).
        panels: ``panels(model, rows, cols, seed) -> {name: (rows * cols, C, H, W)}``
            image grids that show what each level of randomness controls (``pyro-lgm
            sample --panels``); ``None``: the model has none.
        nll_is_bound: ``nll`` is an upper bound (a negative ELBO), not the exact value.
    """

    build: Callable[[Shape, int, dict[str, Any]], nn.Module]
    defaults: Mapping[str, Any]
    nll: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    sample: Callable[[nn.Module, int, float], torch.Tensor]
    binary: bool = False
    supports_temperature: bool = False
    default_temperature: float = 1.0
    description: str = ""
    loss: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None
    panels: Callable[[nn.Module, int, int, int], dict] | None = None
    nll_is_bound: bool = False


class ImageData(NamedTuple):
    """A loaded data set: float tensors ``(N, C, H, W)`` of integers ``0 .. 2**bits - 1``."""

    train: torch.Tensor
    test: torch.Tensor
    bits: int


@dataclass(frozen=True)
class ImageDatasetSpec:
    """An image data set of the command line.

    Attributes:
        load: ``load(data_dir) -> ImageData`` (``data_dir`` is ``None`` when
            ``needs_data_dir`` is false).
        shape: the image shape ``(C, H, W)``.
        bits: bits per channel (1: binary images).
        needs_data_dir: whether the files must be read from a directory (``--data-dir``).
        description: one line for ``pyro-lgm info``.
    """

    load: Callable[[str | None], ImageData]
    shape: Shape
    bits: int
    needs_data_dir: bool = True
    description: str = ""


#: ``name -> ImageModelSpec``: the models of ``pyro-lgm train MODEL``.
IMAGE_MODELS: dict[str, ImageModelSpec] = {}

#: ``name -> ImageDatasetSpec``: the data sets of ``pyro-lgm train --data NAME``.
IMAGE_DATASETS: dict[str, ImageDatasetSpec] = {}


def register_image_model(name: str, spec: ImageModelSpec) -> None:
    """Make ``pyro-lgm train NAME`` (and ``sample`` of its checkpoints) use ``spec``.

    Registering an existing name replaces its spec.

    Example:
        >>> spec = IMAGE_MODELS["pixelcnn"]
        >>> register_image_model("pixelcnn-again", spec)
        >>> "pixelcnn-again" in IMAGE_MODELS
        True
        >>> del IMAGE_MODELS["pixelcnn-again"]
    """
    if not isinstance(name, str) or not name or any(c.isspace() for c in name):
        raise ValueError(f"name: expected a non-empty string without spaces, got {name!r}")
    if not isinstance(spec, ImageModelSpec):
        raise ValueError(f"spec: expected an ImageModelSpec, got {type(spec).__name__}")
    for key, value in spec.defaults.items():
        if not isinstance(key, str) or "=" in key or not isinstance(value, _OPTION_TYPES):
            raise ValueError(
                f"spec.defaults: expected str keys without '=' and int, float, bool or str "
                f"values, got {key!r}: {value!r}"
            )
    IMAGE_MODELS[name] = spec


def register_image_dataset(name: str, spec: ImageDatasetSpec) -> None:
    """Make ``pyro-lgm train --data NAME`` use ``spec``."""
    if not isinstance(name, str) or not name or any(c.isspace() for c in name):
        raise ValueError(f"name: expected a non-empty string without spaces, got {name!r}")
    if not isinstance(spec, ImageDatasetSpec):
        raise ValueError(f"spec: expected an ImageDatasetSpec, got {type(spec).__name__}")
    IMAGE_DATASETS[name] = spec


# ------------------------------------------------------------------------------ options

_OPTION_TYPES = (bool, int, float, str)
_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def _parse_value(key: str, text: str, default: Any) -> Any:
    """``text`` as a value of the type of ``default``."""
    if isinstance(default, bool):
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise OptionError(f"option {key}: expected true or false, got {text!r}")
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise OptionError(f"option {key}: expected an integer, got {text!r}") from None
    if isinstance(default, float):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise OptionError(f"option {key}: expected a finite number, got {text!r}")
        return value
    return text


def resolve_options(
    model: str, given: Mapping[str, Any], base: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The options of ``model``: ``base`` (default: the spec's defaults) updated by ``given``.

    Values of ``given`` may be strings (from ``--option key=value``): they are parsed as the
    type of the default.

    Raises:
        OptionError: an unknown model, an unknown key (the message lists the known ones), or
            a value that does not parse.

    Example:
        >>> resolve_options("pixelcnn", {"num_layers": "2"})["num_layers"]
        2
    """
    spec = model_spec(model)
    options = dict(spec.defaults if base is None else base)
    for key, value in given.items():
        if key not in spec.defaults:
            known = ", ".join(sorted(spec.defaults)) or "(none)"
            raise OptionError(f"unknown option {key!r} for model {model}; known options: {known}")
        default = spec.defaults[key]
        options[key] = _parse_value(key, value, default) if isinstance(value, str) else value
    return options


def model_spec(name: str) -> ImageModelSpec:
    """The registered spec of ``name``; :class:`OptionError` listing the known ones if none."""
    try:
        return IMAGE_MODELS[name]
    except KeyError:
        known = ", ".join(sorted(IMAGE_MODELS))
        raise OptionError(f"unknown image model {name!r}; known models: {known}") from None


def dataset_spec(name: str) -> ImageDatasetSpec:
    """The registered data set ``name``; :class:`OptionError` listing the known ones if none."""
    try:
        return IMAGE_DATASETS[name]
    except KeyError:
        known = ", ".join(sorted(IMAGE_DATASETS))
        raise OptionError(f"unknown image data set {name!r}; known data sets: {known}") from None


# ----------------------------------------------------------------- a model plus its metadata


class TrainedImageModel(nn.Module):
    """A registered model built for a data set, with what it takes to rebuild it.

    ``state_dict()`` holds the model's tensors (under ``model.``) and, as PyTorch's
    ``_extra_state``, a dict ``{"format", "model", "dataset", "shape", "bits", "options"}``
    of plain values (loadable with ``torch.load(..., weights_only=True)``).
    ``load_state_dict`` refuses a state whose metadata names another model or options.

    Args:
        name: the registered model name.
        dataset: the data set name it is (to be) trained on (informational).
        shape: image shape ``(C, H, W)``.
        bits: bits per channel of the data.
        options: every option of the spec (see :func:`resolve_options`).

    Raises:
        OptionError: the model is binary-only and ``bits != 1``, or its builder rejects the
            options (``ValueError``).
    """

    def __init__(
        self, name: str, dataset: str, shape: Shape, bits: int, options: Mapping[str, Any]
    ) -> None:
        super().__init__()
        self.spec = model_spec(name)
        self.name, self.dataset = name, dataset
        self.shape = tuple(int(s) for s in shape)
        self.bits = int(bits)
        self.options = dict(options)
        if self.spec.binary and self.bits != 1:
            raise OptionError(
                f"model {name} has Bernoulli outputs and needs binary data; {dataset} has "
                f"{self.bits}-bit pixels"
            )
        try:
            self.model = self.spec.build(self.shape, self.bits, dict(self.options))  # type: ignore[arg-type]
        except (ValueError, TypeError) as e:
            raise OptionError(f"model {name}: {e}") from e

    @property
    def metadata(self) -> dict[str, Any]:
        return {
            "format": METADATA_FORMAT,
            "model": self.name,
            "dataset": self.dataset,
            "shape": list(self.shape),
            "bits": self.bits,
            "options": dict(self.options),
        }

    def get_extra_state(self) -> dict[str, Any]:
        return self.metadata

    def set_extra_state(self, state: Any) -> None:
        ours = self.metadata
        if not isinstance(state, dict) or state.get("format") != METADATA_FORMAT:
            raise ValueError("state: not the state of a pyro_lgm.image_models.TrainedImageModel")
        for key in ("model", "shape", "bits", "options"):
            if state[key] != ours[key]:
                raise ValueError(
                    f"state: saved with {key} {state[key]!r}, this model has {ours[key]!r}"
                )

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        """``(N,)`` negative log-likelihood in nats per image of integer images ``x``."""
        return self.spec.nll(self.model, x)

    def sample(self, n: int, temperature: float = 1.0) -> torch.Tensor:
        """``(n, C, H, W)`` integer-valued images."""
        return self.spec.sample(self.model, n, temperature)

    def panels(self, rows: int, cols: int, seed: int = 0) -> dict:
        """The spec's hierarchy panels (``ValueError`` when the model has none)."""
        if self.spec.panels is None:
            raise ValueError(f"model {self.name} has no hierarchy panels (it has no latents)")
        return self.spec.panels(self.model, rows, cols, seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The training loss: the spec's ``loss``, by default the mean negative
        log-likelihood of ``x`` in nats per image."""
        if self.spec.loss is not None:
            return self.spec.loss(self.model, x)
        return self.nll(x).mean()


def read_metadata(checkpoint: Mapping[str, Any], path: str | os.PathLike = "checkpoint") -> dict:
    """The :class:`TrainedImageModel` metadata of a :func:`pyro_lgm.train.fit` checkpoint.

    Raises:
        ValueError: the checkpoint does not hold a :class:`TrainedImageModel`.
    """
    meta = extra_state(checkpoint)
    if meta is None or meta.get("format") != METADATA_FORMAT:
        raise ValueError(f"{os.fspath(path)} is not a checkpoint of `pyro-lgm train`")
    return meta


def extra_state(checkpoint: Any) -> dict | None:
    """The model's ``get_extra_state`` dictionary in a :func:`pyro_lgm.train.fit` checkpoint
    (where the command-line models keep their metadata), or ``None``."""
    state = checkpoint.get("model") if isinstance(checkpoint, Mapping) else None
    meta = state.get("_extra_state") if isinstance(state, Mapping) else None
    return meta if isinstance(meta, dict) else None


def load_trained(
    path: str | os.PathLike, map_location: str | torch.device | None = "cpu"
) -> tuple[TrainedImageModel, dict[str, Any]]:
    """Rebuild the model of a ``pyro-lgm train`` checkpoint; return it and the checkpoint.

    Raises:
        ValueError: the file is not such a checkpoint; :class:`OptionError` when its model
            is not registered in this version.
    """
    from pyro_lgm.train import load_checkpoint

    ckpt = load_checkpoint(path, map_location=map_location)
    meta = read_metadata(ckpt, path)
    model = TrainedImageModel(
        meta["model"], meta["dataset"], tuple(meta["shape"]), meta["bits"], meta["options"]
    )
    model.load_state_dict(ckpt["model"])
    return model, ckpt


# ------------------------------------------------------------------- the PixelCNN family


def _pixel_nll(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return -model().log_prob(x)


def _pixel_sample(model: nn.Module, n: int, temperature: float) -> torch.Tensor:
    if temperature != 1.0:
        raise ValueError(f"temperature: PixelCNN models sample at 1 only, got {temperature}")
    return model().sample((n,))


def _output(kind: str, bits: int) -> tuple[str, int | None]:
    """The ``output`` / ``bits`` arguments of a PixelCNN network for ``kind`` (``auto``:
    Bernoulli for binary data, a 2**bits-way softmax otherwise)."""
    if kind == "auto":
        kind = "bernoulli" if bits == 1 else "categorical"
    if kind == "bernoulli" and bits != 1:
        raise ValueError(f"output=bernoulli needs binary data, got {bits}-bit pixels")
    return kind, (None if kind == "bernoulli" else bits)


def _pixelcnn_builder(attr: str) -> Callable[[Shape, int, dict[str, Any]], nn.Module]:
    def build(shape: Shape, bits: int, options: dict[str, Any]) -> nn.Module:
        from pyro_lgm import models

        o = dict(options)
        output, net_bits = _output(o.pop("output"), bits)
        return getattr(models, attr)(shape, output=output, bits=net_bits, **o)

    return build


def _pixelcnnpp(shape: Shape, bits: int, options: dict[str, Any]) -> nn.Module:
    from pyro_lgm.models import PixelCNNPP

    return PixelCNNPP(shape, bits=bits, **options)


_PIXELCNN_OUTPUT = "auto"  # bernoulli for binary data, else a 2**bits-way softmax

register_image_model(
    "pixelcnn",
    ImageModelSpec(
        build=_pixelcnn_builder("PixelCNN"),
        defaults={
            "hidden_channels": 16,
            "num_layers": 3,
            "output": _PIXELCNN_OUTPUT,
            "num_mixtures": 5,
            "first_kernel": 7,
            "kernel": 3,
        },
        nll=_pixel_nll,
        sample=_pixel_sample,
        description="PixelCNN (van den Oord et al. 2016a): masked convolutions, residual blocks",
    ),
)
register_image_model(
    "gated-pixelcnn",
    ImageModelSpec(
        build=_pixelcnn_builder("GatedPixelCNN"),
        defaults={
            "hidden_channels": 16,
            "num_layers": 4,
            "output": _PIXELCNN_OUTPUT,
            "num_mixtures": 5,
            "first_kernel": 7,
            "kernel": 3,
        },
        nll=_pixel_nll,
        sample=_pixel_sample,
        description="Gated PixelCNN (van den Oord et al. 2016b): gated stacks, no blind spot",
    ),
)
register_image_model(
    "pixelcnn++",
    ImageModelSpec(
        build=_pixelcnnpp,
        defaults={
            "hidden_channels": 32,
            "num_resnets": 1,
            "num_mixtures": 5,
            "dropout": 0.0,
            "num_scales": 2,
        },
        nll=_pixel_nll,
        sample=_pixel_sample,
        description="PixelCNN++ (Salimans et al. 2017): discretized logistic mixture output",
    ),
)


for _name, _attr, _what in (
    ("row-lstm", "RowLSTM", "Row LSTM (van den Oord et al. 2016a): an LSTM over rows, "),
    (
        "diagonal-bilstm",
        "DiagonalBiLSTM",
        "Diagonal BiLSTM (van den Oord et al. 2016a): two LSTMs along the diagonals, ",
    ),
):
    register_image_model(
        _name,
        ImageModelSpec(
            build=_pixelcnn_builder(_attr),
            defaults={
                "hidden_channels": 16,
                "num_layers": 2,
                "output": _PIXELCNN_OUTPUT,
                "num_mixtures": 5,
                "first_kernel": 7,
            },
            nll=_pixel_nll,
            sample=_pixel_sample,
            description=_what + "masked 7x7 input layer, residual connections",
        ),
    )


def _pixelsnail(shape: Shape, bits: int, options: dict[str, Any]) -> nn.Module:
    from pyro_lgm.models import PixelSNAIL

    o = dict(options)
    output = o.pop("output")
    if output == "auto":  # Bernoulli for binary data, else PixelSNAIL's logistic mixture
        output = "bernoulli" if bits == 1 else "logistic_mixture"
    if output == "bernoulli" and bits != 1:
        raise ValueError(f"output=bernoulli needs binary data, got {bits}-bit pixels")
    return PixelSNAIL(shape, output=output, bits=None if output == "bernoulli" else bits, **o)


register_image_model(
    "pixelsnail",
    ImageModelSpec(
        build=_pixelsnail,
        defaults={
            "hidden_channels": 16,
            "num_blocks": 2,
            "num_resnets": 1,
            "heads": 1,
            "key_channels": 16,
            "value_channels": 16,
            "output": "auto",
            "num_mixtures": 5,
            "dropout": 0.0,
        },
        nll=_pixel_nll,
        sample=_pixel_sample,
        description="PixelSNAIL (Chen et al. 2018): gated causal convolutions + causal "
        "self-attention over every earlier pixel",
    ),
)


def _flow_nll(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    # one uniform dequantization draw per image: a bound on -log P(x), the papers' figure
    return -model.log_likelihood(x)


def _flow_sample(model: nn.Module, n: int, temperature: float) -> torch.Tensor:
    return model.sample((n,), temperature=temperature)


def _glow(shape: Shape, bits: int, options: dict[str, Any]) -> nn.Module:
    from pyro_lgm.models import glow

    return glow(shape, bits=bits, **options)


def _realnvp(shape: Shape, bits: int, options: dict[str, Any]) -> nn.Module:
    from pyro_lgm.models import realnvp_image

    return realnvp_image(shape, bits=bits, **options)


register_image_model(
    "glow",
    ImageModelSpec(
        build=_glow,
        defaults={
            "levels": 2,
            "steps": 4,
            "hidden": 32,
            "coupling": "affine",
            "lu": True,
            "split_prior": True,
            "alpha": 0.05,
        },
        nll=_flow_nll,
        sample=_flow_sample,
        supports_temperature=True,
        default_temperature=0.7,
        description="Glow (Kingma & Dhariwal 2018): ActNorm, 1x1 convolutions, couplings, "
        "multi-scale with a learned prior; dequantized",
    ),
)
register_image_model(
    "realnvp",
    ImageModelSpec(
        build=_realnvp,
        defaults={"num_scales": 2, "hidden": 32, "blocks": 2, "actnorm": True, "alpha": 0.05},
        nll=_flow_nll,
        sample=_flow_sample,
        supports_temperature=True,
        default_temperature=0.7,
        description="RealNVP (Dinh et al. 2017): checkerboard / channel couplings, multi-scale; "
        "dequantized",
    ),
)


def _flowpp(shape: Shape, bits: int, options: dict[str, Any]) -> nn.Module:
    from pyro_lgm.models import (
        UniformDequantizer,
        VariationalDequantization,
        flowpp,
        variational_dequantizer,
    )

    o = dict(options)
    kind = o.pop("dequantization")
    deq_steps, deq_hidden = o.pop("deq_steps"), o.pop("deq_hidden")
    flow = flowpp(shape, bits=bits, **o)
    if kind == "uniform":
        deq: nn.Module = UniformDequantizer(shape, bits=bits)
    elif kind == "variational":
        deq = variational_dequantizer(
            shape, bits=bits, steps=deq_steps, hidden=deq_hidden, coupling="mixture",
            num_components=4, net="glow",
        )  # fmt: skip
    else:
        raise ValueError(f"dequantization: expected 'variational' or 'uniform', got {kind!r}")
    return VariationalDequantization(flow, deq, name="flowpp")


def _flowpp_nll(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    # one draw u ~ q(u | x): -log p(x + u) + log q(u | x), the variational bound on -log P(x)
    return model.loss(x)


def _flowpp_sample(model: nn.Module, n: int, temperature: float) -> torch.Tensor:
    return model.flow.sample((n,), temperature=temperature)


register_image_model(
    "flowpp",
    ImageModelSpec(
        build=_flowpp,
        defaults={
            "num_scales": 2,
            "hidden": 32,
            "blocks": 1,
            "num_components": 8,
            "net": "attention",
            "alpha": 0.05,
            "dequantization": "variational",
            "deq_steps": 4,
            "deq_hidden": 16,
        },
        nll=_flowpp_nll,
        sample=_flowpp_sample,
        supports_temperature=True,
        default_temperature=0.7,
        description="Flow++ (Ho et al. 2019): logistic-mixture CDF couplings with attention "
        "conditioners, variational dequantization",
    ),
)

# ------------------------------------------------------------------- VAEs with latents


def _flow_option(options: dict[str, Any]) -> dict[str, Any]:
    """``flow="none" | "planar" | "radial" | "iaf"`` and ``num_flows`` (0: the default
    number) as the VAEs' keyword arguments."""
    flow, k = options.pop("flow"), options.pop("num_flows")
    if flow not in ("none", "planar", "radial", "iaf"):
        raise ValueError(f"flow: expected none, planar, radial or iaf, got {flow!r}")
    if flow == "none":
        if k:
            raise ValueError(f"num_flows: flow=none takes no flow steps, got {k}")
        return {"flow": None, "num_flows": None}
    return {"flow": flow, "num_flows": k or None}


def _pixelvae(shape: Shape, bits: int, options: dict[str, Any]) -> nn.Module:
    from pyro_lgm.models import PixelVAE

    o = dict(options)
    flow = _flow_option(o)
    levels, channels = o.pop("levels"), o.pop("latent_channels")
    if isinstance(levels, bool) or levels < 1:
        raise ValueError(f"levels: expected an int >= 1, got {levels!r}")
    return PixelVAE(shape, (channels,) * levels, bits=bits, **flow, **o)


def _hvae(shape: Shape, bits: int, options: dict[str, Any]) -> nn.Module:
    from pyro_lgm.models import HierarchicalVAE

    o = dict(options)
    flow = _flow_option(o)
    dims = [int(v) for v in str(o.pop("latent_dims")).split(",") if v.strip()]
    hidden = o.pop("hidden")
    likelihood = "bernoulli" if bits == 1 else "categorical"
    return HierarchicalVAE(
        shape, dims, hidden_dims=(hidden, hidden), likelihood=likelihood, num_levels=2**bits,
        **flow, **o,
    )  # fmt: skip


def _latent_x(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    # the hierarchical VAE's categorical likelihood takes integer levels (PixelVAE: floats)
    from pyro_lgm.models import HierarchicalVAE

    if isinstance(model, HierarchicalVAE) and model.likelihood == "categorical":
        return x.long()
    return x


def _latent_nll(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    # one draw z ~ q(z | x): the negative ELBO, an upper bound on -log p(x)
    terms = model.elbo_terms(_latent_x(model, x))
    return -(terms["log_px"] - sum(terms["kl"]))


def _latent_loss(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.loss(_latent_x(model, x))


def _latent_sample(model: nn.Module, n: int, temperature: float) -> torch.Tensor:
    if temperature != 1.0:
        raise ValueError(f"temperature: VAEs sample at 1 only, got {temperature}")
    return model.sample(n).to(torch.float32)


def _latent_panels(model: nn.Module, rows: int, cols: int, seed: int) -> dict:
    return {k: v.to(torch.float32) for k, v in model.hierarchy_panels(rows, cols, seed).items()}


_VAE_OPTIONS = {"flow": "none", "num_flows": 0, "kl_warmup_steps": 0, "free_bits": 0.0}

register_image_model(
    "pixelvae",
    ImageModelSpec(
        build=_pixelvae,
        defaults={
            "levels": 2,
            "latent_channels": 4,
            "encoder_channels": 32,
            "pixel_channels": 16,
            "pixel_layers": 3,
            "upsample_channels": 16,
            "prior_channels": 16,
            "prior_layers": 3,
            **_VAE_OPTIONS,
        },
        nll=_latent_nll,
        sample=_latent_sample,
        loss=_latent_loss,
        panels=_latent_panels,
        nll_is_bound=True,
        description="PixelVAE (Gulrajani et al. 2017): latent maps, a Gated PixelCNN decoder, "
        "an autoregressive prior over the lower map",
    ),
)
register_image_model(
    "hvae",
    ImageModelSpec(
        build=_hvae,
        defaults={
            "latent_dims": "32,16",
            "hidden": 256,
            "inference": "top-down",
            **_VAE_OPTIONS,
        },
        nll=_latent_nll,
        sample=_latent_sample,
        loss=_latent_loss,
        panels=_latent_panels,
        nll_is_bound=True,
        description="hierarchical VAE: MLP layers of latent vectors, top-down or bottom-up "
        "inference, optional flow guides",
    ),
)


# ----------------------------------------------------------------------------- data sets


def _float(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float32)


def _digits(data_dir: str | None) -> ImageData:
    from pyro_lgm.data import load_digits_images

    train = load_digits_images("train", bits=8)
    test = load_digits_images("test", bits=8)
    return ImageData(_float(train), _float(test), 8)


def _binarized_mnist(data_dir: str | None) -> ImageData:
    from pyro_lgm.data import load_binarized_mnist

    train, test = (load_binarized_mnist(data_dir, s).view(-1, 1, 28, 28) for s in ("train", "test"))
    return ImageData(_float(train), _float(test), 1)


def _mnist(data_dir: str | None) -> ImageData:
    from pyro_lgm.data import load_mnist

    train, test = (load_mnist(data_dir, s)[0].unsqueeze(1) for s in ("train", "test"))
    return ImageData(_float(train), _float(test), 8)


def _cifar10(data_dir: str | None) -> ImageData:
    from pyro_lgm.data import load_cifar10

    train, test = (load_cifar10(data_dir, s) for s in ("train", "test"))
    return ImageData(_float(train), _float(test), 8)


register_image_dataset(
    "digits",
    ImageDatasetSpec(
        _digits,
        (1, 8, 8),
        8,
        needs_data_dir=False,
        description="scikit-learn's 8x8 digits as 8-bit images, 1197 train / 300 test (bundled)",
    ),
)
register_image_dataset(
    "binarized-mnist",
    ImageDatasetSpec(
        _binarized_mnist,
        (1, 28, 28),
        1,
        description="Larochelle's fixed binarized MNIST, 50000 train / 10000 test",
    ),
)
register_image_dataset(
    "mnist",
    ImageDatasetSpec(_mnist, (1, 28, 28), 8, description="MNIST, 8-bit, 60000 train / 10000 test"),
)
register_image_dataset(
    "cifar10",
    ImageDatasetSpec(
        _cifar10,
        (3, 32, 32),
        8,
        description="the project's CIFAR-10 subset, 4000 train / 1000 test (not the full set)",
    ),
)
