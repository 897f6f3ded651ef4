"""Database access: engine, session dependency, declarative base, migrations."""
