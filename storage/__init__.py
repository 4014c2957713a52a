"""storage: the only code that knows where bytes live (see ARCHITECTURE.md)."""
