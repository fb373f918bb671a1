"""OPAC: My Library (マイライブラリ): the patron's loans, holds and settings, through the internal API."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
