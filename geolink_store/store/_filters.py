"""SQL literals and filters for Lance (and DuckDB) queries, quoted in one place."""

from __future__ import annotations

from geolink_store.constants import MODEL_COLUMN


def quote(value: object) -> str:
    """``value`` as a quoted SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def model_filter(model_id: str) -> str:
    """The filter selecting the rows of one model."""
    return f"{MODEL_COLUMN} = {quote(model_id)}"
