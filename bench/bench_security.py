"""Costs of the security layer per request and per resource (in-process, no database).

Token verification (first use and cached), building an AuditEvent, sealing a Patient that
holds an ID number and a phone (encrypt + serialize), revealing it on read, and the blind
view used for indexing. Run: ``python bench/bench_security.py``.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable

from hub.api.audit import audit_row
from hub.auth.audit import AuditRecord
from hub.auth.principal import Principal
from hub.auth.roles import Role
from hub.auth.tokens import SigningKey, TokenService
from hub.config import Settings
from hub.fhir import jsonio
from hub.fhir.protected import PersonalDataProtector
from hub.privacy import DataKeyring

PATIENT = {
    "resourceType": "Patient", "id": "p1", "meta": {"versionId": "1", "lastUpdated": "2026-11-25T10:00:00Z"},
    "identifier": [{"system": "urn:hub:mrn:org-ks-1", "value": "MRN0001"},
                   {"system": "urn:oid:2.16.156.10011.1.3", "value": "320583196803120015"}],
    "name": [{"text": "张伟", "family": "张", "given": ["伟"]}], "gender": "male", "birthDate": "1968-03-12",
    "telecom": [{"system": "phone", "value": "13912345678"}],
    "address": [{"text": "江苏省苏州市昆山市玉山镇", "city": "昆山市"}],
}


def per_call(label: str, action: Callable[[], object], n: int = 5000) -> dict[str, float]:
    for _ in range(100):
        action()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(n):
            action()
        best = min(best, (time.perf_counter() - start) / n * 1e6)
    return {label: round(best, 1)}


def main() -> None:
    settings = Settings(key_dir=tempfile.mkdtemp())
    tokens = TokenService(SigningKey.from_pem(SigningKey.generate_pem()), settings)
    principal = Principal("bench", Role.APP, {"*": frozenset("rs")})
    issued = [tokens.issue(principal)[0] for _ in range(2000)]
    fresh = iter(issued)  # each verified once: 100 warm-up + 3 x 500 measured < 2000
    cached = issued[0]
    protector = PersonalDataProtector(DataKeyring.generate())
    plain = jsonio.dumps(PATIENT)
    sealed = protector.protect_bytes(plain)
    body = plain * 20

    def audit() -> None:
        record = AuditRecord("GET", "/fhir/Observation", "subject=Patient/p1&code=1558-6", "10.0.0.8",
                             client_id="bench", status=200)
        record.add_patients_from(body)
        audit_row(record)

    results: dict[str, float] = {}
    results |= per_call("token_verify_first_us", lambda: tokens.verify(next(fresh)), n=500)
    results |= per_call("token_verify_cached_us", lambda: tokens.verify(cached))
    results |= per_call("audit_event_build_us", audit)
    results |= per_call("seal_patient_us", lambda: protector.protect_bytes(plain))
    results |= per_call("reveal_patient_us", lambda: protector.reveal_bytes(sealed))
    results |= per_call("reveal_without_tokens_us", lambda: protector.reveal_bytes(plain))
    results |= per_call("blinded_view_us", lambda: protector.blinded(PATIENT))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
