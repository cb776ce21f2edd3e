"""decisionengine: run channels of plug-in modules and keep every data product in a DataSpace."""

__version__ = "0.1.0"
