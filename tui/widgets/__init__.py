"""The console's widgets, one per file, each fed by the app and never by the backend."""
