"""The SQL twin in docs/features.md, run on PostgreSQL, gives the rows `features_as_of` computes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest

from osml.schema import feature_columns
from training.data.orders import load_orders
from training.data.synthetic import generate, load_into_postgres
from training.features import features_as_of
from training.history import WAITING_MARKERS
from training.snapshots import at_instant

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "features.md"


def _twin() -> str:
    blocks = re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert len(blocks) == 1, "docs/features.md holds one SQL block"
    return str(blocks[0])


@pytest.mark.parametrize("instant", ["2025-01-20T10:30:00Z", "2025-02-08T03:00:00Z", "2025-02-24T14:00:00Z"])
def test_sql_twin_matches_features_as_of(pg_database: str, instant: str) -> None:
    load_into_postgres(generate(orders=1500, seed=8), pg_database)
    data = load_orders(pg_database)  # the stored rows, in the order the table returns them
    now = pd.Timestamp(instant)
    instants = at_instant(data.orders, now)
    expected = features_as_of(data.orders, data.history, instants, schema_version="4")
    expected.insert(0, "orderId", data.orders["id"].to_numpy()[instants.order])
    expected = expected.sort_values("orderId").reset_index(drop=True)

    with psycopg.connect(pg_database) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        cursor = conn.execute(_twin(), {"now": now.to_pydatetime(), "waiting": list(WAITING_MARKERS)})
        names = [c.name for c in cursor.description or []]
        got = pd.DataFrame(cursor.fetchall(), columns=names)

    assert names == ["orderId", "asOf", *feature_columns("4")]
    assert len(got) == len(expected) > 15
    assert (got["asOf"] == now).all()
    assert got["orderId"].tolist() == expected["orderId"].tolist()
    for column in feature_columns("4"):
        want, have = expected[column], got[column]
        if want.dtype.kind in "fiu":
            np.testing.assert_allclose(
                pd.to_numeric(have, errors="coerce").astype(float),
                want.astype(float),
                rtol=0,
                atol=1e-6,
                err_msg=column,
            )
        else:
            assert have.where(have.notna(), None).tolist() == want.astype(object).where(want.notna(), None).tolist(), (
                column
            )
