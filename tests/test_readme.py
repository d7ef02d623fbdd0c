"""The README's runnable carbon example does what it says: one task waits, one moves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("prefect_api")
README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_carbon_example_defers_and_relocates():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    (example,) = [b for b in blocks if "CompressedClock" in b]
    namespace: dict = {}
    exec(compile(example, str(README), "exec"), namespace)  # runs the flow, as a reader would
    records = {r.decision.job: r for r in namespace["runner"]._children[-1].records}
    assert records["report"].decision.action == "defer"
    assert records["report"].actual_region == "DE"
    assert records["train"].actual_region == "FR"
    assert records["train"].decision.action in ("relocate", "defer+relocate")
