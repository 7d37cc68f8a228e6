"""xta_schemas."""
