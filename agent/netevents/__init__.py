"""Network events: decoded packets → budgeted events, aggregates and flows."""
