"""Staff console: circulation settings (貸出規則・開館日カレンダー・バーコード・カウンター端末)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
