"""Staff console: pickup lockers (予約本受取ロッカー)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
