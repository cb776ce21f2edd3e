"""The HTTP endpoint: one control service behind XML-RPC, the JSON API, SSE and the dashboard.

* :mod:`.service` -- every operation, validated and authorized in one place;
* :mod:`.presentation` -- data as text tables, CSV or JSON (also used by the CLIs);
* :mod:`.product_query` -- client queries over DataFrame products (allow-listed);
* :mod:`.xmlrpc` -- the reference server's XML-RPC methods;
* :mod:`.api` and :mod:`.openapi` -- the JSON API under ``/api/v1`` and its document;
* :mod:`.sse` -- Server-Sent Events;
* :mod:`.server` -- CherryPy, the routes, and the dashboard's files (``dashboard/``).
"""
