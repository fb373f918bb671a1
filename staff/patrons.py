"""Staff console: patrons (利用者の登録・検索・照会)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from staff.routes import Console, allowed, render

router = APIRouter(include_in_schema=False)


@router.get("/patrons")
def patrons_home(request: Request, ctx: Console = Depends(allowed("patrons", "view"))) -> Response:
    return render(request, "section.html", ctx, title="利用者", section="patrons")
