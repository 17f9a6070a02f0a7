"""The app factory: the only place that knows every router."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException

from hub import __version__
from hub.api import (
    audit,
    auth_routes,
    bulk_routes,
    dashboard_routes,
    empi_routes,
    fhir_routes,
    governance_routes,
    recognition_routes,
    sources_routes,
    subscriptions_routes,
    telediagnosis_routes,
    terminology_routes,
)
from hub.api.audit import AuditMiddleware
from hub.api.http import (
    CatchAllMiddleware,
    http_error_handler,
    hub_error_handler,
    validation_error_handler,
)
from hub.api.security import Security
from hub.config import Settings
from hub.dashboards.service import Dashboards, DashboardWorker
from hub.empi.engine import Engine
from hub.empi.worker import EmpiWorker
from hub.errors import HubError, StorageError
from hub.exports.jobs import ExportJobs
from hub.exports.worker import ExportWorker
from hub.recognition.service import install as install_recognition
from hub.store.database import Database
from hub.subscriptions.delivery import Deliverer
from hub.subscriptions.matcher import SubscriptionMatcher
from hub.subscriptions.worker import SubscriptionWorker
from hub.telediagnosis.service import Telediagnosis
from hub.telediagnosis.sla import TeleWorkers

log = logging.getLogger("hub.api")


def create_app(settings: Settings | None = None, database: Database | None = None) -> FastAPI:
    """Build the hub's ASGI app (the database is opened here, closed on shutdown)."""
    settings = settings or Settings.from_env()
    security = Security.create(settings)  # refuses production without a signing key
    database = database or Database(settings)
    empi = Engine(database, settings=settings)  # refuses unreadable matching rules at start
    recognition = install_recognition(database)  # results are marked HR as they are written
    workers = []
    if settings.empi_worker:
        workers.append(EmpiWorker(empi))
    if settings.subscription_worker:
        workers.append(SubscriptionWorker(SubscriptionMatcher(database, endpoints=settings.subscription_endpoints),
                                          Deliverer.from_settings(database, settings)))
    telediagnosis = Telediagnosis(database)
    if settings.tele_worker:
        workers.append(TeleWorkers(telediagnosis, sweep_seconds=settings.tele_sweep_seconds))
    dashboards = Dashboards(database)
    if settings.dashboard_worker:
        workers.append(DashboardWorker(dashboards))
    exports = ExportJobs(database, settings)
    export_worker = ExportWorker(exports) if settings.export_worker else None
    if export_worker is not None:
        workers.append(export_worker)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        database.refresh_statistics(force=True)
        try:  # build the search registry before serving (a database still starting is not fatal)
            with database.unit_of_work(write=False) as repository:
                database.search_parameters.current(repository)
            dashboards.install_measures()  # the indicators' Measures, as the hub defines them
        except StorageError:
            log.warning("database unreachable at start-up; requests will get 503 until it answers")
        database.audit.start()
        for worker in workers:
            worker.start()
        yield
        for worker in workers:
            worker.stop()
        database.dispose()

    app = FastAPI(
        title="Regional health-data hub",
        version=__version__,
        description="区域医疗健康数据中心 — FHIR R4 store and consortium services.",
        lifespan=lifespan,
        # Swagger UI and ReDoc load their scripts from a CDN; the hub runs on intranets.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.database = database
    app.state.security = security
    app.state.empi = empi
    app.state.recognition = recognition
    app.state.telediagnosis = telediagnosis
    app.state.dashboards = dashboards
    app.state.exports = exports
    app.state.export_worker = export_worker
    app.add_exception_handler(HubError, hub_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_middleware(AuditMiddleware, audit=database.audit)
    app.add_middleware(CatchAllMiddleware)
    app.include_router(auth_routes.router)
    app.include_router(audit.router)
    app.include_router(sources_routes.router)
    app.include_router(governance_routes.router)
    app.include_router(terminology_routes.router)
    app.include_router(empi_routes.router)
    app.include_router(empi_routes.fhir_router)
    app.include_router(bulk_routes.router)
    app.include_router(recognition_routes.router)
    app.include_router(telediagnosis_routes.router)
    app.include_router(subscriptions_routes.router)
    app.include_router(dashboard_routes.fhir_router)
    app.include_router(dashboard_routes.router)
    app.include_router(fhir_routes.router)

    @app.get("/health", tags=["service"], summary="Liveness and database check")
    def health(request: Request) -> JSONResponse:
        """``{"status": "ok"}`` when the database answers, 503 otherwise."""
        try:
            with request.app.state.database.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception:
            return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
        return JSONResponse({"status": "ok", "database": "ok", "version": __version__})

    return app
