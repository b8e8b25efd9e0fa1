"""The read models in PostgreSQL: batches of events in, rows and offsets out, one transaction.

``ReadModelStore.apply`` is the only write path of a live projector. Per batch it loads the
states of every aggregate in the batch in one query (row-locked, so two workers racing on
one aggregate during a rebalance serialize), reduces in memory, merges the changes so each
row is written once, and writes states, rows, consumed offsets and the event-store
position in one transaction, each stage one ``INSERT ... SELECT FROM unnest(...)`` per
table. A redelivered batch changes nothing: reducers skip versions already applied.

``rebuild`` replays ``oms_events`` (as the relay would publish them) into fresh tables and
swaps them in, catching up under an exclusive lock that live batches take shared.
"""
