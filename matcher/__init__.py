"""techmatch's domain: records, loaders, scoring and the Matcher entry point."""

from __future__ import annotations

from typing import Any

from matcher.records import EnterpriseNeed, Match, MatchFilters, NeedMatch, ResearchResult

__all__ = [
    "EnterpriseNeed",
    "Match",
    "MatchFilters",
    "Matcher",
    "MatcherOptions",
    "NeedMatch",
    "ResearchResult",
]


def __getattr__(name: str) -> Any:
    # Imported on first use: the Matcher pulls in scoring and models.fusion, which itself
    # uses matcher.signals; importing it here made `import models.fusion` circular.
    if name in ("Matcher", "MatcherOptions"):
        from matcher import matcher as module

        return getattr(module, name)
    raise AttributeError(f"module 'matcher' has no attribute {name!r}")
