r"""A WaveNet trained on audio, with what it takes to rebuild it: the model behind
``pyro-lgm train-wavenet`` and ``pyro-lgm sample-audio``.

:class:`TrainedWaveNet` wraps a :class:`pyro_lgm.models.WaveNet` and keeps its options,
the segment length it is trained on, the sample rate, the number of speakers (for a
speaker-conditioned model) and the corpus path in its ``state_dict`` (as PyTorch's
``_extra_state``), so a :func:`pyro_lgm.train.fit` checkpoint alone rebuilds it
(:func:`load_trained_wavenet`).

Audio and levels: a ``"categorical"`` model sees mu-law companded levels
(:func:`pyro_lgm.data.mu_law_encode`, WaveNet's 8-bit input), a ``"logistic_mixture"``
model linear levels :math:`q = \operatorname{round}((x + 1)(L - 1) / 2)`,
:math:`L = 2^{bits}` (:func:`pyro_lgm.data.linear_encode`, Parallel WaveNet's 16-bit
input). :meth:`TrainedWaveNet.audio_to_levels` and :meth:`TrainedWaveNet.levels_to_audio`
convert; on the grid of levels they are exact inverses.

Example:
    >>> import torch
    >>> m = TrainedWaveNet(64, residual_channels=4, skip_channels=4, dilation_channels=4,
    ...                    layers_per_stack=3, bits=4, sample_rate=8000)
    >>> x = torch.sin(torch.arange(64.0) / 3).mul(0.5).expand(2, 64)  # (N, T) audio
    >>> q = m.audio_to_levels(x)
    >>> m(q).backward()  # nats per sample: the training loss
    >>> m.sample(3, length=20).shape  # any length, not only the training segment's
    torch.Size([3, 20])
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from pyro_lgm import distributions as lgm_dist
from pyro_lgm import models
from pyro_lgm.data.audio import linear_decode, linear_encode, mu_law_decode, mu_law_encode

__all__ = ["METADATA_FORMAT", "TrainedWaveNet", "load_trained_wavenet", "read_wavenet_metadata"]

#: the ``format`` entry of a :class:`TrainedWaveNet`'s metadata
METADATA_FORMAT = "pyro_lgm.audio_models.TrainedWaveNet/1"

#: the :class:`pyro_lgm.models.WaveNet` options a :class:`TrainedWaveNet` takes
OPTIONS = (
    "residual_channels",
    "skip_channels",
    "dilation_channels",
    "layers_per_stack",
    "stacks",
    "kernel_size",
    "output",
    "bits",
    "num_mixtures",
    "num_classes",
)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return value


class TrainedWaveNet(nn.Module):
    r"""A :class:`pyro_lgm.models.WaveNet` over audio segments, with its metadata.

    Args:
        segment: ``T``, the length (in samples) of the training segments.
        sample_rate: of the audio, in Hz (for seconds and WAV files).
        corpus: where the training audio came from (informational, kept in checkpoints).
        voices: names of the speakers ``0 .. num_classes - 1`` (informational; only for a
            speaker-conditioned model).
        **options: options of :class:`pyro_lgm.models.WaveNet` (:data:`OPTIONS`):
            ``residual_channels``, ``skip_channels``, ``dilation_channels``,
            ``layers_per_stack``, ``stacks``, ``kernel_size``, ``output``, ``bits``,
            ``num_mixtures`` and ``num_classes`` (the number of speakers of a
            speaker-conditioned model; ``None`` for an unconditional one). ``bits``
            defaults to 8 (categorical) or 16 (logistic mixture).

    ``state_dict()`` holds the network's tensors (under ``model.``) and, as ``_extra_state``,
    the dict :attr:`metadata` of plain values (loadable with ``weights_only=True``);
    ``load_state_dict`` refuses a state saved with other metadata.

    Raises:
        ValueError: an unknown option or a bad value (naming it).
    """

    def __init__(
        self,
        segment: int,
        *,
        sample_rate: int = 16000,
        corpus: str | None = None,
        voices: list[str] | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise ValueError(f"{unknown[0]}: not an option of TrainedWaveNet (one of {OPTIONS})")
        self.segment = _positive_int("segment", segment)
        self.sample_rate = _positive_int("sample_rate", sample_rate)
        if corpus is not None and not isinstance(corpus, str):
            raise ValueError(f"corpus: expected a path string or None, got {corpus!r}")
        self.corpus = corpus
        self.model = models.WaveNet(self.segment, **options)
        net = self.model.net
        # every option resolved (defaults included), so that the metadata rebuilds this model
        self.options = {
            "residual_channels": net.first.out_channels,
            "skip_channels": net.head1.in_channels,
            "dilation_channels": net.dilation_channels,
            "layers_per_stack": net.layers_per_stack,
            "stacks": net.stacks,
            "kernel_size": net.kernel_size,
            "output": net.output_kind,
            "bits": net.bits,
            "num_mixtures": net.num_mixtures,
            "num_classes": net.num_classes,
        }
        if voices is not None:
            voices = list(voices)
            if (
                net.num_classes is None
                or len(voices) != net.num_classes
                or not all(isinstance(v, str) for v in voices)
            ):
                raise ValueError(
                    f"voices: expected {net.num_classes} names (one per speaker), got {voices!r}"
                )
        self.voices = voices

    # -- structure ----------------------------------------------------------------------
    @property
    def output(self) -> str:
        """``"categorical"`` (mu-law levels) or ``"logistic_mixture"`` (linear levels)."""
        return self.options["output"]

    @property
    def bits(self) -> int:
        return self.options["bits"]

    @property
    def levels(self) -> int:
        """``L = 2^bits``."""
        return 2**self.bits

    @property
    def speakers(self) -> int | None:
        """The number of speakers of a speaker-conditioned model, else ``None``."""
        return self.options["num_classes"]

    @property
    def receptive_field(self) -> int:
        return self.model.receptive_field

    @property
    def metadata(self) -> dict[str, Any]:
        return {
            "format": METADATA_FORMAT,
            "options": dict(self.options),
            "segment": self.segment,
            "sample_rate": self.sample_rate,
            "speakers": self.speakers,
            "corpus": self.corpus,
            "voices": None if self.voices is None else list(self.voices),
        }

    def get_extra_state(self) -> dict[str, Any]:
        return self.metadata

    def set_extra_state(self, state: Any) -> None:
        if not isinstance(state, dict) or state.get("format") != METADATA_FORMAT:
            raise ValueError("state: not the state of a pyro_lgm.audio_models.TrainedWaveNet")
        ours = self.metadata
        for key in ("options", "segment", "sample_rate"):
            if state.get(key) != ours[key]:
                raise ValueError(
                    f"state: saved with {key} {state.get(key)!r}, this model has {ours[key]!r}"
                )

    # -- audio <-> levels ---------------------------------------------------------------
    def audio_to_levels(self, x: torch.Tensor) -> torch.Tensor:
        r"""Audio ``(...)`` in ``[-1, 1]`` to the model's integer levels ``(...)`` (float32):
        mu-law for the categorical output, :math:`\operatorname{round}((x + 1)(L - 1)/2)`
        for the logistic mixture.

        Raises:
            ValueError: ``x`` is not a floating tensor of finite values in ``[-1, 1]``.
        """
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise ValueError(f"x: expected a floating tensor, got {getattr(x, 'dtype', type(x))}")
        if not bool(torch.isfinite(x).all()) or bool((x.abs() > 1).any()):
            raise ValueError("x: expected finite values in [-1, 1]")
        encode = mu_law_encode if self.output == "categorical" else linear_encode
        return encode(x, self.levels).to(torch.float32)

    def levels_to_audio(self, q: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        r"""Integer levels ``(...)`` to audio ``(...)`` in ``[-1, 1]``: the inverse of
        :meth:`audio_to_levels` on the grid (``audio_to_levels(levels_to_audio(q)) == q``
        for every level ``q``); linear :math:`2q/(L-1) - 1` for the logistic mixture.

        Raises:
            ValueError: ``q`` holds values that are not levels ``0 .. L - 1``.
        """
        decode = mu_law_decode if self.output == "categorical" else linear_decode
        return decode(q, self.levels, dtype)

    # -- likelihood ---------------------------------------------------------------------
    def _speaker(self, speaker: Any, batch: torch.Size | tuple, device: torch.device) -> Any:
        """``speaker`` as a long tensor of shape ``batch`` (``None`` for no speakers)."""
        n = self.speakers
        if n is None:
            if speaker is not None:
                raise ValueError("speaker: this model is not speaker-conditioned")
            return None
        if speaker is None:
            raise ValueError(f"speaker: this model is conditioned on {n} speakers; give an id")
        s = torch.as_tensor(speaker, device=device)
        if s.is_floating_point() or s.is_complex() or s.dtype == torch.bool:
            raise ValueError(f"speaker: expected integer ids, got dtype {s.dtype}")
        if bool(((s < 0) | (s >= n)).any()):
            bad = s[(s < 0) | (s >= n)].flatten()[0].item()
            raise ValueError(f"speaker: expected ids in 0..{n - 1}, got {bad}")
        try:
            return s.long().expand(batch)
        except RuntimeError:
            raise ValueError(
                f"speaker: shape {tuple(s.shape)} does not match the batch {tuple(batch)}"
            ) from None

    def distribution(
        self, length: int | None = None, speaker: Any = None, batch: tuple = ()
    ) -> lgm_dist.WaveNet:
        """The :class:`pyro_lgm.distributions.WaveNet` over sequences of ``length`` levels
        (default: the training segment's; the network is convolutional, so any length
        works), for the speaker ids ``speaker`` (an int or a tensor of shape ``batch``)."""
        length = self.segment if length is None else _positive_int("length", length)
        device = next(self.parameters()).device
        g = self._speaker(speaker, torch.Size(batch), device)
        return lgm_dist.WaveNet(self.model.net, length, g)

    def nll(self, levels: torch.Tensor, speaker: Any = None) -> torch.Tensor:
        """``(N,)`` negative log-likelihood in nats of each sequence of ``levels`` ``(N, T)``
        (any ``T``)."""
        if not isinstance(levels, torch.Tensor) or levels.dim() != 2:
            got = tuple(levels.shape) if isinstance(levels, torch.Tensor) else type(levels)
            raise ValueError(f"levels: expected a tensor of shape (N, T), got {got}")
        d = self.distribution(levels.shape[-1], speaker, levels.shape[:1])
        return -d.log_prob(levels)

    def forward(self, levels: torch.Tensor, speaker: Any = None) -> torch.Tensor:
        """The training loss: the mean negative log-likelihood of ``levels`` ``(N, T)`` in
        nats *per sample* (the mean NLL per sequence divided by ``T``), so that the
        progress bar, ``--clip`` and ``--lr`` mean the same at every segment length."""
        return self.nll(levels, speaker).mean() / levels.shape[-1]

    # -- generation ---------------------------------------------------------------------
    def sample(
        self,
        num: int,
        seconds: float | None = None,
        *,
        length: int | None = None,
        speaker: Any = None,
        method: str = "cached",
        generator: torch.Generator | None = None,
        progress: bool = False,
    ) -> torch.Tensor:
        """``(num, T)`` audio in ``[-1, 1]`` (float32), generated sample by sample.

        Args:
            num: how many sequences.
            seconds: their duration; ``T = max(1, round(seconds * sample_rate))``.
            length: alternatively ``T`` itself (default: the training segment's when
                ``seconds`` is not given either).
            speaker: the speaker id (an int, or ``num`` ids) of a speaker-conditioned model.
            method: ``"cached"`` (fast, per-layer queues) or ``"naive"`` (a full pass per
                sample); the same ``generator`` state gives the same audio with both.
            generator: the ``torch.Generator`` of the draws (default: the global one).
            progress: a progress bar on stderr.
        """
        num = _positive_int("num", num)
        if seconds is not None and length is not None:
            raise ValueError("seconds, length: give at most one")
        if seconds is not None:
            if isinstance(seconds, bool) or not isinstance(seconds, int | float):
                raise ValueError(f"seconds: expected a positive number, got {seconds!r}")
            if not (math.isfinite(seconds) and seconds > 0):
                raise ValueError(f"seconds: expected a positive number, got {seconds!r}")
            length = max(1, round(seconds * self.sample_rate))
        d = self.distribution(length, speaker, (num,) if self.speakers is not None else ())
        shape = () if self.speakers is not None else (num,)
        q = d.sample(shape, method=method, generator=generator, progress=progress)
        return self.levels_to_audio(q)


def read_wavenet_metadata(
    checkpoint: Mapping[str, Any], path: str | os.PathLike = "checkpoint"
) -> dict[str, Any]:
    """The :class:`TrainedWaveNet` metadata of a :func:`pyro_lgm.train.fit` checkpoint.

    Raises:
        ValueError: the checkpoint does not hold a :class:`TrainedWaveNet` (an image model's
            checkpoint of ``pyro-lgm train`` says so).
    """
    from pyro_lgm.image_models import METADATA_FORMAT as IMAGE_FORMAT
    from pyro_lgm.image_models import extra_state

    meta = extra_state(checkpoint)
    if meta is not None and meta.get("format") == IMAGE_FORMAT:
        raise ValueError(
            f"{os.fspath(path)} holds an image model of `pyro-lgm train` ({meta.get('model')}), "
            "not a WaveNet; use `pyro-lgm sample`"
        )
    if meta is None or meta.get("format") != METADATA_FORMAT:
        raise ValueError(f"{os.fspath(path)} is not a checkpoint of `pyro-lgm train-wavenet`")
    return meta


def load_trained_wavenet(
    path: str | os.PathLike, map_location: str | torch.device | None = "cpu"
) -> tuple[TrainedWaveNet, dict[str, Any]]:
    """Rebuild the model of a ``pyro-lgm train-wavenet`` checkpoint; return it and the
    checkpoint (``checkpoint["step"]`` is the training step it was written at).

    The file is read with ``torch.load(..., weights_only=True)``: no code runs from it.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not such a checkpoint (not a torch file, another
            checkpoint, or a state that does not fit its metadata).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: no such file {path!r}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception:  # not a torch file, or one that needs arbitrary code to unpickle
        raise ValueError(
            f"{path} is not a checkpoint of `pyro-lgm train-wavenet` (torch.load with "
            "weights_only=True cannot read it)"
        ) from None
    meta = read_wavenet_metadata(ckpt, path)
    try:
        model = TrainedWaveNet(
            int(meta["segment"]),
            sample_rate=int(meta["sample_rate"]),
            corpus=meta.get("corpus"),
            voices=meta.get("voices"),
            **dict(meta["options"]),
        )
        model.load_state_dict(ckpt["model"])
    except (KeyError, TypeError, RuntimeError, ValueError) as e:
        raise ValueError(f"{path}: a damaged `pyro-lgm train-wavenet` checkpoint ({e})") from None
    return model, ckpt
