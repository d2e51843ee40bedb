"""Dependencies of the handlers: the live objects the lifespan put on ``app.state``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.errors import ApiError
from api.feedback import FeedbackStore
from api.metrics import Metrics
from api.service import MatchingService
from api.settings import ApiSettings
from matcher.matcher import Matcher


def get_service(request: Request) -> MatchingService:
    """The matching service; 503 until the lifespan has loaded the index."""
    service: MatchingService | None = getattr(request.app.state, "service", None)
    if service is None:
        raise ApiError(503, "not_ready", "the index is not loaded yet")
    return service


def get_matcher(service: Annotated[MatchingService, Depends(get_service)]) -> Matcher:
    return service.matcher


def get_feedback(service: Annotated[MatchingService, Depends(get_service)]) -> FeedbackStore:
    return service.feedback


def get_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


ServiceDep = Annotated[MatchingService, Depends(get_service)]
MatcherDep = Annotated[Matcher, Depends(get_matcher)]
FeedbackDep = Annotated[FeedbackStore, Depends(get_feedback)]
SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
