"""The driven side: what the application drives (event store, relay, read-model store,
Kafka clients, payment providers, the embedded servers)."""
