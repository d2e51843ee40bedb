"""Feedback: enterprises' verdicts, their statistics, and an export as qrels for `techmatch eval`."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse

from api.deps import FeedbackDep, ServiceDep
from api.schemas import FeedbackCreate, FeedbackPublic, FeedbackStats
from api.security import require_read_key, require_write_key

router = APIRouter(prefix="/v1/feedback", tags=["feedback"])


@router.post("", response_model=FeedbackPublic, status_code=201, dependencies=[Depends(require_write_key)],
             summary="Record a verdict: strong 强相关 | related 较强相关 | weak 弱相关 | unrelated 不相关")
def add_feedback(body: FeedbackCreate, service: ServiceDep) -> FeedbackPublic:
    return service.add_feedback(body)


@router.get("/stats", response_model=FeedbackStats, dependencies=[Depends(require_read_key)],
            summary="Strongly-related rate overall, by tier and by ISO week")
def feedback_stats(feedback: FeedbackDep) -> FeedbackStats:
    return feedback.stats()


@router.get("/qrels", response_class=PlainTextResponse, dependencies=[Depends(require_read_key)],
            summary="Latest verdict per pair as BEIR qrels TSV (strong 3, related 2, weak 1, unrelated 0)")
def feedback_qrels(feedback: FeedbackDep) -> PlainTextResponse:
    return PlainTextResponse(feedback.qrels_tsv(), media_type="text/tab-separated-values; charset=utf-8")
