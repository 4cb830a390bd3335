"""pyro_lgm.data."""

from pyro_lgm.data._paths import DATASETS, load
from pyro_lgm.data.audio import (
    linear_decode,
    linear_encode,
    mu_law_decode,
    mu_law_encode,
    read_wav,
    tones,
    write_wav,
)
from pyro_lgm.data.binarized_mnist import binarize, load_binarized_mnist, read_amat
from pyro_lgm.data.cifar10 import CIFAR10_CLASSES, load_cifar10
from pyro_lgm.data.debd import list_debd, load_debd, read_debd_file
from pyro_lgm.data.digits import (
    DIGITS_SPLIT_SIZES,
    digits_permutation,
    load_digits,
    load_digits_images,
)
from pyro_lgm.data.energies import (
    ENERGIES,
    Energy,
    KLEstimate,
    edge_mass,
    energy,
    log_normalizer,
    reverse_kl,
    rsample_with_log_prob,
)
from pyro_lgm.data.images import (
    PAD_COLOR,
    UNOBSERVED_COLOR,
    completion_grid,
    image_grid,
    save_image_grid,
)
from pyro_lgm.data.mnist import load_mnist, read_idx, write_idx
from pyro_lgm.data.speech import (
    RATES,
    VOICES,
    WORDS,
    build_speech_corpus,
    load_speech_corpus,
    speech_segments,
)
from pyro_lgm.data.toy import Checkerboard, EightGaussians, Rings, TwoMoons

__all__: list[str] = [
    # real data readers
    "CIFAR10_CLASSES",
    "DATASETS",
    "DIGITS_SPLIT_SIZES",
    "binarize",
    "digits_permutation",
    "list_debd",
    "load",
    "load_binarized_mnist",
    "load_cifar10",
    "load_debd",
    "load_digits",
    "load_digits_images",
    "load_mnist",
    "read_amat",
    "read_debd_file",
    "read_idx",
    "write_idx",
    # image grids (PNG) of data, samples and completions
    "PAD_COLOR",
    "UNOBSERVED_COLOR",
    "completion_grid",
    "image_grid",
    "save_image_grid",
    # 2-D toy densities with exact log-densities
    "Checkerboard",
    "EightGaussians",
    "Rings",
    "TwoMoons",
    # unnormalized 2-D energies (Rezende & Mohamed 2015) and the reverse KL
    "ENERGIES",
    "Energy",
    "KLEstimate",
    "edge_mass",
    "energy",
    "log_normalizer",
    "reverse_kl",
    "rsample_with_log_prob",
    # a speech corpus synthesized with espeak-ng (WaveNet)
    "RATES",
    "VOICES",
    "WORDS",
    "build_speech_corpus",
    "load_speech_corpus",
    "speech_segments",
    # audio: mu-law companding, synthetic tones, 16-bit PCM WAV
    "linear_decode",
    "linear_encode",
    "mu_law_decode",
    "mu_law_encode",
    "read_wav",
    "tones",
    "write_wav",
]
