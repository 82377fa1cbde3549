"""A query is planned on the chunk placement of its chunked tables' family, whatever database
its regular tables are in; chunked tables of two families are refused, naming both.

The pipeline plans (``Pipeline.prepare``) against a real SQLite metadata store holding two
databases of different partitioning, each family with chunks on other workers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from czar.merge import MergeEngine
from czar.pipeline import Pipeline
from czar.view import ViewCache
from qserv.catalog import Column, Database, Partitioning, Table, TableKind
from qserv.errors import Unsupported
from qserv.metadata import ChunkRows, MetadataStore, Replica, TransactionState, WorkerInfo, open_store

SKY = Database("sky")  # default partitioning
AAA = Database("aaa", Partitioning(order=4, sub_order=7, overlap=0.02))  # sorts before sky
# chunk -> workers holding it, per database's family: disjoint, so a wrong family is visible
SKY_CHUNKS: dict[int, tuple[str, ...]] = {101: ("w1",), 202: ("w2",), 303: ("w1",)}
AAA_CHUNKS: dict[int, tuple[str, ...]] = {7: ("w3",)}


def _director(db: str, name: str) -> Table:
    columns = (Column("objectId", "BIGINT"), Column("ra", "DOUBLE"), Column("decl", "DOUBLE"))
    return Table(
        db, name, TableKind.DIRECTOR, columns, id_column="objectId", lon_column="ra", lat_column="decl"
    )


class _Index:
    """Director index: every key is in chunk 202 of sky."""

    def chunks_for_keys(self, database: str, table: str, keys: object) -> frozenset[int]:
        return frozenset({202}) if (database.lower(), table.lower()) == ("sky", "object") else frozenset()


async def _never(*args: object) -> object:
    raise AssertionError("planning only: nothing is dispatched")


def _commit_chunks(store: MetadataStore, db: str, table: str, chunks: dict[int, tuple[str, ...]]) -> None:
    tx = store.begin_transaction(db, table, f"{db}.{table}")
    store.add_chunk_rows(tx.transaction_id, [ChunkRows(db, table, c, 10) for c in chunks])
    store.set_transaction_state(tx.transaction_id, TransactionState.COMMITTED)


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Pipeline]:
    store = open_store(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    store.create_database(SKY)
    store.create_database(AAA)
    store.create_table(_director("sky", "Object"))
    store.create_table(_director("aaa", "Other"))
    store.create_table(Table("aaa", "Filter", TableKind.REGULAR, (Column("filterId", "INTEGER"),)))
    for i, name in enumerate(("w1", "w2", "w3")):
        store.upsert_worker(WorkerInfo(name, "127.0.0.1", 1 + i))
    for db, chunks in ((SKY, SKY_CHUNKS), (AAA, AAA_CHUNKS)):
        store.add_replicas([Replica(db.partitioning.family, c, w) for c, ws in chunks.items() for w in ws])
    _commit_chunks(store, "sky", "Object", SKY_CHUNKS)
    _commit_chunks(store, "aaa", "Other", AAA_CHUNKS)
    yield Pipeline(ViewCache(store), _Index(), _never, MergeEngine())  # type: ignore[arg-type]
    store.close()


def _placed(p: Pipeline, sql: str) -> dict[str, tuple[int, ...]]:
    plan = p.prepare(sql, "sky").plan
    return {b.worker: b.chunk_ids for b in plan.batches}


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT COUNT(*) FROM aaa.Filter f, sky.Object o WHERE o.objectId > f.filterId",
        "SELECT COUNT(*) FROM sky.Object o JOIN aaa.Filter f ON o.objectId = f.filterId",
        "SELECT o.objectId FROM aaa.Filter f JOIN Object o ON o.objectId = f.filterId",
    ],
)
def test_regular_table_of_another_database_plans_on_the_directors_family(
    pipeline: Pipeline, sql: str
) -> None:
    assert _placed(pipeline, sql) == {"w1": (101, 303), "w2": (202,)}


def test_generic_plans_use_the_same_family(pipeline: Pipeline) -> None:
    sql = "SELECT o.objectId, f.filterId FROM aaa.Filter f JOIN sky.Object o ON o.objectId = f.filterId "
    first = pipeline.prepare(sql + "WHERE o.objectId = 5", "sky")
    again = pipeline.prepare(sql + "WHERE o.objectId = 6", "sky")
    assert again.planning == "generic"
    for prepared in (first, again):
        assert {b.worker: b.chunk_ids for b in prepared.plan.batches} == {"w2": (202,)}


def test_the_other_database_alone_plans_on_its_own_family(pipeline: Pipeline) -> None:
    assert _placed(pipeline, "SELECT COUNT(ra) FROM aaa.Other") == {"w3": (7,)}


def test_chunked_tables_of_two_families_are_refused_naming_both(pipeline: Pipeline) -> None:
    with pytest.raises(Unsupported) as refused:
        pipeline.prepare(
            "SELECT COUNT(*) FROM aaa.Other a, sky.Object o WHERE a.objectId = o.objectId", "sky"
        )
    message = str(refused.value)
    assert refused.value.sqlstate == "0A000"
    for name in ("aaa.Other", "sky.Object", AAA.partitioning.family, SKY.partitioning.family):
        assert name in message, message
    assert refused.value.position == len("SELECT COUNT(*) FROM aaa.Other a, ") + 1
