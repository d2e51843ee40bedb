"""Liveness, readiness and Prometheus metrics (open: monitoring needs no key)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from api.deps import MatcherDep, MetricsDep, ServiceDep
from api.metrics import CONTENT_TYPE
from api.schemas import Ready

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=Ready, summary="The index is loaded; counts")
def readyz(matcher: MatcherDep) -> Ready:
    return Ready(status="ready", **matcher.stats())


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
def metrics(service: ServiceDep, registry: MetricsDep) -> PlainTextResponse:
    gauges = {
        "techmatch_index_results": ("Research results in the index.", float(len(service.matcher.results))),
        "techmatch_index_needs": ("Needs in the index.", float(len(service.matcher.needs))),
        "techmatch_feedback_total": ("Feedback verdicts stored.", float(service.feedback.count())),
        "techmatch_changes_since_checkpoint": (
            "Record writes not yet in the index snapshot.", float(service.changes_since_checkpoint)),
    }
    return PlainTextResponse(registry.render(gauges), media_type=CONTENT_TYPE)
