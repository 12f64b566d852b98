"""``/api/packages``: a package (a flow whose tasks are its scripts) sent as a zip of
its folder, or as a multipart form with the package form's fields and its files; and
``/api/flows/{namespace}/{id}/files``: the files of a flow made so."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.datastructures import FormData, UploadFile

from ordo import authoring
from ordo.api import models
from ordo.api.app import Caller, Writer, store_of
from ordo.api.flows import flow_summary
from ordo.errors import UsageError

router = APIRouter(prefix="/api/packages", tags=["flows"])

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/zip": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "description": {"type": "string"},
                        "namespace": {"type": "string"},
                        "labels": {"type": "string", "description": "key=value, comma separated"},
                        "cron": {"type": "string"},
                        "events": {"type": "string", "description": "comma separated"},
                        "allow_manual": {"type": "boolean"},
                        "active": {"type": "boolean"},
                        "connection": {"type": "string", "description": "for .sql scripts"},
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "zip": {"type": "string", "format": "binary"},
                    },
                }
            },
        },
    }
}


@router.post(
    "",
    summary="Create or update a package from a zip or a multipart form",
    openapi_extra=UPLOAD_BODY,
    response_model=models.FlowSummary,
)
async def upload_package(request: Request, who: Writer) -> JSONResponse:
    limit: int = request.app.state.max_upload
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in ("application/zip", "application/x-zip-compressed"):
        data = await request.body()
        return await run_in_threadpool(_from_zip, request, who, data, limit)
    if kind != "multipart/form-data":
        raise UsageError(
            f"send a package as application/zip or multipart/form-data, not {kind or 'nothing'}"
        )
    form = await request.form(max_files=authoring.MAX_ZIP_ENTRIES, max_fields=100)
    files, archive = await read_uploads(form, limit)
    if archive is not None:
        return await run_in_threadpool(_from_zip, request, who, archive, limit)
    package = form_fields(form)
    return await run_in_threadpool(_from_form, request, who, package, files, limit)


async def read_uploads(form: FormData, limit: int) -> tuple[dict[str, bytes], bytes | None]:
    """The form's uploaded files (field ``files``, as many as sent) and its ``zip``."""
    files: dict[str, bytes] = {}
    archive = None
    for key, value in form.multi_items():
        if not isinstance(value, UploadFile) or not value.filename:
            continue
        content = await value.read(limit + 1)
        authoring.check_size(value.filename, len(content), limit)
        if key == "zip":
            archive = content
        else:
            authoring.check_name(value.filename)
            files[value.filename] = content
    return files, archive


def form_fields(form: FormData) -> authoring.PackageForm:
    """The package form's fields (as the UI's form and the API's multipart send them)."""

    def text(name: str, default: str = "") -> str:
        value = form.get(name)
        return value.strip() if isinstance(value, str) else default

    def flag(name: str, default: bool) -> bool:
        values = [v for v in form.getlist(name) if isinstance(v, str)]
        return default if not values else values[-1].lower() in ("true", "on", "1", "yes")

    labels: dict[str, str] = {}
    for part in text("labels").replace("\n", ",").split(","):
        if part.strip():
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise UsageError(f"labels: {part.strip()!r}: expected key=value")
            labels[key.strip()] = value.strip()
    events = [e.strip() for e in text("events").replace("\n", ",").split(",") if e.strip()]
    return authoring.PackageForm(
        name=text("name"),
        description=text("description"),
        namespace=text("namespace") or "default",
        labels=labels,
        cron=text("cron"),
        events=events,
        allow_manual=flag("allow_manual", True),
        active=flag("active", True),
        connection=text("connection"),
    )


def _answer(request: Request, revision: Any, now: float) -> JSONResponse:
    summary = models.FlowSummary.model_validate(flow_summary(store_of(request), revision))
    created = revision.created_at == now  # else the newest revision had these files
    return JSONResponse(summary.model_dump(mode="json"), status_code=201 if created else 200)


def _from_zip(request: Request, who: Caller, data: bytes, limit: int) -> JSONResponse:
    folder, files = authoring.unzip(data, limit)
    now = time.time()
    revision = authoring.save_package(
        store_of(request), files, who.name, now, folder_name=folder, limit=limit, scope=who.may_use
    )
    return _answer(request, revision, now)


def _from_form(
    request: Request,
    who: Caller,
    package: authoring.PackageForm,
    files: dict[str, bytes],
    limit: int,
) -> JSONResponse:
    now = time.time()
    revision = authoring.save_package(
        store_of(request), files, who.name, now, form=package, limit=limit, scope=who.may_use
    )
    return _answer(request, revision, now)
