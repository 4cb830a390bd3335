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


def test_readme_python_examples_run(tmp_path, monkeypatch):
    import re
    import runpy

    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks, "README should carry a Python example"
    monkeypatch.chdir(tmp_path)
    for i, code in enumerate(blocks):
        path = tmp_path / f"readme_example_{i}.py"
        path.write_text(code)
        runpy.run_path(str(path), run_name="__main__")


def test_tutorial_two_runs():
    import runpy

    runpy.run_path(str(ROOT / "tutorials" / "02_test_your_own_flow.py"), run_name="__main__")
