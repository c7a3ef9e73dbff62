"""The HTTP API: thin routers over the services in `rag.service`, wire models in `api.schemas`, errors mapped to JSON."""
