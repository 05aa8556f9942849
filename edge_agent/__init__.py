"""The gate application: item assembly, verification, decision, actuation, journal."""
