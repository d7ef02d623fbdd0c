"""Conventions a user of the Prefect and Dask glue relies on without reading the code: typed
packages whose decorators keep a task's signature, and one version for the distribution."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TYPED_OK = '''
from prefect import task
from prefect_cache import cache, carbon

@cache(lifetime="flow")
@task
def align(sample: str, factor: int) -> bytes:
    return sample.encode() * factor

@carbon(max_delay="8h")
@cache
@task
def train(features: bytes) -> int:
    return len(features)

@cache(keep=True)
def plain(x: int) -> str:
    return str(x)

reveal_type(align)
reveal_type(train)
reveal_type(plain)
value: bytes = align("s", 2)
count: int = train(b"x")
text: str = plain(3)
'''

TYPED_WRONG = '''
from prefect import task
from prefect_cache import cache, carbon

@carbon(max_delay="8h")
@cache(lifetime="flow")
@task
def align(sample: str, factor: int) -> bytes:
    return sample.encode() * factor

wrong: str = align("s", "two")
'''


def mypy(tmp_path: Path, source: str) -> subprocess.CompletedProcess:
    (tmp_path / "snippet.py").write_text(source)
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--follow-imports=silent",
         "--cache-dir", str(tmp_path / ".mypy"), "snippet.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={"MYPYPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_both_glue_packages_are_typed_and_ship_their_marker():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package in ("prefect_cache", "dask_cache", "flowcache"):
        assert (ROOT / package / "py.typed").is_file()
        assert "py.typed" in data["package-data"][package]


def test_the_decorators_keep_the_task_signature(tmp_path):
    done = mypy(tmp_path, TYPED_OK)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert 'Revealed type is "prefect.tasks.Task[[sample: str, factor: int], bytes]"' in out
    assert 'Revealed type is "prefect.tasks.Task[[features: bytes], int]"' in out
    assert 'Revealed type is "def (x: int) -> str"' in out


def test_a_wrong_call_of_a_decorated_task_fails_type_checking(tmp_path):
    done = mypy(tmp_path, TYPED_WRONG)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "snippet.py:11: error" in done.stdout, done.stdout


def test_one_version_everywhere():
    import dask_cache
    import flowcache
    import prefect_cache

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "flowcache.version.__version__"}
    assert prefect_cache.__version__ == flowcache.__version__
    assert dask_cache.__version__ == flowcache.__version__
    assert importlib.metadata.version("flowcache") == flowcache.__version__
