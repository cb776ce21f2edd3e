"""DataSpace storage backends (data sources)."""
