"""The hub's one small error tree.

Every error knows its HTTP status and its OperationOutcome issue code, so any layer
can raise it and the API layer turns it into an OperationOutcome without guessing.
Messages are masked (ID and phone numbers) when the error is made.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hub.privacy import mask_text


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome issue: what went wrong, and where (FHIRPath-like expression)."""

    code: str
    diagnostics: str
    severity: str = "error"
    expression: tuple[str, ...] = field(default_factory=tuple)

    def prefixed(self, prefix: str) -> "Issue":
        """The same issue with every expression placed under ``prefix``.

        A leading resource type is dropped, so ``Patient.name[0]`` under
        ``Bundle.entry[2].resource`` becomes ``Bundle.entry[2].resource.name[0]``.
        """
        if not self.expression:
            return Issue(self.code, self.diagnostics, self.severity, (prefix,))
        located = []
        for expression in self.expression:
            head, _, rest = expression.partition(".")
            if head.isalpha() and head[:1].isupper():  # a leading resource type
                located.append(f"{prefix}.{rest}" if rest else prefix)
            else:
                located.append(f"{prefix}.{expression}")
        return Issue(self.code, self.diagnostics, self.severity, tuple(located))


class HubError(Exception):
    """Base of all errors the hub raises on purpose."""

    status: int = 500
    code: str = "exception"

    def __init__(
        self,
        message: str,
        *,
        expression: str | None = None,
        issues: list[Issue] | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        message = mask_text(message)
        super().__init__(message)
        self.message = message
        #: HTTP headers the response must carry (``WWW-Authenticate``, ``Retry-After``).
        self.headers: dict[str, str] = dict(headers or {})
        if status is not None:
            self.status = status
        if issues:
            self.issues = [Issue(i.code, mask_text(i.diagnostics), i.severity, i.expression) for i in issues]
        else:
            expr = (expression,) if expression else ()
            self.issues = [Issue(self.code, message, "error", expr)]

    def prefixed(self, prefix: str, message_prefix: str, bare: str | None = None) -> "HubError":
        """A copy of this error located under ``prefix`` (used for bundle entries).

        Issues with no expression are placed at ``bare`` (default: ``prefix``).
        """
        err = type(self).__new__(type(self))
        HubError.__init__(
            err,
            f"{message_prefix}: {self.message}",
            issues=[
                Issue(
                    i.code,
                    f"{message_prefix}: {i.diagnostics}",
                    i.severity,
                    i.prefixed(prefix).expression if i.expression else (bare or prefix,),
                )
                for i in self.issues
            ],
            status=self.status,
            headers=self.headers,
        )
        return err


class InvalidRequest(HubError):
    """The request is malformed: bad JSON, bad parameter, wrong resource type."""

    status = 400
    code = "invalid"


class ResourceInvalid(HubError):
    """The resource fails structural or required-binding validation."""

    status = 400
    code = "structure"


class BusinessRuleViolation(HubError):
    """The resource is valid FHIR but breaks one of the hub's rules."""

    status = 422
    code = "business-rule"


class NotSupported(HubError):
    """The interaction, parameter or format is not supported by this server."""

    status = 400
    code = "not-supported"


class NotFound(HubError):
    """The resource type, resource, version or route does not exist."""

    status = 404
    code = "not-found"


class Gone(HubError):
    """The resource existed and was deleted."""

    status = 410
    code = "deleted"


class MethodNotAllowed(HubError):
    """The HTTP method is not allowed on this URL."""

    status = 405
    code = "not-supported"


class NotAcceptable(HubError):
    """The client accepts no format this server produces."""

    status = 406
    code = "not-supported"


class UnsupportedMediaType(HubError):
    """The request body has a content type the server does not read."""

    status = 415
    code = "not-supported"


class PayloadTooLarge(HubError):
    """The request body is over the configured limit."""

    status = 413
    code = "too-costly"


class PreconditionFailed(HubError):
    """An If-Match version did not match, or a conditional interaction matched too many."""

    status = 412
    code = "conflict"


class MultipleMatches(PreconditionFailed):
    """A conditional interaction's criteria matched more than one resource."""

    code = "multiple-matches"


class Conflict(HubError):
    """The request conflicts with the current state of the server."""

    status = 409
    code = "conflict"


class VersionConflict(Conflict):
    """The stored version changed between read and write (raised by the store)."""


class StorageError(HubError):
    """The database failed in a way the client cannot fix."""

    status = 503
    code = "transient"


class Unauthorized(HubError):
    """No valid access token (or client credentials): 401 with a ``WWW-Authenticate`` challenge."""

    status = 401
    code = "login"

    def __init__(self, message: str, *, error: str = "invalid_token") -> None:
        super().__init__(message, headers={"WWW-Authenticate": f'Bearer realm="hub", error="{error}"'})


class Forbidden(HubError):
    """The principal is known but its role, scopes or institutions do not allow this."""

    status = 403
    code = "forbidden"


class TooManyRequests(HubError):
    """The client is over its request-rate limit: 429 with ``Retry-After``."""

    status = 429
    code = "throttled"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, retry_after))})


class QueryTimeout(HubError):
    """A database query ran past the per-query time limit and was cancelled."""

    status = 503
    code = "timeout"
