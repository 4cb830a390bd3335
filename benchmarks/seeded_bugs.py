"""Seeded bugs: each mutation of the library must make the tests named with it fail.

Every mutation is applied to a fresh clone of this repository's HEAD (in a temporary
directory) and only the tests listed with it run (``pytest -x -n 2``); a row reads CAUGHT when
they fail, MISSED when they pass. The list holds the bugs that passed the whole suite before
issue 9 (kit tolerances, loss guards of fit(), a conditional transform ignoring its context,
the coupling log-det cache ignoring its tensors) and the later numerics of the same kind.
One mutation is known to be equivalent (the stamp already checks the tensors' identity) and
is listed to say so.

    python benchmarks/seeded_bugs.py            # all (about 2 minutes on 2 cores)
    python benchmarks/seeded_bugs.py coupling   # those whose name contains "coupling"
"""

import os
import subprocess
import sys
import tempfile

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MUTS = [
    (
        "kit tolerances loosened 1000x",
        "pyro_lgm/testing/assertions.py",
        'return {"atol": root_eps, "rtol": root_eps}',
        'return {"atol": 1000 * root_eps, "rtol": 1000 * root_eps}',
        ["tests/test_testing_kit.py"],
    ),
    (
        "ConditionalRadial from zeros_like(context)",
        "pyro_lgm/transforms/radial.py",
        "out = self.nn(context)",
        "out = self.nn(torch.zeros_like(context))",
        ["tests/test_transform_properties.py", "-k", "depends_on_context and radial"],
    ),
    (
        "coupling log-det cache: identity check alone removed (equivalent: the stamp holds x, y)",
        "pyro_lgm/transforms/_cached.py",
        "if x_ref() is not x or y_ref() is not y:",
        "if False:",
        ["tests/test_caches.py"],
    ),
    (
        "coupling log-det cache ignores which tensors",
        "pyro_lgm/transforms/_cached.py",
        [
            "if x_ref() is not x or y_ref() is not y:",
            "stamp.valid([*self._cache_tensors(), x, y])",
            "Stamp([*self._cache_tensors(), x, y])",
        ],
        ["if False:", "stamp.valid([*self._cache_tensors()])", "Stamp([*self._cache_tensors()])"],
        ["tests/test_caches.py"],
    ),
    (
        "fit MLE loss guard deleted",
        "pyro_lgm/train.py",
        'raise self._diverged(batch, f"the loss is {value}")\n        loss_t.backward()',
        "pass\n        loss_t.backward()",
        ["tests/test_train.py", "-k", "not torchrun"],
    ),
    (
        "fit SVI loss guard deleted",
        "pyro_lgm/train.py",
        'raise self._diverged(batch, f"the loss is {value}")\n        return value\n',
        "pass\n        return value\n",
        ["tests/test_train.py", "-k", "not torchrun"],
    ),
    (
        "planar scalar equation solved in the input dtype",
        "pyro_lgm/transforms/planar.py",
        'return t.dtype if t.device.type == "mps" else torch.float64',
        "return t.dtype",
        ["tests/test_planar_radial.py"],
    ),
    (
        "MADE block plan one column short",
        "pyro_lgm/nn/masked.py",
        "lo, hi = (used[0], used[-1] + 1) if used else (0, 0)",
        "lo, hi = (used[0], used[-1]) if used else (0, 0)",
        ["tests/test_made_nn.py"],
    ),
]


def main() -> int:
    only = sys.argv[1:]
    if {"-h", "--help"} & set(only):
        print(__doc__)
        return 0
    missed = 0
    for name, path, old, new, tests in MUTS:
        if only and not any(o in name for o in only):
            continue
        with tempfile.TemporaryDirectory() as d:
            caught, last = _run(d, name, path, old, new, tests)
        missed += not caught and "equivalent" not in name
        print(f"{'CAUGHT' if caught else 'MISSED'}  {name}: {last}", flush=True)
    return 1 if missed else 0


def _run(d, name, path, old, new, tests):
    subprocess.run(["git", "clone", "-q", SRC, d], check=True)
    p = os.path.join(d, path)
    s = open(p).read()
    olds, news = (old, new) if isinstance(old, list) else ([old], [new])
    for o, n in zip(olds, news):
        if s.count(o) != 1:
            raise SystemExit(f"{name}: the code to mutate is not in {path} once; update MUTS")
        s = s.replace(o, n)
    open(p, "w").write(s)
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-n", "2"]
    env = {**os.environ, "PYTHONPATH": d}
    r = subprocess.run([*cmd, *tests], cwd=d, capture_output=True, text=True, env=env)
    last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr[-200:]
    return r.returncode != 0, last


if __name__ == "__main__":
    sys.exit(main())
