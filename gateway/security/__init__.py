"""Security for the three partner profiles.

- ``keys``: our ``KeyPair`` (loaded once) and each partner's ``PartnerTrust`` (anchors + pinned
  certificates, several at once for rollover); ``check`` refuses with CertificateRefused.
- ``wsse``: WS-Security for ind-wus: ``sign_envelope`` / ``verify_envelope`` (our own checks against
  signature wrapping and for the Timestamp, then python-xmlsec for the cryptography).
- ``xmldsig``: enveloped signatures for duo-xml, and ``message_digest`` (berichtDigest).
- ``dsig``: the python-xmlsec (libxmlsec1) engine under both; keys converted once.
- ``jws``: detached compact JWS for cjib-rest (PS256/RS256/ES256 with ``cryptography``).
- ``tls``: ssl contexts for mutual TLS (TLS 1.2+).
- ``pki``: a throwaway sandbox PKI (``gateway pki init``) and test certificates.

Failures raise SignatureInvalid, CertificateRefused or MessageExpired (gateway.core.errors); their
messages name checks, never message content.
"""
