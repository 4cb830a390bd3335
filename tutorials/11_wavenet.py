"""Tutorial 11: WaveNet and Parallel WaveNet on synthetic tones.

WaveNet models a waveform one sample at a time, ``p(x) = prod_t p(x_t | x_<t)``, each
conditional read from one causal pass of dilated convolutions. In pyro-lgm it follows the
image family's rules: ``pyro_lgm.models.WaveNet(length, ...)`` is an ``nn.Module`` whose call
returns a ``pyro_lgm.distributions.WaveNet`` over sequences of integer levels, ``log_prob``
is one parallel pass, and ``sample()`` generates step by step, either with the fast cached
algorithm (one small product per layer per sample, Paine et al.) or naively (a full pass per
sample); both read the same uniforms, so they return the same sequences.

Part 1 is mu-law companding, the 8-bit code WaveNet's softmax predicts. Part 2 is the
receptive field: which earlier samples one prediction reads, drawn by a gradient and checked
with ``assert_autoregressive(within=...)``. Part 3 trains a small mu-law WaveNet on
``pyro_lgm.data.tones`` (sums of sines; ``tones`` gives no labels, so the model is
unconditional), compares its test NLL with an i.i.d. histogram, and samples with both
methods. Part 4 is Parallel WaveNet: a logistic-mixture WaveNet teacher over 16-bit levels,
and an IAF student (``ParallelWaveNet``) distilled into the teacher's continuous density,
first with ``distillation_loss`` and then as a Pyro model / guide pair trained by ``SVI``.
No download and no espeak-ng: the data are synthesized.

Run::

    python tutorials/11_wavenet.py                 # under a minute of CPU on one thread
    python tutorials/11_wavenet.py --wav tone.wav  # also a WAV of 1 s of generated audio

Measured on 2026-12-01 (one thread, the defaults, 32.4 CPU-s in all (28.3 user + 4.1
system) on a busy 2-core machine; commit a987ecd, after the 16-bit levels moved to
``linear_encode``). Part 1: 256-level codes of one tone, SNR mu-law / linear 38.0 / 44.3 dB
at peak 0.9, 37.4 / 25.2 dB at 0.1, 32.6 / 5.1 dB at 0.01: mu-law gives up 6 dB on a loud
signal to keep a quiet one audible. Part 2 prints::

    k=2 L=3 S=1  R=9   ...........#########@...
    k=2 L=2 S=2  R=8   ............########@...
    k=3 L=3 S=1  R=17  ...#################@...

Part 3 (4 kHz tones, 256 samples a sequence, R = 65, 300 steps of 16 sequences, 13.1 CPU-s):
test NLL 3.177 nats = 4.58 bits per sample against 4.918 nats = 7.10 bits for the i.i.d.
histogram (uniform: 8 bits). Cached and naive sampling drew the same 4 x 256 levels (0
differ) in 0.35 and 0.67 CPU-s (1.9x); the naive cost grows with the square of the length
(``benchmarks/results/wavenet.md``: 90.3x at 16 000 samples). Part 4: the 16-bit teacher
(3 logistics, R = 65, 300 steps, gradient norm clipped at 10): test NLL 12.86 bits a sample;
the student (2 IAF flows, bounded by ``tanh``) moves from a KL estimate of 9.425 to 0.217
nats per sample in 200 steps (5.2 CPU-s); the SVI loss equals ``distillation_loss(entropy=
"sample")`` on the same draws (0.18911 both) and 20 SVI steps take it from 0.209 to 0.193.
The teacher's log-density per sample is 1.761 for the student's samples, 1.611 for its own
and 1.487 for real test tones: KL(student || teacher) is mode-seeking, so the student sits
where the teacher's density is high. The student drew 16 x 256 samples 85.9x faster than
the teacher's cached generation (72x to 86x over runs: the ratio moves with the machine's
load). (Without the clipping, a side run of the same teacher went from 11.98 to 13.90 bits
per sample between steps 200 and 250, with the float32 levels of before: the 16-bit
mixture's training is jumpy.)
"""

import argparse
import math
import time

import pyro
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyro_lgm.data import linear_encode, mu_law_decode, mu_law_encode, tones, write_wav
from pyro_lgm.distributions import WaveNet as WaveNetDistribution
from pyro_lgm.models import DensityDistillation, ParallelWaveNet, WaveNet, distillation_loss
from pyro_lgm.testing import assert_autoregressive

RATE = 4000  # samples per second: tones between 100 Hz and RATE / 8 = 500 Hz


def snr_db(x, x_hat):
    """Signal-to-noise ratio of a reconstruction, in dB."""
    return 10 * math.log10(float(x.pow(2).sum() / (x - x_hat).pow(2).sum()))


def companding(length=4000):
    """Part 1: mu-law is exact on its grid, and trades loud-signal for quiet-signal SNR."""
    q = torch.arange(256)
    exact = bool((mu_law_encode(mu_law_decode(q, dtype=torch.float64)) == q).all())
    print(f"mu-law: encode(decode(q)) == q for all 256 levels: {exact}")
    x = tones(1, length, sample_rate=RATE, seed=0, dtype=torch.float64)[0]  # peak 0.9
    snr = {}
    print("SNR of 256-level codes of one tone, mu-law against linear (uniform on [-1, 1]):")
    for peak in (0.9, 0.1, 0.01):
        v = x * (peak / 0.9)
        mu = mu_law_decode(mu_law_encode(v), dtype=torch.float64)
        lin = torch.round((v + 1) * 127.5) / 127.5 - 1
        snr[peak] = (snr_db(v, mu), snr_db(v, lin))
        print(f"  peak {peak:<4}: mu-law {snr[peak][0]:4.1f} dB, linear {snr[peak][1]:4.1f} dB")
    return exact, snr


def band(length, field):
    """``[t, j]`` is True when ``t - field <= j < t``: the samples step ``t`` may read."""
    i = torch.arange(length)
    lag = i[:, None] - i[None, :]
    return (lag >= 1) & (lag <= field)


def receptive_field(length=24, at=20):
    """Part 2: the samples that reach the prediction of step ``at``, by gradient."""
    configs = [(2, 3, 1), (2, 2, 2), (3, 3, 1)]  # (kernel_size k, layers_per_stack L, stacks S)
    print("R = k + (k - 1) S (2^L - 1): step t reads x[t-R] .. x[t-1] and nothing else")
    print(f"prediction of step {at} ('@') of {length}; '#': a sample that reaches it")
    fields = {}
    for k, layers, stacks in configs:
        torch.manual_seed(0)
        model = WaveNet(
            length, 4, 4, 4, layers_per_stack=layers, stacks=stacks, kernel_size=k, bits=4
        ).double()
        r = model.receptive_field
        assert r == k + (k - 1) * stacks * (2**layers - 1)
        x = torch.randint(0, 16, (4, length)).double().requires_grad_()  # 4-bit levels
        model.net(x)[:, :, at].sum().backward()
        reach = (x.grad != 0).any(0)
        strip = "".join("@" if j == at else ("#" if reach[j] else ".") for j in range(length))
        print(f"k={k} L={layers} S={stacks}  R={r:<3} {strip}")
        # every step at once: nothing at or after t, nothing before t - R, no gap inside
        d = model()
        x = torch.randint(0, 16, (4, length)).double()
        assert_autoregressive(d.conditional_params, x, no_blind_spot=True, within=band(length, r))
        fields[(k, layers, stacks)] = r
    print("assert_autoregressive(no_blind_spot=True, within=band(T, R)) passed for all three")
    big = WaveNet(16000, layers_per_stack=10).receptive_field
    print(f"the paper's stack of dilations 1 .. 512 (k=2, L=10): R = {big} samples")
    return fields


def iid_nll(train, test, levels):
    """Nats per test sample of the training histogram of levels (add-half smoothing)."""
    counts = torch.bincount(train.long().flatten(), minlength=levels).double() + 0.5
    return float(-(counts / counts.sum()).log()[test.long().flatten()].mean())


def train(model, x, steps, lr, batch=16, clip=None):
    """Maximum likelihood with Adam; returns the CPU seconds spent."""
    optim = torch.optim.Adam(model.parameters(), lr=lr)
    t0 = time.process_time()
    for _ in range(steps):
        i = torch.randint(len(x), (batch,))
        loss = -model().log_prob(x[i]).mean() / x.shape[-1]  # nats per sample
        optim.zero_grad()
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optim.step()
    return time.process_time() - t0


def mu_law_wavenet(steps, length, wav, wav_seconds):
    """Part 3: a mu-law WaveNet on tones: NLL, and cached against naive generation."""
    torch.manual_seed(0)
    x = mu_law_encode(tones(256, length, sample_rate=RATE, seed=1)).float()
    test = mu_law_encode(tones(64, length, sample_rate=RATE, seed=2)).float()
    model = WaveNet(length, 16, 32, 16, layers_per_stack=6)  # 256-way softmax, R = 65
    spent = train(model, x, steps, lr=3e-3)
    with torch.no_grad():
        nll = -model().log_prob(test).mean().item() / length
    iid = iid_nll(x, test, 256)
    print(
        f"mu-law WaveNet (R = {model.receptive_field}): {steps} steps in {spent:.1f} CPU-s; "
        f"test NLL {nll:.3f} nats = {nll / math.log(2):.2f} bits per sample"
    )
    print(
        f"  i.i.d. histogram {iid:.3f} nats = {iid / math.log(2):.2f} bits; "
        f"uniform log 256 = {math.log(256):.3f} nats = 8 bits"
    )

    # the same draws from the same uniforms, by the two algorithms
    d = model()
    out = {}
    for method in ("cached", "naive"):
        g = torch.Generator().manual_seed(7)
        t0 = time.process_time()
        out[method] = (d.sample((4,), method=method, generator=g), time.process_time() - t0)
    (a, ta), (b, tb) = out["cached"], out["naive"]
    differ = int((a != b).sum())
    print(
        f"4 x {length} samples: cached {ta:.2f} CPU-s, naive {tb:.2f} CPU-s "
        f"({tb / ta:.1f}x); {differ} of {a.numel()} levels differ"
    )
    if wav:
        steps_out = max(1, round(wav_seconds * RATE))
        audio = mu_law_decode(WaveNetDistribution(model.net, steps_out).sample())  # same net
        write_wav(wav, audio, sample_rate=RATE)
        print(f"wrote {wav}: {steps_out} samples at {RATE} Hz from the cached sampler")
    return {"nll": nll, "iid": iid, "cached_equals_naive": differ == 0, "speedup": tb / ta}


def parallel_wavenet(teacher_steps, distill_steps, svi_steps, length):
    """Part 4: distil an IAF student into a 16-bit logistic-mixture WaveNet teacher."""
    torch.manual_seed(0)

    def levels(v):  # linear 16-bit levels, as the mixture's bins are linear on [-1, 1]
        return linear_encode(v, 2**16).float()

    x = tones(256, length, sample_rate=RATE, seed=3)
    test = tones(64, length, sample_rate=RATE, seed=4)
    teacher_model = WaveNet(
        length, 16, 32, 16, layers_per_stack=6, output="logistic_mixture", num_mixtures=3
    )
    spent = train(teacher_model, levels(x), teacher_steps, lr=3e-3, clip=10.0)
    teacher_model.eval()
    for p in teacher_model.parameters():
        p.requires_grad_(False)  # frozen: gradients flow through it, never into it
    with torch.no_grad():
        nll = -teacher_model().log_prob(levels(test)).mean().item() / length
    teacher = teacher_model().as_continuous()  # density over real sequences in [-1, 1]
    print(
        f"16-bit teacher: {teacher_steps} steps in {spent:.1f} CPU-s; test NLL "
        f"{nll / math.log(2):.2f} bits per sample (uniform: 16)"
    )

    student = ParallelWaveNet(length, flows=2, hidden=16, layers=4, bounded=True)

    def kl_estimate(n=64):
        """KL(student || teacher) per sample, from the same 64 draws every time."""
        with torch.random.fork_rng(), torch.no_grad():
            torch.manual_seed(123)
            return distillation_loss(student, teacher, n).kl.item() / length

    before = kl_estimate()
    optim = torch.optim.Adam(student.parameters(), lr=3e-3)
    t0 = time.process_time()
    for _ in range(distill_steps):
        loss = distillation_loss(student, teacher, 8)
        optim.zero_grad()
        (loss.total / length).backward()
        optim.step()
    spent = time.process_time() - t0
    after = kl_estimate()
    print(
        f"student (2 IAF flows, R = {student.receptive_field}): KL estimate {before:.3f} -> "
        f"{after:.3f} nats per sample after {distill_steps} steps ({spent:.1f} CPU-s)"
    )

    # the same objective as a Pyro program: teacher = model, student = guide
    pyro.clear_param_store()
    dd = DensityDistillation(student, teacher, num_samples=8)
    svi = SVI(dd.model, dd.guide, Adam({"lr": 1e-3}), Trace_ELBO())
    torch.manual_seed(5)
    elbo = svi.evaluate_loss() / length
    torch.manual_seed(5)
    direct = distillation_loss(student, teacher, 8, entropy="sample").kl.item() / length
    losses = [svi.step() / length for _ in range(svi_steps)]
    print(f"SVI(DensityDistillation), -ELBO per sample: {elbo:.5f}")
    print(f"  distillation_loss(entropy='sample').kl on the same draws: {direct:.5f}")
    print(f"  {svi_steps} SVI steps: {losses[0]:.3f} -> {losses[-1]:.3f}")

    # what the teacher thinks of the student's samples, and what each costs to draw
    n = 16
    with torch.no_grad():
        t0 = time.process_time()
        xs, _ = student.sample_with_log_prob(n)
        ts = time.process_time() - t0
        t0 = time.process_time()
        xt = teacher.sample((n,))
        tt = time.process_time() - t0
        own = teacher.log_prob(xt).mean().item() / length
        of_student = teacher.log_prob(xs).mean().item() / length
        real = teacher.log_prob(test).mean().item() / length
    print(
        f"teacher log-density per sample: the student's samples {of_student:.3f}, its own "
        f"{own:.3f}, real test tones {real:.3f}"
    )
    print(
        f"{n} x {length} samples: student {ts * 1e3:.1f} CPU-ms (one pass per flow), teacher "
        f"{tt * 1e3:.1f} CPU-ms (cached, step by step): {tt / ts:.1f}x"
    )
    return {
        "kl_before": before,
        "kl_after": after,
        "svi_elbo": elbo,
        "svi_direct": direct,
        "teacher_of_student": of_student,
        "teacher_of_own": own,
        "student_speedup": tt / ts,
    }


def main(
    steps=300,
    teacher_steps=300,
    distill_steps=200,
    svi_steps=20,
    length=256,
    wav=None,
    wav_seconds=1.0,
):
    torch.set_num_threads(1)
    exact, snr = companding()
    fields = receptive_field()
    results = {"mu_law_exact": exact, "snr": snr, "fields": fields}
    results.update(mu_law_wavenet(steps, length, wav, wav_seconds))
    results.update(parallel_wavenet(teacher_steps, distill_steps, svi_steps, length))
    return results


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=300, help="mu-law WaveNet training steps")
    p.add_argument("--teacher-steps", type=int, default=300)
    p.add_argument("--distill-steps", type=int, default=200)
    p.add_argument("--svi-steps", type=int, default=20)
    p.add_argument("--length", type=int, default=256, help="samples per training sequence")
    p.add_argument("--wav", default=None, help="write generated audio here (16-bit PCM)")
    p.add_argument("--wav-seconds", type=float, default=1.0)
    a = p.parse_args()
    main(a.steps, a.teacher_steps, a.distill_steps, a.svi_steps, a.length, a.wav, a.wav_seconds)
