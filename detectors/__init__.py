"""Pure detection: events in, findings and incidents out. No I/O, no clocks, no network."""
