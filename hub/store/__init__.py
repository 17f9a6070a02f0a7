"""The SQL implementation of the FHIR repository (SQLAlchemy 2 Core)."""
