"""Matching in both directions: needs → results and results → needs."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from api.deps import ServiceDep
from api.schemas import (
    MAX_TOP_K,
    ConfigName,
    MatchBatchRequest,
    MatchBatchResponse,
    MatchRequest,
    MatchResponse,
    ResultNeedsResponse,
)
from api.security import require_read_key

router = APIRouter(prefix="/v1", tags=["match"], dependencies=[Depends(require_read_key)])
TopK = Annotated[int, Query(ge=1, le=MAX_TOP_K, description="how many matches")]
RecordId = Annotated[str, Path(min_length=1, max_length=200)]


@router.post("/match", response_model=MatchResponse, summary="Rank research results for one need")
def match(body: MatchRequest, service: ServiceDep) -> MatchResponse:
    need = body.need.to_record(body.need.id) if body.need else service.need(str(body.need_id))
    return service.match([need], body.top_k, body.filters, body.config, body.include_records)[0]


@router.post("/match/batch", response_model=MatchBatchResponse, summary="Rank results for ≤ 100 needs")
def match_batch(body: MatchBatchRequest, service: ServiceDep) -> MatchBatchResponse:
    started = time.perf_counter()
    needs = [n.to_record(n.id) for n in body.needs]
    needs += [service.need(i, field=f"need_ids[{n}]") for n, i in enumerate(body.need_ids)]
    responses = service.match(needs, body.top_k, body.filters, body.config, body.include_records)
    return MatchBatchResponse(responses=responses, took_ms=round((time.perf_counter() - started) * 1000, 3))


@router.get("/needs/{need_id}/matches", response_model=MatchResponse,
            summary="Rank research results for a stored need")
def need_matches(need_id: RecordId, service: ServiceDep, top_k: TopK = 10,
                 config: ConfigName = "default") -> MatchResponse:  # type: ignore[valid-type]
    return service.match([service.need(need_id, field="need_id")], top_k, None, config)[0]


@router.get("/results/{result_id}/needs", response_model=ResultNeedsResponse,
            summary="Which stored needs a stored research result fits (supply-side push)")
def result_needs(result_id: RecordId, service: ServiceDep, top_k: TopK = 10) -> ResultNeedsResponse:
    return service.needs_for_result(result_id, top_k)
