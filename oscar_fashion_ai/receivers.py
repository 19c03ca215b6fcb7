"""Signal receivers: keep the vector index fresh as products and images change."""
