"""Infrastructure of the running portal: database, serving, protection, operations, locale."""
