"""FHIR Bulk Data Access over HTTP: ``$export`` kick-off, status polling, files, cancel (IG v2.0).

``GET [base]/$export``, ``[base]/Patient/$export`` and ``[base]/Group/[id]/$export`` with
``Prefer: respond-async`` answer 202 with ``Content-Location``: the status URL. Polling it
answers 202 with ``X-Progress`` while the job runs, then 200 with the manifest; DELETE
cancels. Files are NDJSON, served to the client that asked alone. Registered before the
generic FHIR routes (``/fhir/$export`` is not a search of a type named ``$export``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from hub.api.fhir_routes import Context
from hub.api.http import outcome_response
from hub.api.security import fhir_access, requires
from hub.auth.principal import Principal
from hub.auth.roles import Permission
from hub.errors import InvalidRequest, Issue
from hub.exports.jobs import POLL_SECONDS, ExportJobs, Kickoff
from hub.fhir.bulk import NDJSON
from hub.fhir.instants import http_date
from hub.fhir.outcome import information, operation_outcome
from hub.store.exports import COMPLETED, FAILED

router = APIRouter(prefix="/fhir", tags=["Bulk Data"])
Exporter = Annotated[Principal, Depends(requires(Permission.BULK_EXPORT))]


def _jobs(request: Request) -> ExportJobs:
    return request.app.state.exports  # type: ignore[no-any-return]


def _prefers_async(header: str | None) -> bool:
    tokens = {item.strip().lower() for part in (header or "").split(",") for item in part.split(";")}
    return "respond-async" in tokens


def _kick_off(request: Request, ctx: Context, principal: Principal, level: str, group_id: str | None,
              path: str) -> Response:
    if not _prefers_async(request.headers.get("prefer")):
        raise InvalidRequest("$export runs asynchronously: send the header 'Prefer: respond-async'")
    query = request.url.query
    kickoff = Kickoff(level, group_id, list(request.query_params.multi_items()),
                      f"{ctx.base_url}/{path}" + (f"?{query}" if query else ""), ctx.lenient)
    job_id = _jobs(request).kick_off(fhir_access(principal, ctx.database), kickoff)
    worker = request.app.state.export_worker
    if worker is not None:
        worker.wake()
    status_url = f"{ctx.base_url}/$export-status/{job_id}"
    return outcome_response(202, information(f"Export accepted; poll {status_url}"),
                            {"Content-Location": status_url})


@router.get("/$export", summary="Bulk export of every resource the client may read", status_code=202)
def system_export(request: Request, ctx: Context, principal: Exporter) -> Response:
    """Kick off a system-level export (``_type``, ``_since``, ``_typeFilter``, ``_elements``, ``_outputFormat``)."""
    return _kick_off(request, ctx, principal, "system", None, "$export")


@router.get("/Patient/$export", summary="Bulk export of every patient's data", status_code=202)
def patient_export(request: Request, ctx: Context, principal: Exporter) -> Response:
    """Kick off a patient-level export: Patients and the Patient-compartment resources referring to one."""
    return _kick_off(request, ctx, principal, "patient", None, "Patient/$export")


@router.get("/Group/{group_id}/$export", summary="Bulk export of a Group's patients' data", status_code=202)
def group_export(group_id: str, request: Request, ctx: Context, principal: Exporter) -> Response:
    """Kick off a group-level export: the Group's member Patients (or its institution's patients) and their data."""
    return _kick_off(request, ctx, principal, "group", group_id, f"Group/{group_id}/$export")


@router.get("/$export-status/{job_id}", summary="Bulk export status and manifest")
def export_status(job_id: str, request: Request, ctx: Context, principal: Exporter) -> Response:
    """202 with ``X-Progress`` while the job runs; 200 with the manifest when done; the job's error when it failed."""
    jobs = _jobs(request)
    job = jobs.job(job_id, principal.client_id)
    if job.status == COMPLETED:
        headers = {"Expires": http_date(job.expires)} if job.expires else {}
        return JSONResponse(jobs.manifest(job, ctx.base_url), headers=headers)
    if job.status == FAILED:
        issue = Issue("exception" if (job.error_status or 500) >= 500 else "processing",
                      f"The export failed: {job.error}")
        return outcome_response(job.error_status or 500, operation_outcome([issue]))
    return Response(status_code=202, headers={"X-Progress": job.progress[:200], "Retry-After": str(POLL_SECONDS)})


@router.delete("/$export-status/{job_id}", summary="Cancel a bulk export", status_code=202)
def cancel_export(job_id: str, request: Request, principal: Exporter) -> Response:
    """Stop the job and delete its files; the status URL then answers 404."""
    _jobs(request).cancel(job_id, principal.client_id)
    return outcome_response(202, information("Export cancelled; its files are deleted"))


@router.get("/$export-file/{job_id}/{file_name}", summary="One NDJSON file of a completed bulk export")
def export_file(job_id: str, file_name: str, request: Request, principal: Exporter) -> Response:
    """The file, streamed (``application/fhir+ndjson``); only the client that asked for the export gets it."""
    chunks = _jobs(request).read_file(job_id, file_name, principal.client_id)
    return StreamingResponse(chunks, media_type=NDJSON)
