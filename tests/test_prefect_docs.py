"""docs/prefect.md's first example does what the page says: a warm run hits the consumer and
never recomputes the flow-scoped intermediate made inside it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flowcache.tiers.memory import MemoryTier
from flowcache.tiers.objects import ObjectTier
from tests.prefect_helpers import task_state_names

pytestmark = pytest.mark.usefixtures("prefect_api")
PAGE = Path(__file__).resolve().parents[1] / "docs" / "prefect.md"


def test_the_cache_option_example_never_recomputes_its_intermediate_when_warm(
        tmp_path, make_store, default_store_of):
    store = default_store_of(make_store(MemoryTier(), ObjectTier(str(tmp_path / "durable"))))
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)
    example = blocks[0]
    assert 'lifetime="flow"' in example
    assert "def pipeline" in example
    namespace: dict = {}
    exec(compile(example, str(PAGE), "exec"), namespace)  # defines the tasks and the flow
    reference = tmp_path / "ref.txt"
    reference.write_text("ACGT" * 10)
    samples = []
    for i in range(3):
        samples.append(tmp_path / f"s{i}.txt")
        samples[-1].write_text("A" * (i + 1))

    pipeline = namespace["pipeline"]
    cold = pipeline(samples, reference, return_state=True)
    assert [row["aligned bytes"] for row in cold.result()] == [41, 42, 43]
    cold_states = task_state_names(cold.state_details.flow_run_id, expected=6)
    assert cold_states == {"call_variants": ["Completed"] * 3, "align": ["Completed"] * 3}
    assert {h.lifetime["kind"] for _, h in store.headers()} == {"keep"}  # align's were purged

    warm = pipeline(samples, reference, return_state=True)
    assert warm.result() == cold.result()
    warm_states = task_state_names(warm.state_details.flow_run_id, expected=3)
    assert warm_states == {"call_variants": ["Cached"] * 3}  # align was never called
