"""Per-vendor source adapters (plugins of the ``hub.adapters`` entry-point group).

An adapter reads a source system and emits canonical source records; it knows nothing
of FHIR storage. The contract arrives with the ingest issue (``adapters/base.py``).
"""
