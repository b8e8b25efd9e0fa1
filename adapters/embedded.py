"""Moved to ``adapters.driven.embedded`` and ``adapters.driven.kafka.provisioning``.

A temporary re-export so importers keep working until the import codemod runs.
"""

from adapters.driven.embedded.postgres import EmbeddedPostgres
from adapters.driven.embedded.process import EmbeddedServerError
from adapters.driven.embedded.tansu import EmbeddedKafka, tansu_binary
from adapters.driven.kafka.provisioning import TopicProvisioningError, TopicSpec, provision_topics

__all__ = [
    "EmbeddedKafka",
    "EmbeddedPostgres",
    "EmbeddedServerError",
    "TopicProvisioningError",
    "TopicSpec",
    "provision_topics",
    "tansu_binary",
]
