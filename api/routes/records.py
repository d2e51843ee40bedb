"""Record management: idempotent upsert by id, delete, bulk upsert; for results and needs.

Every write updates the index incrementally (the next match sees it) and is committed to the
record store before the response, so it survives a restart.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Path

from api.deps import ServiceDep
from api.errors import ApiError
from api.schemas import (
    ID_PATTERN,
    NeedCreate,
    NeedPublic,
    NeedsBulk,
    ResultCreate,
    ResultPublic,
    ResultsBulk,
    WriteResponse,
)
from api.security import require_read_key, require_write_key
from api.service import MatchingService

router = APIRouter(prefix="/v1")
RecordId = Annotated[str, Path(min_length=1, max_length=200, pattern=ID_PATTERN)]
Write = [Depends(require_write_key)]
Read = [Depends(require_read_key)]


def _same_id(path_id: str, body_id: str | None) -> None:
    if body_id is not None and body_id != path_id:
        raise ApiError(422, "id_mismatch", f"body id '{body_id}' differs from path id '{path_id}'", "id")


def _after_write(service: MatchingService, tasks: BackgroundTasks) -> None:
    # After the response: rebuild the lexical statistics now rather than in the next match.
    tasks.add_task(service.warm_up)
    if service.checkpoint_due():
        tasks.add_task(service.checkpoint)


@router.get("/results/{result_id}", response_model=ResultPublic, tags=["results"], dependencies=Read)
def get_result(result_id: RecordId, service: ServiceDep) -> ResultPublic:
    return ResultPublic(**service.result(result_id, field="result_id").model_dump())


@router.put("/results/{result_id}", response_model=WriteResponse, tags=["results"], dependencies=Write,
            summary="Create or replace a research result")
def put_result(result_id: RecordId, body: ResultCreate, service: ServiceDep,
               tasks: BackgroundTasks) -> WriteResponse:
    _same_id(result_id, body.id)
    out = service.upsert_results([body.to_record(result_id)])
    _after_write(service, tasks)
    return out


@router.delete("/results/{result_id}", response_model=WriteResponse, tags=["results"], dependencies=Write)
def delete_result(result_id: RecordId, service: ServiceDep, tasks: BackgroundTasks) -> WriteResponse:
    out = service.delete_result(result_id)
    _after_write(service, tasks)
    return out


@router.post("/results:bulk", response_model=WriteResponse, tags=["results"], dependencies=Write,
             summary="Create or replace up to 1,000 research results")
def bulk_results(body: ResultsBulk, service: ServiceDep, tasks: BackgroundTasks) -> WriteResponse:
    out = service.upsert_results([r.to_record(r.id) for r in body.results])
    _after_write(service, tasks)
    return out


@router.get("/needs/{need_id}", response_model=NeedPublic, tags=["needs"], dependencies=Read)
def get_need(need_id: RecordId, service: ServiceDep) -> NeedPublic:
    return NeedPublic(**service.need(need_id, field="need_id").model_dump())


@router.put("/needs/{need_id}", response_model=WriteResponse, tags=["needs"], dependencies=Write,
            summary="Create or replace an enterprise need")
def put_need(need_id: RecordId, body: NeedCreate, service: ServiceDep,
             tasks: BackgroundTasks) -> WriteResponse:
    _same_id(need_id, body.id)
    out = service.upsert_needs([body.to_record(need_id)])
    _after_write(service, tasks)
    return out


@router.delete("/needs/{need_id}", response_model=WriteResponse, tags=["needs"], dependencies=Write)
def delete_need(need_id: RecordId, service: ServiceDep, tasks: BackgroundTasks) -> WriteResponse:
    out = service.delete_need(need_id)
    _after_write(service, tasks)
    return out


@router.post("/needs:bulk", response_model=WriteResponse, tags=["needs"], dependencies=Write,
             summary="Create or replace up to 1,000 enterprise needs")
def bulk_needs(body: NeedsBulk, service: ServiceDep, tasks: BackgroundTasks) -> WriteResponse:
    out = service.upsert_needs([n.to_record(n.id) for n in body.needs])
    _after_write(service, tasks)
    return out
