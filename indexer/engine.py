"""The search-engine boundary. Two implementations: tantivy (embedded default) and OpenSearch.

The catalogue issue fills in indexing and querying; the foundation needs to know where the index
lives and whether the engine answers (for /readyz and `shoka doctor`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from api.config import Settings


class SearchUnavailable(Exception):
    """The engine cannot be reached or its index cannot be opened."""


class SearchEngine(Protocol):
    name: str

    def ping(self) -> str:
        """Raise SearchUnavailable, or return a short description of the engine's state."""
        ...


class TantivyEngine:
    name = "tantivy"

    def __init__(self, index_dir: Path) -> None:
        self.index_dir = index_dir

    def ping(self) -> str:
        import tantivy

        try:
            self.index_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SearchUnavailable(f"index directory {self.index_dir}: {exc.strerror}") from None
        if not (self.index_dir / "meta.json").exists():
            return f"empty index at {self.index_dir}"
        try:
            tantivy.Index.open(str(self.index_dir))
        except (ValueError, OSError) as exc:
            raise SearchUnavailable(f"index at {self.index_dir} cannot be opened: {exc}") from None
        return f"index at {self.index_dir}"


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
    return TantivyEngine(settings.index_dir)
