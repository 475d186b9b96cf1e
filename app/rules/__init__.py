"""Record rules: value cleaning, who sees which rows and fields, and writing records."""
