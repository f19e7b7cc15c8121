"""Registration, quality gate, deployment and retraining automation (Definitions in `definitions.py`)."""
