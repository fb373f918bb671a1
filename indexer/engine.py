"""The search-engine boundary. Two implementations: tantivy (embedded default) and OpenSearch.

Both compile Shoka's own query model (indexer/query.py) over the same pre-analysed tokens
(indexer/document.py); tests/test_search_conformance.py runs the same cases on both.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from api.config import Settings
from indexer.query import SearchRequest, SearchResult


class SearchUnavailable(Exception):
    """The engine cannot be reached or its index cannot be opened."""


class SearchEngine(Protocol):
    name: str

    @property
    def slots(self) -> AbstractContextManager[Any]:
        """Held around a whole search request (opac/search.py) and taken again, re-entrantly, by `search`:
        how many requests run at once where the engine runs in this process; a no-op for a remote cluster."""
        ...

    def ping(self) -> str:
        """Raise SearchUnavailable, or return a short description of the engine's state."""
        ...

    def write(self, docs: list[dict[str, Any]], deleted: Sequence[int] = (), generation: str | None = None) -> None:
        """Add or replace documents by id and remove deleted ids, in the current or a given generation."""
        ...

    def search(self, request: SearchRequest) -> SearchResult: ...

    def new_generation(self) -> str:
        """Create an empty generation for a rebuild; searches keep using the current one."""
        ...

    def switch_to(self, generation: str) -> None:
        """Make searches use `generation`, atomically."""
        ...

    def discard(self, generation: str) -> None:
        """Delete a generation that never became current (a failed rebuild's)."""
        ...

    def prune_generations(self) -> list[str]:
        """Delete generations replaced long enough ago that no search can still be using them."""
        ...

    def needs_rebuild(self) -> bool:
        """True when the current generation was built by another analyzer or schema version."""
        ...


def engine_for(settings: Settings) -> SearchEngine:
    if settings.opensearch_url:
        from indexer.opensearch_engine import OpenSearchEngine

        return OpenSearchEngine(settings.opensearch_url)
    from indexer.tantivy_engine import TantivyEngine

    return TantivyEngine(settings.index_dir)
