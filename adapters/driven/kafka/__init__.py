"""Kafka clients: topic names and specs, publishers, provisioning and dead letters."""
