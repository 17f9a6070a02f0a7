"""HTTP layer: FastAPI routers that adapt requests to the modules below (thin)."""
