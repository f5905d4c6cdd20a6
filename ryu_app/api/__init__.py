"""The REST API of one gateway: routes, OpenAPI, the service layer, views, the HTTP server,
the state file and ``/metrics``.  It reaches the core only through the shell's calls."""
