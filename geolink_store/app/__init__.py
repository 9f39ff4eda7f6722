"""The explorer: a local web app over a store (``geolink serve``), and the assets its pages and maps share.

- :mod:`geolink_store.app.assets`: vendored Leaflet (npm ``leaflet@1.9.4``, BSD-2-Clause), served or inlined;
- :mod:`geolink_store.app.imagery`: the store's imagery read back by window, as web-map tiles or backdrops;
- :mod:`geolink_store.app.explorer`: one store's session (cells, search, heads, SQL) behind the API;
- :mod:`geolink_store.app.server`: the FastAPI application (``create_app``) and its routes.

Nothing is imported here, so :mod:`geolink_store.query.maps` can use the assets without the server.
"""
