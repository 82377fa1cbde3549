"""qserv-py: a distributed, sharded SQL database for astronomical catalogs."""

__version__ = "0.1.0"
