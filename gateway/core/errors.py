"""The gateway's exception tree.

Every error the gateway raises on purpose derives from one of two roots::

    GatewayError                     -- something went wrong with a message or a partner
    ├── InboundRefused               -- a partner's message is refused; never retried by us
    │   ├── MalformedInput           -- not parseable, DTD/entities, wrong shape   (code MALFORMED)
    │   ├── OversizeInput            -- larger than the configured cap             (code SIZE)
    │   ├── SchemaInvalid            -- fails the partner's XSD / JSON schema       (code SCHEMA)
    │   ├── BusinessRuleViolated     -- contract business rule broken             (code BUSINESS_RULE)
    │   ├── DuplicateDifferentContent-- id reused for other content  (code DUPLICATE_DIFFERENT_CONTENT)
    │   └── SecurityRefused          -- signature, certificate or timestamp wrong
    │       ├── SignatureInvalid     -- (code SIGNATURE)
    │       ├── CertificateRefused   -- (code CERTIFICATE)
    │       │   ├── CertificateRevoked      -- revoked by its CA, per CRL or OCSP (code CERT_REVOKED)
    │       │   ├── CertificateStatusUnknown-- hard-fail: no fresh CRL/OCSP answer (code CERT_STATUS_UNKNOWN)
    │       │   └── OinMismatch             -- another organisation's OIN (code OIN_TLS_CERTIFICATE,
    │       │                                  OIN_SIGNING_CERTIFICATE, OIN_TO or OIN_FROM)
    │       └── MessageExpired       -- (code EXPIRED)
    ├── DeliveryError                -- an outbound call failed; ``retryable`` says what to do
    │   ├── TransientDelivery        -- retry later (``retry_after_seconds`` when the partner said)
    │   └── PermanentDelivery        -- do not retry; the delivery goes to the dead letters
    └── StoreError                   -- the database failed; retryable (the caller answers 503)
        ├── StoreUnavailable         -- the database is unreachable (connection lost or refused, disk
        │                               full, read-only or locked file); ``cause`` names the driver error
        ├── StoreSchemaMismatch      -- the database has an unknown or newer schema; not retryable
        └── StoreKeyMismatch         -- the configured data keys cannot open the store's sealed
                                        records (a key missing or wrong); not retryable

    ConfigError                      -- a separate root: bad config, rule set or key material;
                                        raised at start-up, never while carrying messages.

Each class's docstring is its default message. Errors carry context (``partner``,
``message_id``, ``stage``) and never personal data: messages name fields and paths, not values.
"""

from __future__ import annotations

__all__ = [
    "GatewayError",
    "InboundRefused",
    "MalformedInput",
    "OversizeInput",
    "SchemaInvalid",
    "BusinessRuleViolated",
    "DuplicateDifferentContent",
    "SecurityRefused",
    "SignatureInvalid",
    "CertificateRefused",
    "MessageExpired",
    "CertificateRevoked",
    "CertificateStatusUnknown",
    "OinMismatch",
    "DeliveryError",
    "TransientDelivery",
    "PermanentDelivery",
    "StoreError",
    "StoreUnavailable",
    "StoreSchemaMismatch",
    "StoreKeyMismatch",
    "ConfigError",
]


class GatewayError(Exception):
    """The gateway could not carry a message."""

    retryable: bool = False
    #: Stable code for fault details and the delivery log.
    code: str = "INTERNAL"

    def __init__(
        self,
        message: str | None = None,
        *,
        partner: str | None = None,
        message_id: str | None = None,
        stage: str | None = None,
        path: str | None = None,
    ) -> None:
        self.message = message or (self.__doc__ or "").strip().splitlines()[0]
        self.partner = partner
        self.message_id = message_id
        self.stage = stage
        self.path = path
        super().__init__(self.message)

    def context(self) -> dict[str, str]:
        """Keys for a log event; never personal data."""
        ctx = {"error": type(self).__name__, "code": self.code}
        for key in ("partner", "message_id", "stage", "path"):
            value = getattr(self, key)
            if value:
                ctx[key] = value
        return ctx


class InboundRefused(GatewayError):
    """The message is refused."""

    #: SOAP faultcode for the ind-wus profile.
    faultcode = "soap:Client"


class MalformedInput(InboundRefused):
    """The message is not well-formed XML or uses forbidden XML features."""

    code = "MALFORMED"


class OversizeInput(InboundRefused):
    """The message is larger than the configured limit."""

    code = "SIZE"


class SchemaInvalid(InboundRefused):
    """The message does not validate against the partner's schema."""

    code = "SCHEMA"


class BusinessRuleViolated(InboundRefused):
    """The message breaks a business rule of the contract."""

    code = "BUSINESS_RULE"

    def __init__(self, message: str | None = None, *, rule: str = "BUSINESS_RULE", **kw: str | None) -> None:
        super().__init__(message, **kw)
        #: The partner-facing code of the broken rule (e.g. BSN_ELFPROEF).
        self.rule = rule


class DuplicateDifferentContent(InboundRefused):
    """The message id was used before for different content."""

    code = "DUPLICATE_DIFFERENT_CONTENT"


class SecurityRefused(InboundRefused):
    """The message failed a security check."""

    faultcode = "wsse:InvalidSecurity"
    code = "SIGNATURE"


class SignatureInvalid(SecurityRefused):
    """The signature is missing, incomplete or does not verify."""

    faultcode = "wsse:FailedCheck"
    code = "SIGNATURE"


class CertificateRefused(SecurityRefused):
    """The certificate is not the one configured for this partner, or is not valid now."""

    faultcode = "wsse:InvalidSecurity"
    code = "CERTIFICATE"


class CertificateRevoked(CertificateRefused):
    """The certificate has been revoked by its CA."""

    faultcode = "wsse:FailedCheck"
    code = "CERT_REVOKED"


class CertificateStatusUnknown(CertificateRefused):
    """The certificate's revocation status is unknown (no fresh CRL or OCSP answer) and the policy is hard-fail."""

    faultcode = "wsse:FailedCheck"
    code = "CERT_STATUS_UNKNOWN"


class OinMismatch(CertificateRefused):
    """An OIN (certificate serialNumber or an address's ?OIN=) is not the configured organisation's."""

    faultcode = "wsse:FailedCheck"
    code = "OIN_MISMATCH"

    #: The codes, one per place an OIN is checked (Digikoppeling WT/WA, contracts revision 2).
    CODES = ("OIN_TLS_CERTIFICATE", "OIN_SIGNING_CERTIFICATE", "OIN_TO", "OIN_FROM")

    def __init__(self, message: str | None = None, *, code: str, **kw: str | None) -> None:
        if code not in self.CODES:
            raise ValueError(f"unknown OIN code {code}")
        super().__init__(message, **kw)
        self.code = code


class MessageExpired(SecurityRefused):
    """The message's timestamp is expired or lies in the future."""

    faultcode = "wsse:MessageExpired"
    code = "EXPIRED"


class DeliveryError(GatewayError):
    """An outbound call failed."""


class TransientDelivery(DeliveryError):
    """The partner is temporarily unable to take the message; try again later."""

    retryable = True
    code = "TRANSIENT"

    def __init__(self, message: str | None = None, *, retry_after_seconds: float | None = None,
                 http_status: int | None = None, **kw: str | None) -> None:
        super().__init__(message, **kw)
        self.retry_after_seconds = retry_after_seconds
        self.http_status = http_status


class PermanentDelivery(DeliveryError):
    """The partner refused the message for good; it goes to the dead letters."""

    code = "PERMANENT"

    def __init__(self, message: str | None = None, *, http_status: int | None = None,
                 receipt: bytes | None = None, **kw: str | None) -> None:
        super().__init__(message, **kw)
        self.http_status = http_status
        self.receipt = receipt


class StoreError(GatewayError):
    """The database is unavailable or failed; the message was not stored."""

    retryable = True
    code = "STORE"


class StoreUnavailable(StoreError):
    """The store is unreachable."""

    code = "STORE_UNAVAILABLE"

    def __init__(self, cause: str, *, since: float | None = None) -> None:
        #: The driver's error class (and for SQLite its one-line reason); never personal data.
        self.cause = cause
        #: When the store was first seen unreachable (epoch seconds), if known.
        self.since = since
        super().__init__(f"the store is unreachable: {cause}")


class StoreSchemaMismatch(StoreError):
    """The database schema version is unknown to this gateway version."""

    retryable = False
    code = "STORE_SCHEMA"


class StoreKeyMismatch(StoreError):
    """The configured data keys cannot open the store's sealed records."""

    retryable = False
    code = "STORE_KEYS"


class ConfigError(Exception):
    """The configuration, a rule set or key material is invalid."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        self.file = file
        self.line = line
        where = f"{file}:{line}: " if file and line else (f"{file}: " if file else "")
        super().__init__(where + message)
