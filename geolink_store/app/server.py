"""The explorer's web application: the page, its vendored assets, the JSON API and the imagery tiles.

Routes (documented in the README's "Explorer" section):

- ``GET /``: the page; ``/static/...``: its script, style and the vendored Leaflet;
- ``GET /api/info``: the store, its extent, colour columns, imagery and heads;
- ``GET /api/cells?bbox=W,S,E,N[&column=][&limit=]``: cells in a view, GeoJSON;
- ``GET /api/search?lon=&lat=|cell=[&k=][&modality=][&bbox=]``: the most similar cells, GeoJSON;
- ``POST /api/heads``: train a head on marked cells (JSON ``{"positive": [...], "negative": [...]}``);
- ``POST /api/labels``: cells and labels of a labels GeoJSON;
- ``GET /api/sql?q=``: read-only SQL (the session of ``geolink sql``);
- ``GET /tiles/{z}/{x}/{y}.png``: the store's imagery as web-map tiles.

Bad requests get a 4xx with ``{"error": "..."}``; an unexpected failure a 500 with the same shape, never a
traceback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Body, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from geolink_store.app.assets import STATIC, page
from geolink_store.app.explorer import MAX_CELLS, Explorer
from geolink_store.constants import HEAD_MODALITIES, MODALITIES, HeadModality, Modality
from geolink_store.errors import GeolinkError, InputError
from geolink_store.heads.train import HeadKind


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """``W,S,E,N`` in degrees as four floats.

    Raises:
        InputError: not four numbers, or west >= east / south >= north, or outside lon/lat range.
    """
    try:
        west, south, east, north = (float(value) for value in text.split(","))
    except ValueError as error:
        raise InputError(f"bbox must be W,S,E,N in degrees, got {text!r}") from error
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        raise InputError(f"bbox {text!r} needs -180 <= W < E <= 180 and -90 <= S < N <= 90")
    return west, south, east, north


def create_app(location: str, *, model_id: str | None = None, epoch: str | None = None) -> FastAPI:
    """The explorer over the store at ``location`` (opened now, so a bad store fails before serving).

    Raises:
        StoreError: no store there, several models and none named, or no such epoch.
    """
    explorer = Explorer(location, model_id, epoch)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        explorer.close()

    app = FastAPI(title="geolink explorer", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.explorer = explorer
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _add_error_handlers(app)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page("index.html")

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        return explorer.info()

    @app.get("/api/cells")
    def cells(
        bbox: str, column: str | None = None, limit: Annotated[int, Query(ge=1, le=MAX_CELLS)] = MAX_CELLS
    ) -> dict[str, Any]:
        return explorer.cells_in(parse_bbox(bbox), column or None, limit)

    @app.get("/api/search")
    def search(
        lon: float | None = None,
        lat: float | None = None,
        cell: str | None = None,
        k: Annotated[int, Query(ge=1, le=1000)] = 10,
        modality: Modality = "fused",
        bbox: str | None = None,
    ) -> dict[str, Any]:
        if (cell is None) == (lon is None or lat is None):
            raise InputError("give either lon= and lat=, or cell=")
        if modality not in MODALITIES:
            raise InputError(f"modality must be one of {', '.join(MODALITIES)}")
        return explorer.similar(
            lonlat=None if cell else (lon, lat),
            cell=cell,
            k=k,
            modality=modality,
            bbox=parse_bbox(bbox) if bbox else None,
        )

    @app.post("/api/heads")
    def heads(
        positive: Annotated[list[str], Body()],
        negative: Annotated[list[str], Body()],
        modality: Annotated[HeadModality, Body()] = "fused",
        kind: Annotated[HeadKind, Body()] = "linear",
    ) -> dict[str, Any]:
        if modality not in HEAD_MODALITIES:
            raise InputError(f"modality must be one of {', '.join(HEAD_MODALITIES)}")
        return explorer.train(positive, negative, modality=modality, kind=kind)

    @app.post("/api/labels")
    def labels(geojson: Annotated[dict[str, Any], Body()]) -> dict[str, dict[str, Any]]:
        return explorer.labels_from(geojson)

    @app.get("/api/sql")
    def sql(q: str) -> dict[str, Any]:
        return explorer.sql(q)

    @app.get("/tiles/{z}/{x}/{y}.png")
    def tile(z: int, x: int, y: int) -> Response:
        return Response(explorer.imagery.tile(z, x, y), media_type="image/png")

    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Every error as ``{"error": message}``: 400 for what the user gave, 500 for a bug (uvicorn logs it)."""

    @app.exception_handler(GeolinkError)
    async def user_error(_: Request, error: GeolinkError) -> JSONResponse:
        return JSONResponse({"error": " ".join(str(error).split())}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc'][1:]) or 'body'}: {e['msg']}" for e in error.errors()
        )
        return JSONResponse({"error": problems}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code)

    @app.exception_handler(Exception)
    async def bug(_: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"error": f"internal error ({type(error).__name__})"}, status_code=500)
