"""Pure ML and data code for biodiv: no Dagster or Azure imports (DESIGN section 2)."""
