"""Export options the DAG file needs at parse time: plain constants, no imports."""

FORMATS = ("json", "ndjson", "csv")
DEFAULT_FORMAT = "json"
DEFAULT_FIELDS = ["Name", "Type", "Industry", "AnnualRevenue", "Phone", "Email", "Website"]
EXPORT_PREFIX = "exports/accounts"
# Consumers must ignore this folder: it holds files still being written or that failed their checks.
TEMP_FOLDER = "_tmp"
EXTENSIONS = {"json": "json", "ndjson": "ndjson", "csv": "csv"}
