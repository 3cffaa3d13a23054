"""The CRM database: models, sessions, migrations, the service layer and the outbox."""
