"""JSON API routers: parse, call a service, serialise."""
