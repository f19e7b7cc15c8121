"""Training domain: partitions synced from config and data, the training assets, their run config and runner."""
