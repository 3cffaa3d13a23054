"""Maintenance of the CRM database's bookkeeping: retention (:mod:`hotcrm.maintenance.retention`)."""
