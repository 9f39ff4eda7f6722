"""SQL over a store with DuckDB 1.5.5: the tables as views, spatial and H3 functions, vector search, rollups.

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
- ``cells_zonal(zones, modality := 'fused', geom := 'geom')``: area-weighted zonal statistics of the cells
  per row of table ``zones`` (:mod:`geolink_store.query.zonal`);
- the H3 functions of :data:`H3_FUNCTIONS` (``h3_to_string``, ``h3_cell_to_parent``, ...), vectorised over
  Arrow batches through :mod:`geolink_store.grid`;
- files passed as ``files={"zones": "zones.geojson"}`` (CLI ``--file zones=zones.geojson``) as temporary
  tables read by ``ST_Read`` before the session is locked; their names must be plain SQL names.

Start-up: given the SQL it will run (``prepare_for``), a session loads an extension, creates a view or
registers the H3 functions only when the text names something that needs it, so ``SELECT 1`` loads neither
extension and a local store is listed without LanceDB.

Read-only (the default) is enforced by construction. The views and macros live in a catalog database
attached READ_ONLY; external file access is switched off and the configuration locked before any user text
runs, so DuckDB refuses ``COPY ... TO``, ``read_csv('/any/path')``, ``INSTALL``/``LOAD`` and ``ATTACH`` of a
file. The lance extension reads and writes Lance datasets on its own, past that lock, so read-only SQL may not
name it: text that mentions ``lance`` (its functions, ``TYPE LANCE``, a ``*.lance`` path) or a function that
runs SQL from a string (``query``, ``query_table``, ``json_execute_serialized_sql``) is refused, as are
``ATTACH``, ``DETACH``, ``COPY``, ``EXPORT`` and ``LOAD`` statements. Scratch ``TEMP`` tables stay possible;
they live in memory. With ``write=True`` the store is also attached read-write as ``store`` through the lance
extension (``DELETE FROM store.main.cells WHERE ...``); file access stays locked.
"""

from __future__ import annotations

import importlib.util
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import duckdb

from geolink_store.constants import CELLS, EPOCH_COLUMN
from geolink_store.errors import GeolinkError, InputError, StoreError

if TYPE_CHECKING:
    import pyarrow as pa

DUCKDB_VERSION = "v1.5.5"
EXTENSIONS = {"spatial": "duckdb_extension_spatial", "lance": "duckdb_extension_lance"}
ROLLUP_MACRO = f"""
CREATE MACRO cells_rollup(res, modality := 'fused') AS TABLE FROM query(CASE
    WHEN modality NOT IN ('image', 'osm', 'fused')
        THEN 'SELECT error(''cells_rollup: modality must be image, osm or fused'')'
    ELSE format(
    'SELECT parent AS h3_r{{0}}, model_id, epoch, any_value(n) AS n, list(x ORDER BY i) AS {{1}}
     FROM (SELECT parent, model_id, epoch, i, avg(x) AS x, count(*) AS n
           FROM (SELECT h3_r{{0}} AS parent, model_id, epoch, unnest({{1}}) AS x,
                        generate_subscripts({{1}}, 1) AS i
                 FROM {CELLS} WHERE {{1}} IS NOT NULL)
           GROUP BY ALL)
     GROUP BY parent, model_id, epoch', res::INTEGER, modality) END)
"""
CHANGE_MACRO = f"""
CREATE MACRO cells_change(epoch_from, epoch_to) AS TABLE
SELECT a.h3, a.model_id, a.epoch AS epoch_from, b.epoch AS epoch_to,
       array_cosine_distance(a.image, b.image) AS image_distance,
       array_cosine_distance(a.osm, b.osm) AS osm_distance,
       array_cosine_distance(a.fused, b.fused) AS fused_distance,
       a.acquired AS acquired_from, b.acquired AS acquired_to, a.geometry
FROM {CELLS} a JOIN {CELLS} b ON a.h3 = b.h3 AND a.model_id = b.model_id
WHERE a.epoch = epoch_from AND b.epoch = epoch_to
"""
"""Per cell of both epochs, the cosine distance between its vectors of the two (``geolink change``'s raw
``distance``)."""
SESSION_CONFIG = {
    "allow_persistent_secrets": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "python_enable_replacements": False,
}
"""Connection settings: no secrets on disk, no extension fetched or loaded behind our back, and no Python
variable readable as a table."""

H3_FUNCTIONS = (
    "h3_to_string",
    "h3_from_string",
    "h3_is_valid_cell",
    "h3_get_resolution",
    "h3_cell_to_parent",
    "h3_cell_to_children",
    "h3_grid_disk",
    "h3_latlng_to_cell",
    "h3_cell_to_boundary_wkt",
    "h3_cell_to_boundary_wkb",
    "h3_cell_to_boundary_geometry",
)
"""The H3 functions of a session (:mod:`geolink_store.query.h3sql` defines them)."""

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_WORD_AT = re.compile(r'"((?:[^"]|"")*)"|([A-Za-z_][A-Za-z0-9_$]*)')
_LANCE = re.compile(r"(?<![a-z0-9])_*lance(?![a-z0-9])", re.IGNORECASE)
_SQL_FROM_TEXT = frozenset({"query", "query_table", "json_execute_serialized_sql"})
_REFUSED_STATEMENTS = {
    duckdb.StatementType.ATTACH: "ATTACH",
    duckdb.StatementType.DETACH: "DETACH",
    duckdb.StatementType.COPY: "COPY",
    duckdb.StatementType.COPY_DATABASE: "COPY",
    duckdb.StatementType.EXPORT: "EXPORT",
    duckdb.StatementType.LOAD: "LOAD/INSTALL",
}
_CATALOG_WORDS = frozenset(
    {"show", "describe", "summarize", "information_schema", "duckdb_tables", "duckdb_views", "duckdb_columns"}
)
"""Words after which a prepared session creates every view (the user is looking at the catalog)."""


def extension_file(name: str) -> Path:
    """The ``.duckdb_extension`` file that the PyPI package for extension ``name`` ships."""
    wheel = EXTENSIONS.get(name, name).replace("_", "-")
    spec = importlib.util.find_spec(EXTENSIONS[name]) if name in EXTENSIONS else None
    if spec is None or not spec.submodule_search_locations:
        raise GeolinkError(f"DuckDB extension {name!r} needs `pip install {wheel}==1.5.5`")
    path = (
        Path(spec.submodule_search_locations[0]) / "extensions" / DUCKDB_VERSION / f"{name}.duckdb_extension"
    )
    if not path.is_file():
        raise GeolinkError(
            f"{path} is missing; reinstall {EXTENSIONS[name]}==1.5.5 (DuckDB {DUCKDB_VERSION})"
        )
    return path


def sql_literal(value: object) -> str:
    """``value`` as a quoted SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def sql_words(sql: str) -> set[str]:
    """The identifiers and keywords of ``sql``, lower case and unquoted (comments and strings hold none)."""
    words = set()
    for position, kind in duckdb.tokenize(sql):
        if kind in (duckdb.token_type.identifier, duckdb.token_type.keyword):
            found = _WORD_AT.match(sql, position)
            if found:
                words.add((found[2] if found[1] is None else found[1].replace('""', '"')).lower())
    return words


def check_read_only(sql: str, statements: list[duckdb.Statement]) -> None:
    """Refuse what read-only SQL may not do although DuckDB's lock would let it (see the module docstring).

    Raises:
        GeolinkError: a refused statement, a mention of the lance extension, or SQL run from a string.
    """
    for statement in statements:
        if statement.type in _REFUSED_STATEMENTS:
            raise GeolinkError(
                f"read-only SQL cannot run {_REFUSED_STATEMENTS[statement.type]} statements "
                "(the store's tables and --file layers are already there)"
            )
    found = _LANCE.search(sql)
    if found:
        raise GeolinkError(
            f"read-only SQL cannot name the lance extension or a Lance dataset ({found[0]!r} at character "
            f"{found.start() + 1}): use the store's views and cells_search(); pass write= to change the store"
        )
    runs_text = sorted(sql_words(sql) & _SQL_FROM_TEXT)
    if runs_text:
        raise GeolinkError(f"read-only SQL cannot run SQL built from strings ({runs_text[0]}())")


@dataclass(frozen=True)
class _Plan:
    """What a session sets up: the views, and whether it loads each extension and the H3 functions."""

    tables: tuple[str, ...]
    lance: bool
    spatial: bool
    h3: bool
    zonal: bool

    @classmethod
    def of(cls, sql: str | None, tables: list[str], *, files: bool, write: bool) -> _Plan:
        if sql is None:
            return cls(tuple(tables), lance=True, spatial=True, h3=True, zonal=CELLS in tables)
        words = sql_words(sql)
        wanted = tuple(
            name
            for name in tables
            if name in words
            or f"{name}_search" in words
            or (name == CELLS and words & {"cells_rollup", "cells_zonal", "cells_change"})
            or words & _CATALOG_WORDS
        )
        spatial = files or any(word.startswith("st_") or word == "geometry" for word in words)
        return cls(
            wanted,
            lance=bool(wanted) or write,
            spatial=spatial or "h3_cell_to_boundary_geometry" in words,
            h3=bool(words & set(H3_FUNCTIONS)),
            zonal="cells_zonal" in words,
        )


class SqlSession:
    """A DuckDB connection over one store (a context manager; see the module docstring).

    Args:
        store_path: the store directory or URI.
        write: allow writing statements (attaches the store read-write as ``store``).
        files: table name -> vector file readable by ``ST_Read``, loaded before the session is locked.
        prepare_for: the SQL the session will run; when given, only what it names is set up (fast start-up),
            otherwise every view, extension and function.

    Raises:
        StoreError: no store at ``store_path``.
        InputError: a ``files`` name that is not a plain SQL name, or clashes with a store table.
        GeolinkError: a file that cannot be read.
    """

    def __init__(
        self,
        store_path: str | os.PathLike,
        *,
        write: bool = False,
        files: Mapping[str, str | os.PathLike] | None = None,
        prepare_for: str | None = None,
        epoch: str | None = None,
    ) -> None:
        self.uri, tables = _store_tables(store_path)
        self.location = str(store_path)
        self.write = write
        if epoch is not None:  # the store modules (and pyarrow) load only when needed: SELECT 1 needs none
            from geolink_store.store.epochs import checked_label

            epoch = checked_label(epoch)
        self.epoch = epoch
        self.tables = {name: f"{self.uri}/{name}.lance" for name in tables}
        layers = {_layer_name(name, tables): Path(path) for name, path in (files or {}).items()}
        plan = _Plan.of(prepare_for, tables, files=bool(layers), write=write)
        self._read = plan.tables
        self._tmp = tempfile.TemporaryDirectory(prefix="geolink-sql-")
        self.connection = duckdb.connect(config=SESSION_CONFIG)
        try:
            with self._errors():
                self._set_up(plan, layers)
        except BaseException:
            self.close()
            raise

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

    def relation(self, sql: str) -> duckdb.DuckDBPyRelation | None:
        """Run one or more statements; the last one's rows as a lazy relation (GEOMETRY as WKT text).

        None for a statement without rows. DuckDB runs a relation when it is fetched: use :meth:`rows` or
        :meth:`query`, which report errors as :meth:`relation` does.

        Raises:
            GeolinkError: the SQL is refused, or DuckDB rejected it (its message, on one line).
        """
        with self._errors():
            statements = self.connection.extract_statements(sql)
            if not statements:
                raise GeolinkError("no SQL statement given")
            if not self.write:
                check_read_only(sql, statements)
            for statement in statements[:-1]:
                self.connection.execute(statement)
            relation = self.connection.sql(statements[-1].query)
            if relation is None:
                return None
            geometry = {
                name
                for name, kind in zip(relation.columns, relation.types, strict=True)
                if str(kind) == "GEOMETRY"
            }
            if geometry:
                relation = relation.project(
                    ", ".join(
                        f"ST_AsText({_identifier(name)}) AS {_identifier(name)}"
                        if name in geometry
                        else _identifier(name)
                        for name in relation.columns
                    )
                )
            return relation

    def rows(self, sql: str) -> tuple[list[str], list[tuple]]:
        """The last statement's column names and rows as Python values (no pyarrow: the CLI's fast path)."""
        relation = self.relation(sql)
        if relation is None:
            return [], []
        with self._errors():
            return list(relation.columns), relation.fetchall()

    def query(self, sql: str) -> pa.Table:
        """The last statement's rows as Arrow (an empty table for a statement without rows).

        Raises:
            GeolinkError: the SQL is refused, or DuckDB rejected it (its message, on one line).
        """
        import pyarrow as pa

        relation = self.relation(sql)
        if relation is None:
            return pa.table({})
        with self._errors():
            return relation.to_arrow_table()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn a DuckDB error raised inside the block into a GeolinkError with its message on one line.

        Lance's error for a damaged file of a store table the session reads becomes the
        :class:`~geolink_store.store.damage.DamagedTableError` that every command gives.
        """
        try:
            yield
        except duckdb.Error as error:
            message = " ".join(str(error).split())
            damaged = _damaged(message, self._read, self.location) if "Lance" in message else None
            raise damaged or GeolinkError(message) from error

    def _set_up(self, plan: _Plan, layers: Mapping[str, Path]) -> None:
        connection = self.connection
        if plan.lance:
            self._load("lance")
        columns = {
            name: connection.sql(f"DESCRIBE SELECT * FROM {sql_literal(self.tables[name])}").fetchall()
            for name in plan.tables
        }
        geometry = {name for name, described in columns.items() if any(c[0] == "geometry" for c in described)}
        spatial = plan.spatial or bool(geometry)
        if spatial:
            self._load("spatial")
        catalog = sql_literal(Path(self._tmp.name) / "catalog.duckdb")
        connection.execute(f"ATTACH {catalog} AS catalog; USE catalog")
        for name, described in columns.items():
            self._create_views(name, described, geometry=name in geometry)
        if plan.h3:
            from geolink_store.query.h3sql import register_h3_functions

            register_h3_functions(connection, spatial=spatial)
        if plan.zonal and CELLS in geometry:
            from geolink_store.query.zonal import ZONAL_MACRO

            connection.execute(ZONAL_MACRO)
        mode = "" if self.write else " (READ_ONLY)"
        connection.execute(f"USE memory; DETACH catalog; ATTACH {catalog} AS catalog{mode}; USE catalog")
        for name, path in layers.items():
            self._read_file(name, path)
        if self.write:
            connection.execute(f"ATTACH {sql_literal(self.uri)} AS store (TYPE LANCE)")
        connection.execute("SET enable_external_access = false")
        connection.execute("SET lock_configuration = true")

    def _load(self, name: str) -> None:
        self.connection.execute(f"LOAD {sql_literal(extension_file(name))}")

    def _create_views(self, name: str, columns: list[tuple], *, geometry: bool) -> None:
        source = sql_literal(self.tables[name])
        replace = " REPLACE (ST_GeomFromWKB(geometry) AS geometry)" if geometry else ""
        from geolink_store.store.schema import LATER_COLUMNS

        names = {c[0] for c in columns}
        later = LATER_COLUMNS.get(name, {})
        added = "".join(f", {value} AS {column}" for column, value in later.items() if column not in names)
        added += "".join(_dequantized(name, columns))
        rows = f"SELECT *{replace}{added} FROM {source}"
        if self.epoch is not None and EPOCH_COLUMN in later:
            rows = f"SELECT * FROM ({rows}) WHERE {EPOCH_COLUMN} = {sql_literal(self.epoch)}"
        self.connection.execute(f"CREATE VIEW {_identifier(name)} AS {rows}")
        if any(c[1].startswith("FLOAT[") for c in columns):
            self.connection.execute(
                f"CREATE MACRO {_identifier(name + '_search')}(column_name, vector, k := 10) AS TABLE "
                f"SELECT *{replace} FROM lance_vector_search({source}, column_name, vector::FLOAT[], "
                "k := k, prefilter := true)"
            )
        if name == CELLS:
            self.connection.execute(ROLLUP_MACRO)
            self.connection.execute(CHANGE_MACRO)

    def _read_file(self, name: str, path: Path) -> None:
        if not path.is_file():
            raise InputError(f"file {path} for table {name!r} does not exist")
        try:
            source = f"ST_Read({sql_literal(path.resolve())})"
            self.connection.execute(f"CREATE TEMP TABLE {_identifier(name)} AS SELECT * FROM {source}")
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
    epoch: str | None = None,
) -> pa.Table:
    """Run SQL against a store and return the last statement's rows.

    Read-only unless ``write``; with ``epoch``, the views show only that epoch's rows.
    """
    with SqlSession(store_path, write=write, files=files, prepare_for=sql, epoch=epoch) as session:
        return session.query(sql)


def _damaged(message: str, tables: tuple[str, ...], location: str) -> StoreError | None:
    """The DamagedTableError for Lance's ``message`` when it tells of damage to one of ``tables``, else None.

    A message naming no table (a truncated data file) is taken to be about every table the SQL reads.
    """
    from geolink_store.store.damage import DamagedTableError, tells_of_damage

    named = [name for name in tables if f"{name}.lance" in message] or tables
    damaged = [name for name in named if tells_of_damage(message, name)]
    return DamagedTableError(" or ".join(damaged), location) if damaged else None


def _dequantized(table: str, columns: list[tuple]) -> list[str]:
    """``, <expression> AS <name>`` for each vector that ``table`` stores as int8 codes only.

    The expressions are the float32 vectors, dequantised (:mod:`geolink_store.store.quantize`), so that SQL
    and the macros read an int8 table as a float32 one.
    """
    from geolink_store.store.quantize import codes_column, scale_column
    from geolink_store.store.schema import VECTOR_COLUMNS

    types = {column[0]: column[1] for column in columns}
    return [
        f", CAST(list_transform({codes_column(name)}, x -> x * {scale_column(name)}) AS "
        f"FLOAT{types[codes_column(name)].removeprefix('TINYINT')}) AS {name}"
        for name in VECTOR_COLUMNS.get(table, ())
        if name not in types and codes_column(name) in types
    ]


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _layer_name(name: str, tables: list[str]) -> str:
    reserved = {
        *tables,
        *(f"{table}_search" for table in tables),
        "store",
        "catalog",
        "memory",
        "temp",
        "system",
    }
    if not _NAME.fullmatch(name) or name.lower() in reserved:
        raise InputError(
            f"table name {name!r} of files= must be a plain SQL name (letters, digits and _, not starting "
            f"with a digit, at most 63) other than {', '.join(sorted(reserved))}"
        )
    return name


def _store_tables(location: str | os.PathLike) -> tuple[str, list[str]]:
    """The store's URI and table names; a local store is listed without importing LanceDB (start-up time)."""
    text = str(location)
    if "://" in text and not text.startswith("file://"):
        from geolink_store.store import Store

        store = Store.open(text)
        return store.uri, store.table_names()
    path = Path(text.removeprefix("file://"))
    if not text or not path.is_dir():
        raise StoreError(
            f"store {location} does not exist: "
            "pass location=... of an existing store, or ingest into it first"
        )
    return str(path.resolve()), sorted(p.name[: -len(".lance")] for p in path.glob("*.lance") if p.is_dir())


__all__ = [
    "H3_FUNCTIONS",
    "SqlSession",
    "check_read_only",
    "extension_file",
    "run_sql",
    "sql_literal",
    "sql_words",
]
