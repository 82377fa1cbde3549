"""Golden plans: ``tests/fixtures/plan/*.sql`` pair SQL with its EXPLAIN text.

Each case is ``# title: ...``, the SQL, a ``----`` line, then the expected EXPLAIN output.
``QSERV_UPDATE_FIXTURES=1`` rewrites the expectations (review the diff).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.differential.catalog import generate
from tests.differential.harness import FakeCluster

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "plan"
UPDATE = os.environ.get("QSERV_UPDATE_FIXTURES") == "1"


def load_cases(path: Path) -> list[tuple[str, str, str]]:
    """(title, sql, expected explain) of every case in a fixture file."""
    cases = []
    for block in path.read_text().split("# title:")[1:]:
        title, _, rest = block.partition("\n")
        sql, _, expected = rest.partition("----\n")
        cases.append((title.strip(), sql.strip(), expected.strip("\n") + "\n" if expected.strip() else ""))
    return cases


@pytest.fixture(scope="module")
def small_cluster() -> FakeCluster:
    return FakeCluster(generate(seed=7, n_objects=300), n_workers=3)


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.sql")), ids=lambda p: p.stem)
def test_plan_fixture(small_cluster: FakeCluster, path: Path) -> None:
    cases = load_cases(path)
    actual = []
    for title, sql, _ in cases:
        outcome = small_cluster.check(sql)
        assert outcome is not None, f"{path.name}: {title}: refused"
        actual.append((title, sql, outcome.plan.explain()))
    if UPDATE:
        path.write_text("".join(f"# title: {t}\n{s}\n----\n{e}\n" for t, s, e in actual))
        return
    for (title, sql, expected), (_, _, got) in zip(cases, actual, strict=True):
        assert got == expected, f"{path.name}: {title}\n{sql}\n--- got:\n{got}"
