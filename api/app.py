"""The FastAPI application: built by a factory, with a lifespan that loads the Matcher once."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from api.body_limit import BodyLimitMiddleware
from api.errors import install_error_handlers
from api.feedback import FeedbackStore
from api.metrics import Metrics, MetricsMiddleware
from api.routes import feedback, health, match, records
from api.security import describe_auth
from api.service import MatchingService, open_index
from api.settings import FEEDBACK_FILE, ApiSettings
from matcher.matcher import Matcher
from matcher.runtime import make_encoder
from models.encoder import Encoder

log = logging.getLogger("techmatch.api")

DESCRIPTION = """\
科技成果 ↔ 企业技术需求 matching.

* `POST /v1/match`: rank research results (科技成果) for an enterprise need (企业技术需求),
  given inline or by id; `POST /v1/match/batch` for up to 100 needs.
* `GET /v1/results/{id}/needs`: the reverse, which stored needs a result fits.
* `PUT`/`DELETE /v1/results/{id}`, `POST /v1/results:bulk` (and the same for needs): the next
  match sees the change; everything survives a restart.
* `POST /v1/feedback`, `GET /v1/feedback/stats`, `GET /v1/feedback/qrels`.

Write routes need the `X-API-Key` header. Errors are `{"error": ..., "detail": ...}`.
"""


def _feedback_store(settings: ApiSettings, matcher: Matcher) -> FeedbackStore:
    if settings.feedback_db is not None:
        return FeedbackStore(settings.feedback_db)
    # Beside the record store of the index the matcher was opened from.
    base = matcher.index_dir if matcher.index_dir is not None else settings.index_dir
    return FeedbackStore(base / FEEDBACK_FILE)


def create_app(
    settings: ApiSettings | None = None,
    matcher: Matcher | None = None,
    *,
    encoder: Encoder | None = None,
) -> FastAPI:
    """Build the app.

    Args:
        settings: service settings (default: read from the environment).
        matcher: an already open Matcher (tests, embedding); if ``None`` the lifespan opens
            ``settings.index_dir`` with ``encoder`` or the configured one
            (``make_encoder(settings)``), starting an empty index if the directory is empty.
        encoder: the encoder to open the index with, when ``matcher`` is not given.

    On shutdown the index snapshot is rewritten if records changed since the last one.
    """
    settings = settings or ApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        live = matcher
        if live is None:
            enc = encoder if encoder is not None else make_encoder(settings)
            live = await run_in_threadpool(open_index, settings, enc)
        service = MatchingService(live, settings, _feedback_store(settings, live))
        warm_s = await run_in_threadpool(service.warm_up)
        app.state.service = service
        log.info(describe_auth(settings))
        log.info("index %s: %d results, %d needs, encoder %s; warm-up match %.1fs",
                 live.index_dir or "(in memory)", len(live.results), len(live.needs),
                 live.encoder.fingerprint, warm_s)
        try:
            yield
        finally:
            app.state.service = None
            await run_in_threadpool(service.checkpoint)
            service.feedback.close()

    app = FastAPI(
        title="techmatch",
        version="1",
        summary="Technology-transfer supply–demand matching (科技成果 ↔ 企业技术需求)",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.service = None
    install_error_handlers(app)
    for module in (health, match, records, feedback):
        app.include_router(module.router)
    # Added last = outermost: the body cap applies before anything reads the body, and the
    # metrics see every response, 413s included.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app
