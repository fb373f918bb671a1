"""Embedded services and process supervision for the single-machine default (`shoka serve`)."""
