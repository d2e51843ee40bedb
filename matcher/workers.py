"""What every out-of-process batch worker holds: one loaded Matcher, shared by the executors."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from matcher.batch import match_chunk
from matcher.batch_io import Direction
from models.encoder import Encoder

EncoderFactory = Callable[[], Encoder]


def default_encoder() -> Encoder:
    """The encoder the settings name (same as the local executor's), its model loaded on the
    first text that misses the embedding cache."""
    from matcher.runtime import make_encoder
    from matcher.settings import Settings

    return make_encoder(Settings(), lazy=True)


class MatcherWorker:
    """Holds one loaded Matcher; matches the chunks it is sent."""

    def __init__(self, index_dir: str, top_k: int, direction: Direction, config: str,
                 encoder_factory: EncoderFactory) -> None:
        from matcher.matcher import Matcher

        self.matcher = Matcher.load(Path(index_dir), encoder_factory())
        self.top_k = top_k
        self.direction = direction
        self.config = config

    def match(self, records: Sequence[Any]) -> list[dict[str, Any]]:
        return match_chunk(self.matcher, records, self.top_k, self.direction, self.config)

    def ready(self) -> bool:
        return True
