"""OPAC: the purchase request form (リクエスト), through the internal API.

Signed-in patrons only. The page asks the internal API for the patron's requests and the pickup
branches, renders them and forgets them; the form is POSTed (with the CSRF token) and passed on as
JSON. Redirects carry message codes only, never what was typed.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from api.errors import ShokaError
from api.web import request_lang
from opac.internal import MyLibraryRoute, Patron, check_csrf, render, signed_in

router = APIRouter(include_in_schema=False, route_class=MyLibraryRoute)
FIELDS = ("title", "author", "publisher", "isbn", "note", "pickup_branch")
PATH = "/mylibrary/requests"


def _page(request: Request, me: Patron, *, form: dict[str, str] | None = None, error: str = "",
          error_field: str = "", status_code: int = 200) -> Response:
    answer: dict[str, Any] = me.get("/internal/v1/requests")
    branches = answer["pickup_branches"]
    values = form or {k: "" for k in FIELDS}
    if not values.get("pickup_branch") and branches:
        values["pickup_branch"] = branches[0]["code"]
    return render(request, "requests.html", {"requests": answer["requests"], "branches": branches, "form": values,
                                             "error": error, "error_field": error_field}, status_code=status_code)


@router.get(PATH)
def requests_page(request: Request, me: Patron = Depends(signed_in)) -> Response:
    return _page(request, me)


@router.post(PATH)
def request_submit(request: Request, csrf_token: str = Form(""), title: str = Form(""), author: str = Form(""),
                   publisher: str = Form(""), isbn: str = Form(""), note: str = Form(""),
                   pickup_branch: str = Form(""), me: Patron = Depends(signed_in)) -> Response:
    check_csrf(request, csrf_token)
    form = {"title": title, "author": author, "publisher": publisher, "isbn": isbn, "note": note,
            "pickup_branch": pickup_branch}
    try:
        me.post("/internal/v1/requests", dict(form))
    except ShokaError as exc:
        if exc.status in (401, 503):
            raise
        return _page(request, me, form=form, error=exc.message(request_lang(request)), error_field=exc.field or "",
                     status_code=exc.status)
    return RedirectResponse(f"{PATH}?msg=request_sent", status_code=303)


@router.post(PATH + "/{request_id}/cancel")
def request_cancel(request_id: int, request: Request, csrf_token: str = Form(""),
                   me: Patron = Depends(signed_in)) -> Response:
    check_csrf(request, csrf_token)
    try:
        me.delete(f"/internal/v1/requests/{request_id}")
    except ShokaError as exc:
        if exc.status in (401, 404, 503):
            raise
        return _page(request, me, error=exc.message(request_lang(request)), status_code=exc.status)
    return RedirectResponse(f"{PATH}?msg=request_cancelled", status_code=303)
