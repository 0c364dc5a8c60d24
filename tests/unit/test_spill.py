"""A large run sets its LTV rows aside in Parquet; a disk that refuses is one clear warehouse error."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from flows.run import _set_aside
from marginwatch.errors import WarehouseError


def test_rows_set_aside_read_back_the_same(tmp_path: Path) -> None:
    rows = pl.DataFrame({"loan_id": ["L1", "L2"], "ltv": [0.3, 0.7]})
    assert pl.read_parquet(_set_aside(rows, tmp_path / "ltv-00000.parquet")).equals(rows)


def test_a_refusing_disk_is_one_line_naming_the_folder(tmp_path: Path) -> None:
    missing = tmp_path / "gone" / "ltv-00000.parquet"
    with pytest.raises(WarehouseError) as raised:
        _set_aside(pl.DataFrame({"ltv": [0.3]}), missing)
    message = str(raised.value)
    assert message.startswith(f"{missing.parent}: cannot set rows aside before publishing") and "\n" not in message
