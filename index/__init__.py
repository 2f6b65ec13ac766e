"""Scripts that build and benchmark product-retrieval indexes (they import `llmint`)."""
