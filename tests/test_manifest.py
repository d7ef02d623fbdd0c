"""Run manifests: concurrent updates from many processes, cache(outputs=...), `flowcache runs`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flowcache import manifest
from flowcache.cli import app
from flowcache.tiers.memory import MemoryTier
from flowcache.tiers.objects import ObjectTier
from prefect_cache import cache

# Imports flowcache once, forks WRITERS children that block on a pipe until all exist, then
# releases them together; each records its own file UPDATES times (the last one wins).
LAUNCHER = r"""
import os, sys
from flowcache.manifest import update
directory, writers, updates = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
gate_r, gate_w = os.pipe()
children = []
for i in range(writers):
    pid = os.fork()
    if pid == 0:
        os.close(gate_w)
        os.read(gate_r, 1)  # returns when the launcher closes its end: all start at once
        for n in range(updates):
            update(directory, "stress", {f"part-{i:02d}.out": {"writer": i, "update": n,
                                                               "pid": os.getpid()}})
        os._exit(0)
    children.append(pid)
os.close(gate_r)
os.close(gate_w)
failed = sum(os.waitpid(pid, 0)[1] != 0 for pid in children)
sys.exit(1 if failed else 0)
"""


def test_fifty_processes_update_one_manifest_and_no_reader_sees_a_torn_file(tmp_path):
    directory = tmp_path / "out"
    manifest.update(directory, "stress", {})  # the file exists from the start
    path = manifest.manifest_path(directory)
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(directory), "50", "4"],
                                cwd=Path(__file__).resolve().parents[1])
    reads, torn, sizes = 0, [], set()

    def read_until_done() -> None:
        nonlocal reads
        while True:
            done = launcher.poll() is not None
            text = path.read_text()
            reads += 1
            try:
                sizes.add(len(json.loads(text)["workflows"]["stress"]))
            except (ValueError, KeyError) as exc:
                torn.append((text[:80], exc))
            if done:
                return

    reader = threading.Thread(target=read_until_done)
    reader.start()
    reader.join(timeout=120)
    assert launcher.wait(timeout=120) == 0
    assert torn == []
    assert len(sizes) > 2, "the reader should have seen the manifest grow"  # it ran alongside
    files = manifest.read(directory)["workflows"]["stress"]
    assert sorted(files) == [f"part-{i:02d}.out" for i in range(50)]
    assert {entry["update"] for entry in files.values()} == {3}  # every last update kept
    assert len({entry["pid"] for entry in files.values()}) == 50
    assert sorted(p.name for p in directory.iterdir()) == sorted(  # no temporary files left
        [manifest.LOCK_NAME, manifest.MANIFEST_NAME, manifest.backup_path(directory).name])


# -- cache(outputs=...) ---------------------------------------------------------------------------
@pytest.fixture
def store(make_store, tmp_path, default_store_of):
    return default_store_of(make_store(MemoryTier(), ObjectTier(str(tmp_path / "durable"))))


def test_a_cached_function_records_the_files_it_wrote(store, tmp_path):
    source = tmp_path / "in" / "words.txt"
    source.parent.mkdir()
    source.write_text("alpha beta gamma")
    out_dir = tmp_path / "out"
    calls = []

    @cache(outputs=["target"], files=["words"])
    def count(words: str, target: str, scale: int = 2) -> int:
        calls.append(target)
        n = len(Path(words).read_text().split()) * scale
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_text(str(n))
        return n

    assert count(str(source), str(out_dir / "count.txt")) == 6
    (workflow,) = manifest.read(out_dir)["workflows"]  # no flow: the function names it
    assert workflow.endswith(".count")
    entry = manifest.read(out_dir)["workflows"][workflow]["count.txt"]
    assert entry["task"] == workflow
    assert entry["config"] == {"scale": 2}
    assert list(entry["inputs"]) == [str(source)]
    assert entry["inputs"][str(source)][0] == "file"
    assert entry["started"] <= entry["finished"]
    assert entry["result"]["type"] == "int"
    assert len(entry["result"]["key"]) == 64
    # the output exists now; the key holds its path, not its fingerprint: this is a hit
    assert count(str(source), str(out_dir / "count.txt")) == 6
    assert len(calls) == 1
    assert manifest.read(out_dir)["workflows"][workflow]["count.txt"] == entry  # a hit: unchanged

    (row,) = manifest.check(out_dir)
    assert (row.workflow, row.file, row.status) == (workflow, "count.txt", "ok")
    source.write_text("alpha beta gamma delta")
    os.utime(source, ns=(1, 1))  # a different mtime even on a coarse-grained filesystem
    (row,) = manifest.check(out_dir)
    assert row.status == "stale"
    assert row.reasons == (f"input {source} changed",)
    result = CliRunner().invoke(app, ["runs", str(out_dir)])
    assert result.exit_code == 0, result.output
    assert "STALE" in result.output
    assert "1 files, 1 not up to date" in result.output

    assert count(str(source), str(out_dir / "count.txt")) == 8  # recomputed: up to date again
    assert [r.status for r in manifest.check(out_dir)] == ["ok"]
    (out_dir / "count.txt").write_text("tampered")
    assert [r.status for r in manifest.check(out_dir)] == ["modified"]
    (out_dir / "count.txt").unlink()
    assert [r.status for r in manifest.check(out_dir)] == ["missing"]
    listing = json.loads(CliRunner().invoke(app, ["runs", str(out_dir), "--json"]).output)
    assert listing[0]["status"] == "missing"


def test_returned_paths_are_outputs_too(store, tmp_path):
    @cache(outputs=["return"])
    def split(n: int) -> list[Path]:
        paths = []
        for i in range(n):
            path = tmp_path / f"shard-{i % 2}" / f"{i}.txt"
            path.parent.mkdir(exist_ok=True)
            path.write_text(str(i))
            paths.append(path)
        return paths

    split(4)
    for shard in ("shard-0", "shard-1"):
        (files,) = manifest.read(tmp_path / shard)["workflows"].values()
        assert len(files) == 2
        assert all(entry["config"] == {"n": 4} for entry in files.values())


def test_declaring_outputs_wrongly_is_a_clear_error(store):
    def write(target: str) -> None: ...

    with pytest.raises(TypeError, match="list of parameter names"):
        cache(outputs="target")(write)
    with pytest.raises(TypeError, match="no parameter"):
        cache(outputs=["nope"])(write)
    with pytest.raises(TypeError, match="not both"):
        cache(outputs=["target"], files=["target"])(write)


def test_a_damaged_manifest_is_kept_aside_not_overwritten(tmp_path, caplog):
    manifest.manifest_path(tmp_path).write_text('{"workflows": {')
    manifest.update(tmp_path, "wf", {"a": {}})  # the writer's record is not lost either
    (aside,) = tmp_path.glob(".flowcache-manifest.json.corrupt-*")
    assert aside.read_text() == '{"workflows": {'  # the damaged file, as it was
    assert "not valid JSON" in caplog.text
    assert manifest.read(tmp_path)["workflows"] == {"wf": {"a": {}}}
    missing = CliRunner().invoke(app, ["runs", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2
    assert "no run manifest" in missing.output


@pytest.mark.usefixtures("prefect_api")
def test_a_prefect_task_records_its_flow_and_run(store, tmp_path):
    from prefect import flow, task

    @cache(outputs=["target"])
    @task
    def render(text: str, target: Path) -> int:
        target.write_text(text)
        return len(text)

    @flow(name="report-flow")
    def report() -> int:
        return render("hello", tmp_path / "report.txt")

    state = report(return_state=True)
    assert state.result() == 5
    entry = manifest.read(tmp_path)["workflows"]["report-flow"]["report.txt"]
    assert entry["run"] == str(state.state_details.flow_run_id)
    assert entry["task"] == "render"
    assert entry["config"] == {"text": "hello"}


def test_no_record_is_lost_when_a_manifest_is_damaged(tmp_path):
    for name in ("a.csv", "b.csv", "c.csv"):
        manifest.update(tmp_path, "wf", {name: {"task": name}})
    manifest.manifest_path(tmp_path).write_text("truncat")  # damaged outside flowcache
    assert set(manifest.read(tmp_path)["workflows"]["wf"]) == {"a.csv", "b.csv", "c.csv"}
    manifest.update(tmp_path, "wf", {"d.csv": {"task": "d"}})  # the next writer
    assert set(manifest.read(tmp_path)["workflows"]["wf"]) == {"a.csv", "b.csv", "c.csv",
                                                               "d.csv"}
    manifest.manifest_path(tmp_path).write_text("[]")
    result = CliRunner().invoke(app, ["runs", str(tmp_path), "--repair"])
    assert result.exit_code == 0, result.output
    assert "restored the last good version (4 records)" in result.output
    assert len(manifest.read(tmp_path)["workflows"]["wf"]) == 4
    assert len(list(tmp_path.glob(".flowcache-manifest.json.corrupt-*"))) == 2
