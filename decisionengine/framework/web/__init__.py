"""The HTTP endpoint: one control service behind XML-RPC, the JSON API, SSE and the dashboard.

* :mod:`.service` -- every operation, validated and authorized in one place;
* :mod:`.presentation` -- data as text tables, CSV or JSON (also used by the CLIs);
* :mod:`.product_query` -- client queries over DataFrame products: rows and columns;
* :mod:`.query_allowlist` and :mod:`.query_language` -- what a client query may say (an
  allow-list), checked, compiled and evaluated;
* :mod:`.query_runner` and :mod:`.query_worker` -- queries evaluated in worker processes
  under a time and memory limit, so a runaway is stopped without freezing the server;
* :mod:`.xmlrpc` -- the reference server's XML-RPC methods;
* :mod:`.api` and :mod:`.openapi` -- the JSON API under ``/api/v1`` and its document;
* :mod:`.sse` -- Server-Sent Events;
* :mod:`.server` -- CherryPy, the routes, and the dashboard's files (``dashboard/``).
"""
