"""The session dialects (registry.py), the MySQL dialect (mysql.py) and the MySQL forms (forms.py)."""
