"""Every measurement in one place: memory, speed and provenance."""
