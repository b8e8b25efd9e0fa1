"""The HTTP API: customer service, the customer portal, store tablets and read-side clients.

``create_api(service, read_store_url, settings, keys)`` builds the FastAPI app; it holds no
module-level state, so several apps (tests, scale-out) can live in one process.
"""

from adapters.driving.api.app import create_api
from adapters.driving.api.auth import KeyRing, Principal, Role
from adapters.driving.api.settings import ApiSettings

__all__ = ["ApiSettings", "KeyRing", "Principal", "Role", "create_api"]
