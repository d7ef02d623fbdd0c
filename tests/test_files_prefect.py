"""The files() task option on a real Prefect API: inputs localized, outputs uploaded, confirmed."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect import flow, task

from flowcache import manifest
from flowcache.keys.fingerprints import Fingerprinter
from prefect_cache import cache_hooks
from prefect_cache.files import FilesCall, files
from tests import test_files_support as support
from tests.prefect_helpers import task_state_names
from tests.test_files_support import durable_keys, make_remote

pytestmark = pytest.mark.usefixtures("prefect_api")
file_store = support.file_store  # fixture


@pytest.fixture
def bucket(request, tmp_path):
    return make_remote(request, "s3", tmp_path)


def test_inputs_are_localized_and_outputs_uploaded_then_read_from_the_cache(
        bucket, file_store, default_store_of, tmp_path):
    default_store_of(file_store)
    bucket.write("raw/s1.txt", b"acgt" * 50_000)
    calls: list[FilesCall] = []
    seen: dict[str, Path] = {}

    @files(inputs=["sample"], outputs=["report"], lifetime="flow",
           storage_options={"s3": bucket.options}, local_dir=str(tmp_path / "node"),
           on_outputs=calls.append)
    @task
    def count(sample: Path, report: Path) -> int:
        seen["sample"], seen["report"] = sample, report
        text = sample.read_bytes()
        report.write_text(f"{len(text)} bases, {text.count(b'g')} g\n")
        return len(text)

    @files(inputs=["report"], storage_options={"s3": bucket.options},
           local_dir=str(tmp_path / "node"), lifetime="flow")
    @task
    def read_back(report: Path) -> str:
        return report.read_text()

    @flow(**cache_hooks())
    def pipeline() -> tuple[int, str]:
        bases = count(bucket.url("raw/s1.txt"), bucket.url("reports/s1.txt"))
        bucket.endpoint.proxy.reset()
        return bases, read_back(bucket.url("reports/s1.txt"))

    state = pipeline(return_state=True)
    assert state.is_completed(), state
    assert state.result() == (200_000, "200000 bases, 50000 g\n")
    assert bucket.data_gets("reports/s1.txt") == 0  # the downstream task read the cache
    assert bucket.direct().cat_file(bucket.path("reports/s1.txt")) == b"200000 bases, 50000 g\n"
    assert isinstance(seen["sample"], Path)
    assert (tmp_path / "node") in seen["sample"].parents
    assert not seen["report"].exists()  # the staging copy went once it was uploaded
    (call,) = calls
    assert call.task == "count"
    assert list(call.outputs) == [bucket.url("reports/s1.txt")]
    assert call.run_id == str(state.state_details.flow_run_id)
    assert durable_keys(file_store) == set()  # lifetime "flow": purged when the run ended


def test_a_bucket_that_rejects_the_output_fails_the_task_run(bucket, file_store,
                                                             default_store_of, tmp_path):
    default_store_of(file_store)
    attempts: list[int] = []

    @files(outputs=["out"], storage_options={"s3": bucket.options},
           local_dir=str(tmp_path / "node"))
    @task(retries=1, retry_delay_seconds=0)
    def write(out: Path) -> None:
        attempts.append(1)
        out.write_bytes(b"result " * 1000)

    @flow
    def once() -> None:
        write(bucket.url("out/r.bin"))

    bucket.endpoint.proxy.reject_writes = True
    state = once(return_state=True)
    assert state.is_failed()
    assert len(attempts) == 2  # the failed upload failed the run, and the retry ran
    assert task_state_names(state.state_details.flow_run_id, expected=1) == {
        "write": ["Failed"]}
    bucket.endpoint.proxy.reject_writes = False
    assert not bucket.direct().exists(bucket.path("out/r.bin"))
    assert durable_keys(file_store) == set()

    bucket.endpoint.proxy.reject_next = 1  # refuses the first attempt's upload only
    attempts.clear()
    state = once(return_state=True)
    assert state.is_completed(), state
    assert len(attempts) == 2
    assert bucket.direct().cat_file(bucket.path("out/r.bin")) == b"result " * 1000


def test_local_outputs_are_recorded_in_the_run_manifest(bucket, file_store, default_store_of,
                                                        tmp_path):
    default_store_of(file_store)
    bucket.write("in/a.csv", b"x,y\n1,2\n")
    out_dir = tmp_path / "results"

    @files(inputs=["source"], outputs=["target"], storage_options={"s3": bucket.options},
           local_dir=str(tmp_path / "node"))
    @task
    def convert(source: Path, target: Path, sep: str = ";") -> None:
        target.write_text(source.read_text().replace(",", sep))

    @flow
    def tables() -> None:
        convert(bucket.url("in/a.csv"), str(out_dir / "a.csv"))

    assert tables(return_state=True).is_completed()
    assert (out_dir / "a.csv").read_text() == "x;y\n1;2\n"
    entry = manifest.read(out_dir)["workflows"]["tables"]["a.csv"]
    assert entry["task"] == "convert"
    assert entry["config"] == {"sep": ";"}
    assert list(entry["inputs"]) == [bucket.url("in/a.csv")]
    fingerprinter = Fingerprinter({"s3": bucket.options})
    assert [row.status for row in manifest.check(out_dir, fingerprinter)] == ["ok"]
    bucket.write("in/a.csv", b"x,y\n3,4\n")  # the input changes after the run
    assert [row.status for row in manifest.check(out_dir, fingerprinter)] == ["stale"]
