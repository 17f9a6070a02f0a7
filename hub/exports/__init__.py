"""FHIR Bulk Data export (``$export``): jobs, their background runs and their NDJSON files.

:mod:`~hub.exports.jobs` is what the API calls (kick-off, status, files, cancel),
:mod:`~hub.exports.planning` turns a request into per-type search criteria,
:mod:`~hub.exports.runner` writes a job's files and :mod:`~hub.exports.worker` runs the
queued jobs in the background of the API process.
"""
