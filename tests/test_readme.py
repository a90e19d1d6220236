"""The README's two commands are the ones CI and users run."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def commands():
    with open(os.path.join(ROOT, "README.md")) as f:
        return re.findall(r"```sh\n(.*?)\n```", f.read(), flags=re.S)


def test_readme_has_exactly_two_commands_and_ci_runs_the_test_one():
    demo, test = commands()
    assert "lstm1997.demo" in demo and "pytest" in test
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        assert test in f.read().splitlines()


def test_readme_python_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the examples save files
    with open(os.path.join(ROOT, "README.md")) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)
    assert blocks
    namespace = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
