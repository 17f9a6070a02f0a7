"""``hub clients``, ``hub keys`` and ``hub audit``: API clients, key material, the audit trail."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from hub.auth.clients import Client, ClientError, new_client
from hub.auth.roles import Role
from hub.auth.scopes import format_grants
from hub.auth.tokens import SigningKey
from hub.cli.database import open_database
from hub.config import Settings
from hub.privacy import DataKeyring, KeyringError
from hub.store.database import Database
from hub.store.protection import reencrypt, reencrypt_secrets

clients_app = typer.Typer(help="API clients (OAuth2 client credentials).", no_args_is_help=True)
keys_app = typer.Typer(help="Token-signing and personal-data keys.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail (AuditEvent).", no_args_is_help=True)
console = Console(soft_wrap=True)


def register_client(
    database: Database, name: str, role: Role, *, institutions: list[str] | None = None,
    consortia: list[str] | None = None, scopes: list[str] | None = None, jwks: dict | None = None,
) -> tuple[Client, str | None]:
    """Register a client; returns it and its secret (shown once, stored hashed)."""
    client, secret = new_client(name, role, institutions=institutions or (), consortia=consortia or (),
                                scopes=scopes, jwks=jwks)
    with database.clients(write=True) as store:
        store.add(client.record())
    return client, secret


@clients_app.command("create")
def clients_create(
    name: str = typer.Option(..., "--name", help="Who the client is (e.g. 'LIS of 昆山市第一人民医院')"),
    role: Role = typer.Option(..., "--role", help="admin, source-admin, app, governance, reader, clinician-cds"),
    institution: list[str] = typer.Option([], "--institution", help="Organization id it is bound to (repeatable)"),
    consortium: list[str] = typer.Option([], "--consortium", help="Consortium/region Organization id it is limited to"),
    scope: list[str] = typer.Option([], "--scope", help="Granted scopes (default: all its role allows)"),
    jwks_file: Path = typer.Option(None, "--jwks-file", exists=True, help="Public JWKS for private_key_jwt"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (client_id and the one-time secret)"),
) -> None:
    """Register an API client and print its id and secret (the secret is shown only now)."""
    jwks = json.loads(jwks_file.read_text(encoding="utf-8")) if jwks_file else None
    try:
        client, secret = register_client(open_database(), name, role, institutions=institution,
                                         consortia=consortium, scopes=scope or None, jwks=jwks)
    except ClientError as exc:
        console.print(f"[red]Not created:[/] {exc}")
        raise typer.Exit(2) from None
    out = {"client_id": client.client_id, "client_secret": secret, "role": client.role.value,
           "scopes": format_grants(client.grants), "institutions": sorted(client.institutions),
           "consortia": sorted(client.consortia), "auth_method": client.auth_method}
    if as_json:
        typer.echo(json.dumps(out, ensure_ascii=False))
        return
    for key, value in out.items():
        console.print(f"{key:13} {value}")
    if secret:
        console.print("[yellow]Store the secret now: the hub keeps only its hash.[/]")


@clients_app.command("list")
def clients_list() -> None:
    """List the registered clients (never their secrets)."""
    table = Table("client_id", "name", "role", "institutions", "consortia", "auth", "active")
    with open_database().clients(write=False) as store:
        for record in store.all():
            c = Client.from_record(record)
            table.add_row(c.client_id, c.name, c.role.value, ",".join(sorted(c.institutions)),
                          ",".join(sorted(c.consortia)), c.auth_method, "yes" if c.active else "no")
    console.print(table)


@clients_app.command("disable")
def clients_disable(client_id: str = typer.Argument(..., help="The client to disable")) -> None:
    """Disable a client: no new tokens (current ones expire within their lifetime)."""
    with open_database().clients(write=True) as store:
        if not store.set_active(client_id, False):
            console.print(f"[red]No client[/] {client_id}")
            raise typer.Exit(1)
    console.print(f"Disabled {client_id}")


def _refuse_existing(output: Path) -> None:
    """Key files are never overwritten (the data they protect would become unreadable)."""
    if output.exists():
        console.print(f"[red]{output} exists; not overwritten[/]")
        raise typer.Exit(1)


@keys_app.command("signing-key")
def keys_signing_key(output: Path = typer.Option(..., "--output", help="Where to write the PEM (mode 0600)")) -> None:
    """Generate a token-signing key (EC P-256) for HUB_SIGNING_KEY_FILE."""
    _refuse_existing(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.touch(mode=0o600)
    output.write_bytes(SigningKey.generate_pem())
    console.print(f"wrote {output}: set HUB_SIGNING_KEY_FILE={output}")


@keys_app.command("data-keys")
def keys_data_keys(output: Path = typer.Option(..., "--output", help="Where to write the keyring (mode 0600)")) -> None:
    """Generate a personal-data keyring (AES-256-GCM key + blind-index key) for HUB_DATA_KEYS_FILE."""
    _refuse_existing(output)
    DataKeyring.generate().save(output)
    console.print(f"wrote {output}: set HUB_DATA_KEYS_FILE={output}")


@keys_app.command("rotate")
def keys_rotate(
    keys_file: Path = typer.Option(..., "--keys-file", exists=True, help="The keyring file the hub uses"),
) -> None:
    """Add a new active data key to the keyring, then re-encrypt every stored value under it.

    Old keys stay in the file (values are readable throughout); remove one only after a run
    of this command has finished.
    """
    try:
        rotated = DataKeyring.load(keys_file).with_new_active_key()
    except KeyringError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    rotated.save(keys_file)
    settings = Settings.from_env()
    database = Database(settings, keyring=rotated)
    changed = reencrypt(database)
    secrets = reencrypt_secrets(database)
    console.print(f"active key {rotated.active}; re-encrypted {changed} stored versions and {secrets} source "
                  "connections and quarantined rows")


@audit_app.command("purge")
def audit_purge() -> None:
    """Delete AuditEvents older than the retention period (HUB_AUDIT_RETENTION_DAYS, default 180)."""
    settings = Settings.from_env()
    deleted = Database(settings).audit.purge_expired(time.time())
    console.print(f"deleted {deleted} AuditEvents older than {settings.audit_retention_days} days")
