"""Alert sinks: where alerts go once the engine raises them."""
