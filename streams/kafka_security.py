"""Kafka client security from settings: the same SASL/TLS options for every client.

Every consumer, producer and admin client the worker creates is built with
``**client_kwargs(settings)`` (aiokafka's names), so one setting secures all of them.

>>> from streams.settings import Settings
>>> client_kwargs(Settings())
{'security_protocol': 'PLAINTEXT'}
>>> kwargs = client_kwargs(Settings(kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="w",
...                                 kafka_sasl_password="p"))
>>> kwargs["security_protocol"], kwargs["sasl_mechanism"], kwargs["sasl_plain_username"]
('SASL_PLAINTEXT', 'SCRAM-SHA-512', 'w')
"""

from __future__ import annotations

import ssl
from typing import Any

from streams.settings import Settings


def security_protocol(settings: Settings) -> str:
    """The explicit protocol, or the one implied by SASL and TLS settings."""
    if settings.kafka_security_protocol:
        return settings.kafka_security_protocol
    sasl = bool(settings.kafka_sasl_mechanism)
    if uses_tls(settings):
        return "SASL_SSL" if sasl else "SSL"
    return "SASL_PLAINTEXT" if sasl else "PLAINTEXT"


def uses_tls(settings: Settings) -> bool:
    return (settings.kafka_tls or bool(settings.kafka_tls_cafile or settings.kafka_tls_certfile)
            or settings.kafka_security_protocol in ("SSL", "SASL_SSL"))


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """A verifying TLS context (hostname checked) with the configured CA and client certificate."""
    context = ssl.create_default_context(cafile=settings.kafka_tls_cafile or None)
    if settings.kafka_tls_certfile:
        context.load_cert_chain(settings.kafka_tls_certfile, settings.kafka_tls_keyfile,
                                password=settings.kafka_tls_key_password or None)
    return context


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``AIOKafkaConsumer``/``AIOKafkaProducer``/``AIOKafkaAdminClient``."""
    protocol = security_protocol(settings)
    kwargs: dict[str, Any] = {"security_protocol": protocol}
    if protocol.startswith("SASL"):
        kwargs.update(
            sasl_mechanism=settings.kafka_sasl_mechanism or "PLAIN",
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=settings.kafka_sasl_password,
        )
    if protocol.endswith("SSL"):
        kwargs["ssl_context"] = ssl_context(settings)
    return kwargs


def faust_credentials(settings: Settings) -> Any:
    """The same security as a Faust ``broker_credentials`` object (``None`` for plaintext)."""
    import faust

    protocol = security_protocol(settings)
    context = ssl_context(settings) if protocol.endswith("SSL") else None
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(username=settings.kafka_sasl_username, password=settings.kafka_sasl_password,
                                     ssl_context=context, mechanism=settings.kafka_sasl_mechanism or "PLAIN")
    return faust.SSLCredentials(context) if context is not None else None
