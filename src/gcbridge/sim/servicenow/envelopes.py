"""The bodies a ServiceNow instance answers with, byte for byte where the spec has them.

Each constant cites the spec table (``spec/servicenow-api.md`` §1.2, §2, §3). Bodies marked *inferred* have no
observed original; they follow the documented envelope shape so that a client parsing the envelope works.
"""

from __future__ import annotations

from typing import Any, Final

JsonBody = dict[str, Any]

_DEBUG_HINT: Final = (
    " Check logs for error trace or enable glide.rest.debug property to verify REST request processing"
)


def failure(message: str, detail: str | None) -> JsonBody:
    """The error envelope used by every REST API of an instance."""
    return {"error": {"message": message, "detail": detail}, "status": "failure"}


def not_authenticated() -> JsonBody:
    return failure("User Not Authenticated", "Required to provide Auth information")


def invalid_table(table: str) -> JsonBody:
    return failure(f"Invalid table {table}", None)


def no_record_found() -> JsonBody:
    return failure("No Record found", "Record doesn't exist or ACL restricts the record retrieval")


def acl_write_denied() -> JsonBody:
    return failure("Operation Failed", "ACL Exception Update Failed due to security constraints")


def acl_read_denied() -> JsonBody:
    return failure("Insufficient rights to query records", None)


def unknown_uri() -> JsonBody:
    return failure("Requested URI does not represent any resource", None)


def method_not_supported(method: str) -> JsonBody:
    return failure("Method not Supported", f"{method} method not supported for API")


def server_exception(exception_text: str) -> JsonBody:
    return failure(exception_text, exception_text + _DEBUG_HINT)


TRANSACTION_CANCELLED: Final = "Transaction cancelled: maximum execution time exceeded"


def transaction_cancelled() -> JsonBody:
    return server_exception(TRANSACTION_CANCELLED)


def rate_limited(limit: int, api_name: str) -> JsonBody:
    return failure("Rate limit exceeded", f"Rate limit of {limit} requests per hour for {api_name} exceeded")


def pool_full() -> JsonBody:
    """Inferred: the semaphore pool's 429 has no documented body; only its lack of headers is known."""
    return failure(
        "Too many requests", "Maximum number of concurrent requests exceeded for semaphore API_INT"
    )


def bad_request_body(detail: str) -> JsonBody:
    """Inferred wording for unreadable request bodies (bad JSON, oversize)."""
    return failure("Exception while reading request", detail)


OAUTH_FAILURE: Final[JsonBody] = {"error_description": "access_denied", "error": "server_error"}


def truncated_list_body(partial_rows_json: str) -> str:
    """The 200 answer of a list GET whose transaction hit its quota mid-stream (spec §3.3, KB0778443)."""
    return (
        '{"result":['
        + partial_rows_json
        + '],"error":{"detail":"'
        + TRANSACTION_CANCELLED
        + _DEBUG_HINT
        + '","message":"'
        + TRANSACTION_CANCELLED
        + '"},"status":"failure"}'
    )


BAD_GATEWAY_HTML: Final = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)

SERVICE_UNAVAILABLE_HTML: Final = (
    "<html>\r\n<head><title>503 Service Unavailable</title></head>\r\n<body>\r\n"
    "<center><h1>503 Service Unavailable</h1></center>\r\n"
    "<p>The server is temporarily unable to service your request. Please try again later.</p>\r\n"
    "</body>\r\n</html>\r\n"
)

HIBERNATING_HTML: Final = (
    '<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8"><title>Instance Hibernating page</title>'
    "</head>\n<body>\n<h1>Your instance is hibernating</h1>\n"
    "<p>Developer instances hibernate after a period of inactivity. Sign in to the developer portal to wake "
    "your instance up.</p>\n</body>\n</html>\n"
)
