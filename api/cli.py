"""``techmatch serve``: run the HTTP service with uvicorn."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from api.settings import ApiSettings


def serve(
    index_dir: Annotated[Path, typer.Option(help="index directory (an empty one starts a new index)")],
    host: Annotated[str, typer.Option(help="interface to bind; 0.0.0.0 exposes the service")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
) -> None:
    """Serve matching, record management and feedback over HTTP (OpenAPI docs at /docs)."""
    import uvicorn

    from api.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = ApiSettings(index_dir=index_dir)
    # Access logs carry method, path and status only: never headers, so never an API key.
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
