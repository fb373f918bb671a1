"""Staff console: holds (予約): holds on a title, pull list, hold shelf, expired holds, transfers."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
