"""Lead import and the lead rules shared with the REST API."""
