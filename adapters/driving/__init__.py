"""The driving side: what drives the application (the HTTP API, the CLI, the dev stack and
the demo)."""
