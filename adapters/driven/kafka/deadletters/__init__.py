"""Dead letters read back from the DLQ topics: selecting, listing, counting and replaying them.

The workers write a refused message's original bytes to ``<topic>.dlq`` with the reason in
headers (streams/records.py). Everything here reads those topics; nothing else records dead
letters, so the topics are the one source of truth for operators and for ``/metrics``.

Reading is without a consumer group (it must never move anyone's committed offsets) and
bounded: each partition is read from where the filter can first match (its ``--since``
through ``offsets_for_times``, or a page cursor) to the end the broker reports at the start.
The embedded broker reports that end low (the first offset of its last batch plus one,
DESIGN.md) and answers ``offsets_for_times`` with an earlier offset than asked, so both are
only taken as bounds, and every record is still checked against the filter.
"""
