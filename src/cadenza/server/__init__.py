"""The studio: an HTTP app (FastAPI) and the web page it serves. See docs/studio-api.md."""
