"""The README's two set-up commands are the ones CI runs."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    install = 'pip install torch==2.13.0 -e ".[dev]"'
    tests = 'python -m pytest -n 2 -m "not slow"'
    assert install in readme and install in ci
    assert tests in readme and tests in ci
    assert "pyro-lgm demo" in readme
