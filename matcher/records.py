"""Domain records: research results (科技成果), enterprise needs (企业技术需求) and matches."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_ID_CHARS = 200
MAX_TEXT_CHARS = 20_000


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    title: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    description: str = Field(default="", max_length=MAX_TEXT_CHARS)
    keywords: list[str] = Field(default_factory=list)
    region: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("keywords", mode="before")
    @classmethod
    def _split_keywords(cls, value: Any) -> Any:
        # CSV cells and hand-written JSON often carry keywords as one delimited string.
        if isinstance(value, str):
            parts = value.replace("；", ";").replace("，", ";").replace(",", ";").split(";")
            return [part.strip() for part in parts if part.strip()]
        return value


class ResearchResult(_Record):
    """A research result offered for transfer: a patent, paper or lab technology."""

    field: str | None = None
    owner: str | None = None
    maturity: str | None = None
    transfer_modes: list[str] = Field(default_factory=list)

    @field_validator("transfer_modes", mode="before")
    @classmethod
    def _split_modes(cls, value: Any) -> Any:
        return cls._split_keywords(value)


class EnterpriseNeed(_Record):
    """An enterprise's technical need, the query side of matching."""

    industry: str | None = None
    company: str | None = None
    budget: str | None = None


class TextSpan(BaseModel):
    """``text[start:end]`` shows ``term``; for a need the text is ``title。description``, for a
    result ``title keywords description`` joined by spaces."""

    term: str
    start: int
    end: int


class Match(BaseModel):
    """One ranked candidate for a query record, with the signals that ranked it."""

    result_id: str
    rank: int = Field(ge=1)
    score: float
    dense: float
    lexical: float
    components: dict[str, float] = Field(default_factory=dict)
    tier: str | None = None
    p_strong: float | None = None
    reasons: list[str] = Field(default_factory=list)
    matched_terms: list[str] = Field(default_factory=list)
    need_spans: list[TextSpan] = Field(default_factory=list)
    result_spans: list[TextSpan] = Field(default_factory=list)
    duplicates: list[str] = Field(
        default_factory=list, description="near-duplicate results folded into this one"
    )
    result: ResearchResult | None = None


class NeedMatch(BaseModel):
    """One ranked need for a research result (the supply side's push)."""

    need_id: str
    rank: int = Field(ge=1)
    score: float
    dense: float
    lexical: float
    need: EnterpriseNeed | None = None


class MatchFilters(BaseModel):
    """Hard constraints on candidate results; ``None`` means no constraint."""

    model_config = ConfigDict(extra="forbid")

    field: str | None = Field(default=None, max_length=200, description="学科/行业, substring match")
    region: str | None = Field(default=None, max_length=200, description="substring match")
    maturity: str | None = Field(default=None, max_length=50, description="exact match")
    transfer_mode: str | None = Field(default=None, max_length=50, description="one of the result's modes")

    def is_empty(self) -> bool:
        return all(v is None for v in self.model_dump().values())

    def accepts(self, result: ResearchResult | Any) -> bool:
        """Whether ``result`` (a record or its ``matcher.profiles.Facets``) satisfies every set
        constraint."""
        if self.field is not None and self.field not in (result.field or ""):
            return False
        if self.region is not None and self.region not in (result.region or ""):
            return False
        if self.maturity is not None and result.maturity != self.maturity:
            return False
        if self.transfer_mode is not None and self.transfer_mode not in result.transfer_modes:
            return False
        return True
