"""techmatch's domain: records, loaders, scoring and the Matcher entry point."""

from matcher.matcher import Matcher, MatcherOptions
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
