"""Data in and out: import, export, backups and reports."""
