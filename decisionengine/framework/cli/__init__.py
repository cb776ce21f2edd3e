"""The command-line tools: thin clients of the server or of the DataSpace.

* :mod:`.de_server` -- ``de-server``: configuration, then the engine and its web endpoint;
* :mod:`.de_client` -- ``de-client``: every server method over XML-RPC, ``--follow`` over SSE;
* :mod:`.de_query_tool` -- ``de-query-tool``: products and histories straight from the DataSpace;
* :mod:`.de_reaper` -- ``de-reaper``: one Reaper pass;
* :mod:`.module_cli` -- what a module file offers when run as a script;
* :mod:`.common` and :mod:`.sse_client` -- what they share.
"""
