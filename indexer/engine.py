"""The search-engine boundary. Two implementations: tantivy (embedded default) and OpenSearch.

Both compile Shoka's own query model (indexer/query.py) over the same pre-analysed tokens
(indexer/document.py). The OpenSearch implementation so far only answers ping().
"""

from __future__ import annotations

from typing import Protocol

from api.config import Settings


class SearchUnavailable(Exception):
    """The engine cannot be reached or its index cannot be opened."""


class SearchEngine(Protocol):
    name: str

    def ping(self) -> str:
        """Raise SearchUnavailable, or return a short description of the engine's state."""
        ...


class OpenSearchEngine:
    name = "opensearch"

    def __init__(self, url: str) -> None:
        self.url = url

    def ping(self) -> str:
        from opensearchpy import OpenSearch
        from opensearchpy.exceptions import OpenSearchException

        try:
            info = OpenSearch(self.url, timeout=3, max_retries=0).info()
        except (OpenSearchException, OSError) as exc:
            raise SearchUnavailable(f"OpenSearch at {_redact(self.url)} does not answer: {exc}") from None
        return f"OpenSearch {info.get('version', {}).get('number', '?')}"


def _redact(url: str) -> str:
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def engine_for(settings: Settings) -> SearchEngine:
    if settings.opensearch_url:
        return OpenSearchEngine(settings.opensearch_url)
    from indexer.tantivy_engine import TantivyEngine

    return TantivyEngine(settings.index_dir)
