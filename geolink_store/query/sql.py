"""SQL over a store with DuckDB 1.5.5: every table as a view, spatial functions, vector search and rollups.

The ``spatial`` and ``lance`` extensions are loaded offline from the files the PyPI wheels
``duckdb-extension-spatial`` / ``duckdb-extension-lance`` ship (``LOAD '<file>'``; never ``INSTALL``).

What a session holds:

- one view per store table (``cells``, ``patches``, ``models``, ...) scanning its ``.lance`` directory, with
  ``geometry`` as GEOMETRY (EPSG:4326) and the ``h3_r{k}`` parent columns as stored;
- ``<table>_search(column, vector, k := 10)``: the ``k`` rows nearest to ``vector`` through
  ``lance_vector_search(<table>.lance, column, vector, k := k, prefilter := true)``: a WHERE on the result is
  pushed into Lance and applied BEFORE the top-k (without ``prefilter`` it would run after and return fewer
  rows). A stored vector can be the query through a variable::

      SET VARIABLE q = (SELECT fused FROM cells WHERE h3 = 617733123060924415);
      SELECT h3, _distance FROM cells_search('fused', getvariable('q'), k := 10)
      WHERE h3_r7 = 608229629542449151 ORDER BY _distance;

- ``cells_rollup(res, modality := 'fused')``: per ``h3_r{res}`` parent and model, the number of cells and
  their mean vector, e.g. ``SELECT * FROM cells_rollup(7)``;
- files passed as ``files={"zones": "zones.geojson"}`` (CLI ``--file zones=zones.geojson``) as temporary
  tables read by ``ST_Read`` before the session is locked (``ST_Read`` inside a read-only query is refused).

Read-only (the default) is enforced by DuckDB, not by inspecting the SQL: the views and macros live in a
catalog database attached READ_ONLY, the views scan the Lance files (DuckDB cannot write through them), and
external file access is then switched off and the configuration locked, so ``COPY ... TO`` cannot write
either. Scratch ``TEMP`` tables stay possible; they live in memory. With ``write=True`` the store is also
attached read-write as ``store`` through the lance extension (``DELETE FROM store.main.cells WHERE ...``).
"""

from __future__ import annotations

import importlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import duckdb
import pyarrow as pa

from geolink_store.errors import GeolinkError
from geolink_store.store import Store
from geolink_store.store._filters import quote

DUCKDB_VERSION = "v1.5.5"
EXTENSIONS = {"spatial": "duckdb_extension_spatial", "lance": "duckdb_extension_lance"}
ROLLUP_MACRO = """
CREATE MACRO cells_rollup(res, modality := 'fused') AS TABLE FROM query(format(
    'SELECT parent AS h3_r{0}, model_id, any_value(n) AS n, list(x ORDER BY i) AS {1}
     FROM (SELECT parent, model_id, i, avg(x) AS x, count(*) AS n
           FROM (SELECT h3_r{0} AS parent, model_id, unnest({1}) AS x, generate_subscripts({1}, 1) AS i
                 FROM cells WHERE {1} IS NOT NULL)
           GROUP BY ALL)
     GROUP BY parent, model_id', res, modality))
"""


def extension_file(name: str) -> Path:
    """The ``.duckdb_extension`` file that the PyPI package for extension ``name`` ships."""
    wheel = EXTENSIONS.get(name, name).replace("_", "-")
    try:
        package = importlib.import_module(EXTENSIONS[name])
    except (KeyError, ImportError) as error:
        raise GeolinkError(f"DuckDB extension {name!r} needs `pip install {wheel}==1.5.5`") from error
    path = Path(package.__file__).parent / "extensions" / DUCKDB_VERSION / f"{name}.duckdb_extension"
    if not path.is_file():
        raise GeolinkError(
            f"{path} is missing; reinstall {EXTENSIONS[name]}==1.5.5 (DuckDB {DUCKDB_VERSION})"
        )
    return path


class SqlSession:
    """A DuckDB connection over one store (a context manager; see the module docstring).

    Args:
        store_path: the store directory.
        write: allow writing statements (attaches the store read-write as ``store``).
        files: table name -> vector file readable by ``ST_Read``, loaded before the session is locked.
    """

    def __init__(
        self,
        store_path: str | os.PathLike,
        *,
        write: bool = False,
        files: Mapping[str, str | os.PathLike] | None = None,
    ) -> None:
        self.store = Store.open(store_path)
        self._tmp = tempfile.TemporaryDirectory(prefix="geolink-sql-")
        catalog = quote(str(Path(self._tmp.name) / "catalog.duckdb"))
        self.connection = duckdb.connect(config={"allow_persistent_secrets": False})
        for name in EXTENSIONS:
            self.connection.execute(f"LOAD {quote(str(extension_file(name)))}")
        self.connection.execute(f"ATTACH {catalog} AS catalog; USE catalog")
        self._create_views()
        mode = "" if write else " (READ_ONLY)"
        self.connection.execute(f"USE memory; DETACH catalog; ATTACH {catalog} AS catalog{mode}; USE catalog")
        for name, path in (files or {}).items():
            self._read_file(name, Path(path))
        if write:
            self.connection.execute(f"ATTACH {quote(self.store.uri)} AS store (TYPE LANCE)")
        else:
            self.connection.execute("SET enable_external_access = false")
            self.connection.execute("SET lock_configuration = true")

    def __enter__(self) -> SqlSession:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection and drop the temporary catalog."""
        self.connection.close()
        self._tmp.cleanup()

    def query(self, sql: str) -> pa.Table:
        """Run one or more statements; the last one's rows as Arrow (GEOMETRY as WKT text).

        Raises:
            GeolinkError: DuckDB rejected the SQL (its message, on one line).
        """
        try:
            statements = self.connection.extract_statements(sql)
            if not statements:
                raise GeolinkError("no SQL statement given")
            for statement in statements[:-1]:
                self.connection.execute(statement)
            relation = self.connection.sql(statements[-1].query)
            if relation is None:
                return pa.table({})
            geometry = [
                name
                for name, kind in zip(relation.columns, relation.types, strict=True)
                if str(kind) == "GEOMETRY"
            ]
            if geometry:
                projection = ", ".join(
                    f'ST_AsText("{name}") AS "{name}"' if name in geometry else f'"{name}"'
                    for name in relation.columns
                )
                relation = relation.project(projection)
            return relation.fetch_arrow_table()
        except duckdb.Error as error:
            raise GeolinkError(" ".join(str(error).split())) from error

    def _create_views(self) -> None:
        connection = self.connection
        for name in self.store.table_names():
            source = quote(self.store.table_uri(name))
            columns = connection.sql(f"DESCRIBE SELECT * FROM {source}").fetchall()
            replace = (
                " REPLACE (ST_GeomFromWKB(geometry) AS geometry)"
                if any(c[0] == "geometry" for c in columns)
                else ""
            )
            connection.execute(f'CREATE VIEW "{name}" AS SELECT *{replace} FROM {source}')
            if any(c[1].startswith("FLOAT[") for c in columns):
                connection.execute(
                    f'CREATE MACRO "{name}_search"(column_name, vector, k := 10) AS TABLE '
                    f"SELECT *{replace} FROM lance_vector_search({source}, column_name, vector::FLOAT[], "
                    "k := k, prefilter := true)"
                )
        if "cells" in self.store.table_names():
            connection.execute(ROLLUP_MACRO)

    def _read_file(self, name: str, path: Path) -> None:
        if not path.is_file():
            raise GeolinkError(f"file {path} for table {name!r} does not exist")
        try:
            self.connection.execute(
                f'CREATE TEMP TABLE "{name}" AS SELECT * FROM ST_Read({quote(str(path.resolve()))})'
            )
        except duckdb.Error as error:
            raise GeolinkError(
                f"cannot read {path} as table {name!r}: {' '.join(str(error).split())}"
            ) from error


def run_sql(
    store_path: str | os.PathLike,
    sql: str,
    *,
    write: bool = False,
    files: Mapping[str, str | os.PathLike] | None = None,
) -> pa.Table:
    """Run SQL against a store (read-only unless ``write``) and return the last statement's rows."""
    with SqlSession(store_path, write=write, files=files) as session:
        return session.query(sql)


__all__ = ["SqlSession", "extension_file", "run_sql"]
