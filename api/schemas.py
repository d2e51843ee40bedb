"""Request and response schemas of the HTTP API; every limit of the service lives here.

Families per resource (``NeedCreate`` in, ``NeedPublic`` out, …). Text fields are capped at
20,000 characters, lists and batch sizes are bounded, so that bad input is a 422 naming the
field before any work is done.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from matcher.records import (
    MAX_TEXT_CHARS,
    EnterpriseNeed,
    Match,
    MatchFilters,
    NeedMatch,
    ResearchResult,
)
from matcher.scoring import CONFIGS

MAX_TOP_K = 100
MAX_MATCH_BATCH = 100
MAX_BULK = 1_000
MAX_SHORT_CHARS = 200
MAX_KEYWORDS = 50
MAX_KEYWORD_CHARS = 100
MAX_METADATA_CHARS = 20_000
ID_PATTERN = r"^[^/?#\s]+$"  # ids appear in URL paths
ID_FIELD = Field(min_length=1, max_length=200, pattern=ID_PATTERN, description="record id")

ConfigName = Literal[CONFIGS]  # type: ignore[valid-type]
FeedbackLabel = Literal["strong", "related", "weak", "unrelated"]
# The CCF expert scale: 3 强相关, 2 较强相关, 1 弱相关, 0 无相关 (what `techmatch eval` reads).
LABEL_VALUES: dict[str, int] = {"strong": 3, "related": 2, "weak": 1, "unrelated": 0}

ShortText = Field(default=None, max_length=MAX_SHORT_CHARS)

_RESULT_EXAMPLE: dict[str, Any] = {
    "title": "一种高活性氟化锂的制备方法",
    "description": "以碳酸锂和氢氟酸为原料，经络合、结晶、低温干燥制得高活性氟化锂，产品纯度≥99.9%，适用于锂电池电解质。",
    "keywords": ["氟化锂", "锂电池", "电解质"],
    "field": "化学工程",
    "owner": "郑州大学",
    "maturity": "中试",
    "transfer_modes": ["转让", "许可"],
    "region": "河南省郑州市",
}
_NEED_EXAMPLE: dict[str, Any] = {
    "title": "磺化生产线酸雾治理",
    "description": "我公司磺化车间在生产过程中产生大量酸雾，现有水喷淋吸收效果差，希望引进高效酸雾净化技术，使排放达到国家标准。",
    "keywords": ["酸雾", "废气治理"],
    "industry": "化工",
    "company": "河南某化工有限公司",
    "region": "河南省新乡市",
    "budget": "50万元",
}


def _check_list(values: list[str], max_items: int, max_chars: int, name: str) -> list[str]:
    if len(values) > max_items:
        raise ValueError(f"{name} has {len(values)} items; at most {max_items} are allowed")
    for value in values:
        if len(value) > max_chars:
            raise ValueError(f"{name} item '{value[:20]}…' has {len(value)} characters; "
                             f"at most {max_chars} are allowed")
    return values


class _RecordIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: str = Field(min_length=1, max_length=MAX_TEXT_CHARS, description="标题")
    description: str = Field(default="", max_length=MAX_TEXT_CHARS, description="正文/摘要")
    keywords: list[str] = Field(default_factory=list, description=f"≤ {MAX_KEYWORDS} keywords")
    region: str | None = ShortText
    metadata: dict[str, Any] = Field(default_factory=dict, description="free-form, ≤ 20,000 chars as JSON")

    @field_validator("keywords")
    @classmethod
    def _keywords(cls, value: list[str]) -> list[str]:
        return _check_list(value, MAX_KEYWORDS, MAX_KEYWORD_CHARS, "keywords")

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(value, ensure_ascii=False))
        if size > MAX_METADATA_CHARS:
            raise ValueError(f"metadata is {size} characters as JSON; at most {MAX_METADATA_CHARS}")
        return value


class ResultCreate(_RecordIn):
    """A research result (科技成果) to store; the id comes from the path."""

    model_config = ConfigDict(json_schema_extra={"examples": [_RESULT_EXAMPLE]})

    id: str | None = Field(default=None, min_length=1, max_length=200, pattern=ID_PATTERN,
                           description="optional; must equal the id in the path")
    field: str | None = Field(default=None, max_length=MAX_SHORT_CHARS, description="学科/行业")
    owner: str | None = Field(default=None, max_length=MAX_SHORT_CHARS, description="成果持有方")
    maturity: str | None = Field(default=None, max_length=50, description="实验室/小试/中试/产业化")
    transfer_modes: list[str] = Field(default_factory=list, description="转让/许可/作价入股/合作开发…")

    @field_validator("transfer_modes")
    @classmethod
    def _modes(cls, value: list[str]) -> list[str]:
        return _check_list(value, 20, 50, "transfer_modes")

    def to_record(self, record_id: str) -> ResearchResult:
        return ResearchResult(**{**self.model_dump(exclude={"id"}), "id": record_id})


class ResultIn(ResultCreate):
    """A research result with its id, as in bulk uploads."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"id": "r-0001", **_RESULT_EXAMPLE}]})

    id: str = ID_FIELD  # type: ignore[assignment]


class NeedCreate(_RecordIn):
    """An enterprise technical need (企业技术需求) to store; the id comes from the path."""

    model_config = ConfigDict(json_schema_extra={"examples": [_NEED_EXAMPLE]})

    id: str | None = Field(default=None, min_length=1, max_length=200, pattern=ID_PATTERN,
                           description="optional; must equal the id in the path")
    industry: str | None = Field(default=None, max_length=MAX_SHORT_CHARS, description="所属行业")
    company: str | None = Field(default=None, max_length=MAX_SHORT_CHARS, description="企业名称")
    budget: str | None = Field(default=None, max_length=MAX_SHORT_CHARS, description="预算")

    def to_record(self, record_id: str) -> EnterpriseNeed:
        return EnterpriseNeed(**{**self.model_dump(exclude={"id"}), "id": record_id})


class NeedIn(NeedCreate):
    """A need with its id, as in bulk uploads."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"id": "n-0001", **_NEED_EXAMPLE}]})

    id: str = ID_FIELD  # type: ignore[assignment]


class NeedInline(NeedCreate):
    """A need given inline to ``/v1/match``; it is not stored. The id only labels the answer."""

    id: str = Field(default="inline", min_length=1, max_length=200, pattern=ID_PATTERN)  # type: ignore[assignment]


def _unique_ids(records: list[Any], name: str) -> list[Any]:
    seen: set[str] = set()
    for n, record in enumerate(records):
        if record.id in seen:
            raise ValueError(f"{name}[{n}].id '{record.id}' appears twice; ids must be unique")
        seen.add(record.id)
    return records


class ResultsBulk(BaseModel):
    """Up to 1,000 research results, upserted by id in one call."""

    model_config = ConfigDict(extra="forbid",
                              json_schema_extra={"examples": [{"results": [{"id": "r-0001", **_RESULT_EXAMPLE}]}]})

    results: list[ResultIn] = Field(min_length=1, max_length=MAX_BULK)

    @field_validator("results")
    @classmethod
    def _unique(cls, value: list[ResultIn]) -> list[ResultIn]:
        return _unique_ids(value, "results")


class NeedsBulk(BaseModel):
    """Up to 1,000 needs, upserted by id in one call."""

    model_config = ConfigDict(extra="forbid",
                              json_schema_extra={"examples": [{"needs": [{"id": "n-0001", **_NEED_EXAMPLE}]}]})

    needs: list[NeedIn] = Field(min_length=1, max_length=MAX_BULK)

    @field_validator("needs")
    @classmethod
    def _unique(cls, value: list[NeedIn]) -> list[NeedIn]:
        return _unique_ids(value, "needs")


class ResultPublic(ResearchResult):
    """A stored research result."""


class NeedPublic(EnterpriseNeed):
    """A stored enterprise need."""


class WriteResponse(BaseModel):
    """Outcome of an upsert or delete."""

    ids: list[str]
    upserted: int = 0
    deleted: int = 0
    results: int = Field(description="research results now indexed")
    needs: int = Field(description="needs now indexed")


class MatchRequest(BaseModel):
    """One need, inline or by the id of a stored need, and how to rank for it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [
            {"need": _NEED_EXAMPLE, "top_k": 10},
            {"need_id": "n-0001", "top_k": 5, "filters": {"region": "河南", "maturity": "中试"}},
        ]},
    )

    need: NeedInline | None = None
    need_id: str | None = Field(default=None, min_length=1, max_length=200)
    top_k: int = Field(default=10, ge=1, le=MAX_TOP_K)
    filters: MatchFilters | None = None
    config: ConfigName = "default"  # type: ignore[valid-type]
    include_records: bool = Field(default=True, description="embed each result record in its match")

    @model_validator(mode="after")
    def _one_need(self) -> MatchRequest:
        if (self.need is None) == (self.need_id is None):
            raise ValueError("give exactly one of 'need' (inline) or 'need_id' (a stored need)")
        return self


class MatchBatchRequest(BaseModel):
    """Up to 100 needs in one call: inline needs, stored need ids, or both."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"needs": [{"id": "q1", **_NEED_EXAMPLE}], "need_ids": ["n-0001"],
                                         "top_k": 5}]},
    )

    needs: list[NeedInline] = Field(default_factory=list, max_length=MAX_MATCH_BATCH)
    need_ids: list[str] = Field(default_factory=list, max_length=MAX_MATCH_BATCH)
    top_k: int = Field(default=10, ge=1, le=MAX_TOP_K)
    filters: MatchFilters | None = None
    config: ConfigName = "default"  # type: ignore[valid-type]
    include_records: bool = True

    @model_validator(mode="after")
    def _size(self) -> MatchBatchRequest:
        total = len(self.needs) + len(self.need_ids)
        if not 1 <= total <= MAX_MATCH_BATCH:
            raise ValueError(f"needs + need_ids has {total} entries; between 1 and {MAX_MATCH_BATCH} "
                             "are allowed")
        return self


class KeyTermPublic(BaseModel):
    """A technical term of the need with its TF-IDF weight."""

    term: str
    weight: float


class NeedAnalysis(BaseModel):
    """What the matcher read from the need: the embedded text and its technical points."""

    text: str = Field(description="the text that was embedded (title。description, truncated)")
    truncated: bool = Field(description="whether the description was cut to fit the model")
    key_terms: list[KeyTermPublic] = Field(description="technical key terms, highest weight first")
    key_sentences: list[str] = Field(description="title and sentences of the technical sections")
    sections: dict[str, str] = Field(description="需求内容 / 预期目标 / 现有工作基础, when headed")


class MatchResponse(BaseModel):
    """Ranked results for one need, best first."""

    need_id: str
    config: str
    matches: list[Match]
    analysis: NeedAnalysis
    took_ms: float


class MatchBatchResponse(BaseModel):
    """One :class:`MatchResponse` per need: inline needs first, then ``need_ids``, in order."""

    responses: list[MatchResponse]
    took_ms: float


class ResultNeedsResponse(BaseModel):
    """Needs a stored research result fits, best first (the supply side's push)."""

    result_id: str
    matches: list[NeedMatch]
    took_ms: float


class FeedbackCreate(BaseModel):
    """An enterprise's verdict on one suggested result."""

    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True,
        json_schema_extra={"examples": [{"need_id": "n-0001", "result_id": "r-0001", "label": "strong",
                                         "reason": "工艺路线与我司现有设备匹配", "user": "张经理"}]},
    )

    need_id: str = Field(min_length=1, max_length=200, pattern=ID_PATTERN)
    result_id: str = Field(min_length=1, max_length=200, pattern=ID_PATTERN)
    label: FeedbackLabel = Field(description="strong 强相关 | related 较强相关 | weak 弱相关 | unrelated 不相关")
    reason: str | None = Field(default=None, max_length=2_000)
    user: str | None = Field(default=None, max_length=MAX_SHORT_CHARS)
    tier: str | None = Field(default=None, max_length=50,
                             description="tier shown with the match; filled in by the service if omitted")
    rank: int | None = Field(default=None, ge=1, le=10_000, description="rank the result was shown at")


class FeedbackPublic(FeedbackCreate):
    """A stored verdict."""

    id: int
    created_at: str


class RateStats(BaseModel):
    """Counts and the strongly-related rate (label strong or related) of a group of verdicts."""

    count: int
    strong: int
    related: int
    weak: int
    unrelated: int
    strongly_related_rate: float | None = Field(description="(strong + related) / count")
    strong_rate: float | None = Field(description="strong / count")


class FeedbackStats(BaseModel):
    """Feedback so far: overall, by the tier shown, and by ISO week (e.g. 2025-W07)."""

    overall: RateStats
    by_tier: dict[str, RateStats]
    by_week: dict[str, RateStats]


class Ready(BaseModel):
    """Readiness: the index is loaded."""

    status: str
    results: int
    needs: int
    encoder: str
    index: str
