"""Server-rendered pages (Jinja2, no JavaScript build)."""
