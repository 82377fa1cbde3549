"""The czar's HTTP front end: admin and ingest API (see :mod:`czar.http.app`)."""
