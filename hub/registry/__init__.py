"""The registry: the consortium's institutions (an Organization tree), source systems, schedules.

:mod:`hub.registry.roster` loads the roster (region → consortium → zone → institution) from
YAML or CSV as FHIR R4 ``Organization`` resources linked with ``partOf``.
"""
