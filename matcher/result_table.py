"""The result profile table: every indexed result's signal inputs as flat arrays.

Kept beside the vector and lexical indexes and saved with them in the snapshot, where its
arrays are memory-mapped: worker processes that open the same index share one copy. Writes
after the snapshot go to small in-memory segments; saving writes one compacted segment.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from indexes.persistence import load_json, save_json
from matcher.profiles import CandidateProfiles, Facets, ResultRow, csr_take, offsets_of
from matcher.signals import compact
from matcher.store import RecordStore

_NONE = -1
# Ragged columns: name → (offsets file, values file, values dtype).
_RAGGED: dict[str, tuple[str, np.dtype[Any]]] = {
    "terms": ("term_offsets", np.dtype(np.int32)),
    "text": ("text_offsets", np.dtype(np.uint8)),
    "grams": ("gram_offsets", np.dtype(np.int64)),
    "modes": ("mode_offsets", np.dtype(np.int32)),
}
_SCALAR: dict[str, np.dtype[Any]] = {
    "generic": np.dtype(np.float32),
    "title_key": np.dtype(np.int64),
    "field": np.dtype(np.int32),
    "region": np.dtype(np.int32),
    "maturity": np.dtype(np.int32),
}


class _Segment:
    """Rows ``base .. base + rows - 1`` of the table, column by column."""

    def __init__(self, base: int, arrays: dict[str, np.ndarray]) -> None:
        self.base = base
        self.arrays = arrays
        self.rows = len(arrays["generic"])

    def take(self, rows: np.ndarray) -> dict[str, Any]:
        a = self.arrays
        out: dict[str, Any] = {name: a[name][rows] for name in _SCALAR}
        for name, (offsets, _) in _RAGGED.items():
            out[name] = csr_take(a[offsets], a[name], rows)
        text_lengths, blob = out.pop("text")
        ends = np.cumsum(text_lengths)
        raw = blob.tobytes()
        out["texts"] = [raw[e - n : e].decode("utf-8") for e, n in zip(ends.tolist(), text_lengths.tolist())]
        return out


class ResultTable:
    """Signal inputs of the indexed results by id (see ``matcher.profiles``)."""

    def __init__(self) -> None:
        self._segments: list[_Segment] = []
        self._where: dict[str, int] = {}  # id → global row
        self.vocab: list[str] = []
        self.compact_vocab: list[str] = []
        self.labels: list[str] = []
        self._term_ids: dict[str, int] | None = None  # built on the first write
        self._label_ids: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, record_id: str) -> bool:
        return record_id in self._where

    # ----- writes -------------------------------------------------------------------------

    def add(self, ids: Sequence[str], rows: Sequence[ResultRow]) -> None:
        """Add or replace results (a replaced row stays in its segment, unreferenced)."""
        if not ids:
            return
        if self._term_ids is None or self._label_ids is None:
            self._term_ids = {t: n for n, t in enumerate(self.vocab)}
            self._label_ids = {t: n for n, t in enumerate(self.labels)}
        base = self._segments[-1].base + self._segments[-1].rows if self._segments else 0
        self._segments.append(_Segment(base, self._encode(rows)))
        for n, record_id in enumerate(ids):
            self._where[record_id] = base + n

    def remove(self, ids: Iterable[str]) -> int:
        """Forget results; returns how many were present."""
        return sum(self._where.pop(i, None) is not None for i in ids)

    def _term(self, term: str) -> int:
        assert self._term_ids is not None
        n = self._term_ids.get(term)
        if n is None:
            n = self._term_ids[term] = len(self.vocab)
            self.vocab.append(term)
            self.compact_vocab.append(compact(term))
        return n

    def _label(self, label: str | None) -> int:
        assert self._label_ids is not None
        if label is None:
            return _NONE
        n = self._label_ids.get(label)
        if n is None:
            n = self._label_ids[label] = len(self.labels)
            self.labels.append(label)
        return n

    def _encode(self, rows: Sequence[ResultRow]) -> dict[str, np.ndarray]:
        texts = [r.compact_text.encode("utf-8") for r in rows]
        ragged = {
            "terms": [[self._term(t) for t in r.terms] for r in rows],
            "grams": [r.grams for r in rows],
            "modes": [[self._label(m) for m in r.facets.transfer_modes] for r in rows],
        }
        arrays: dict[str, np.ndarray] = {
            "generic": np.array([r.generic_share for r in rows], np.float32),
            "title_key": np.array([r.title_key for r in rows], np.int64),
            "field": np.array([self._label(r.facets.field) for r in rows], np.int32),
            "region": np.array([self._label(r.facets.region) for r in rows], np.int32),
            "maturity": np.array([self._label(r.facets.maturity) for r in rows], np.int32),
            "text": np.frombuffer(b"".join(texts), np.uint8),
            "text_offsets": offsets_of([len(t) for t in texts]),
        }
        for name, values in ragged.items():
            offsets, dtype = _RAGGED[name]
            arrays[offsets] = offsets_of([len(v) for v in values])
            flat = [x for v in values for x in v]
            arrays[name] = np.array(flat, dtype) if flat else np.zeros(0, dtype)
        return arrays

    # ----- reads --------------------------------------------------------------------------

    def gather(self, ids: Sequence[str]) -> tuple[list[str], CandidateProfiles]:
        """The profiles of the ``ids`` present in the table, in the given order.

        Returns:
            ``(present ids, their profiles)``; absent ids are skipped.
        """
        present = [i for i in ids if i in self._where]
        rows = np.fromiter((self._where[i] for i in present), np.int64, len(present))
        bases = np.array([s.base for s in self._segments], np.int64)
        which = np.searchsorted(bases, rows, side="right") - 1
        parts, order = [], []
        for s in np.unique(which).tolist():
            at = np.flatnonzero(which == s)
            parts.append(self._segments[s].take(rows[at] - self._segments[s].base))
            order.append(at)
        profiles = self._profiles(parts)
        if len(parts) > 1:  # segment by segment → the order asked for
            concat = np.concatenate(order)
            position = np.empty(len(concat), np.int64)
            position[concat] = np.arange(len(concat))
            profiles = profiles.subset(position.tolist())
        return present, profiles

    def _profiles(self, parts: list[dict[str, Any]]) -> CandidateProfiles:
        def cat(name: str, k: int | None = None, dtype: Any = np.int64) -> np.ndarray:
            values = [p[name] if k is None else p[name][k] for p in parts]
            return np.concatenate(values).astype(dtype, copy=False) if values else np.zeros(0, dtype)

        labels = self.labels

        def label(code: int) -> str | None:
            return None if code < 0 else labels[code]

        mode_lengths, modes = cat("modes", 0), cat("modes", 1)
        mode_ends = np.cumsum(mode_lengths).tolist()
        modes_list = modes.tolist()
        facets = [
            Facets(label(f), label(r), label(m), tuple(labels[c] for c in modes_list[e - n : e]))
            for f, r, m, e, n in zip(cat("field").tolist(), cat("region").tolist(), cat("maturity").tolist(),
                                     mode_ends, mode_lengths.tolist())
        ]
        return CandidateProfiles(
            term_lengths=cat("terms", 0),
            term_ids=cat("terms", 1),
            vocab=self.vocab,
            compact_vocab=self.compact_vocab,
            compact_texts=[t for p in parts for t in p["texts"]],
            gram_lengths=cat("grams", 0),
            grams=cat("grams", 1),
            generic_share=cat("generic", dtype=np.float32),
            title_keys=cat("title_key"),
            facets=facets,
        )

    # ----- persistence --------------------------------------------------------------------

    @classmethod
    def from_store(cls, store: RecordStore, ids: Sequence[str], chunk: int = 10_000) -> ResultTable:
        """The table of the stored results ``ids``, from their stored profile columns (no
        jieba for rows that have them: 500k results in ~40 s)."""
        table = cls()
        for start in range(0, len(ids), chunk):
            found = store.result_rows(ids[start : start + chunk])
            table.add(list(found), list(found.values()))
        return table

    def save(self, directory: Path) -> dict[str, Any]:
        """Write the live rows as one segment, with only the terms and labels they use."""
        directory.mkdir(parents=True, exist_ok=True)
        ids = sorted(self._where, key=self._where.__getitem__)
        _, profiles = self.gather(ids)
        vocab = profiles.vocab
        rows = [
            ResultRow(terms=tuple(vocab[t] for t in term_ids.tolist()), compact_text=profiles.compact_texts[n],
                      grams=grams, generic_share=float(profiles.generic_share[n]),
                      title_key=int(profiles.title_keys[n]), facets=profiles.facets[n])
            for n, (term_ids, grams) in enumerate(zip(_split(profiles.term_ids, profiles.term_lengths),
                                                      _split(profiles.grams, profiles.gram_lengths)))
        ]
        fresh = ResultTable()
        fresh.add(ids, rows)
        for name, values in fresh._segments[0].arrays.items() if fresh._segments else ():
            np.save(directory / f"{name}.npy", values, allow_pickle=False)
        save_json(directory / "ids.json", ids)
        save_json(directory / "vocab.json", {"terms": fresh.vocab, "labels": fresh.labels})
        return {"count": len(ids)}

    @classmethod
    def load(cls, directory: Path) -> ResultTable:
        """Open a saved table; its arrays are memory-mapped, not read."""
        table = cls()
        ids = list(load_json(directory / "ids.json"))
        vocab = load_json(directory / "vocab.json")
        table.vocab, table.labels = list(vocab["terms"]), list(vocab["labels"])
        table.compact_vocab = [compact(t) for t in table.vocab]
        if ids:
            names = [*_SCALAR, *_RAGGED, *(offsets for offsets, _ in _RAGGED.values())]
            arrays = {name: np.load(directory / f"{name}.npy", mmap_mode="r", allow_pickle=False) for name in names}
            table._segments.append(_Segment(0, arrays))
            if table._segments[0].rows != len(ids):
                raise ValueError(f"result table in {directory} is inconsistent: {len(ids)} ids, "
                                 f"{table._segments[0].rows} rows; rebuild it with `techmatch index build`")
        table._where = {record_id: n for n, record_id in enumerate(ids)}
        return table


def _split(flat: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    return np.split(flat, np.cumsum(lengths)[:-1]) if len(lengths) else []
