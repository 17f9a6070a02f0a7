"""Helpers shared by the search tests: load fixtures in one transaction, read searchset Bundles."""

from __future__ import annotations

from collections.abc import Iterable

import httpx


def load(fhir: httpx.Client, resources: Iterable[dict]) -> dict:
    """PUT every resource (client-chosen ids) in one transaction Bundle; returns the response Bundle."""
    entries = [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources
    ]
    response = fhir.post("", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert response.status_code == 200, response.text
    return response.json()


def base_url(fhir: httpx.Client) -> str:
    """The FHIR base of the test server, e.g. ``http://127.0.0.1:1234/fhir``."""
    return str(fhir.base_url).rstrip("/")


def searchset(response: httpx.Response) -> dict:
    """The searchset Bundle of a successful search response."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json"), response.headers
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset", bundle
    return bundle


def search(fhir: httpx.Client, path: str, params: dict | list | None = None) -> dict:
    """``GET [base]/path`` (a query may be part of ``path``) → its searchset Bundle."""
    return searchset(fhir.get(path, params=params))


def entries(bundle: dict, mode: str = "match") -> list[dict]:
    """The resources of the entries with ``search.mode == mode``, in Bundle order."""
    return [e["resource"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == mode]


def ids(bundle: dict, mode: str = "match") -> list[str]:
    """The ids of the entries with ``search.mode == mode``, in Bundle order."""
    return [r["id"] for r in entries(bundle, mode)]


def refs(bundle: dict, mode: str = "match") -> list[str]:
    """``Type/id`` of the entries with ``search.mode == mode``, in Bundle order."""
    return [f"{r['resourceType']}/{r['id']}" for r in entries(bundle, mode)]


def link(bundle: dict, relation: str) -> str | None:
    """The URL of the Bundle link with ``relation``, if any."""
    return next((item["url"] for item in bundle.get("link", []) if item["relation"] == relation), None)


def all_pages(fhir: httpx.Client, first: dict, limit: int = 50) -> list[dict]:
    """``first`` and every page reached by following ``next`` links."""
    pages = [first]
    while (url := link(pages[-1], "next")) is not None:
        assert len(pages) < limit, "next links do not end"
        pages.append(searchset(fhir.get(url)))
    return pages


def latest(transaction_response: dict) -> str:
    """The latest ``lastModified`` of a transaction response (entries of one Bundle may differ by milliseconds)."""
    return max(e["response"]["lastModified"] for e in transaction_response["entry"])
