"""FHIR meaning: validation, interactions, bundles, search requests.

Nothing in this package knows HTTP frameworks or SQL; storage is reached through the
:class:`hub.fhir.repository.FhirRepository` protocol.
"""
