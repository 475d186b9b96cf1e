"""Reports: one SQL GROUP BY per report, shaped for pages, JSON, charts and downloads."""
