-- SQL scripts run on the package's connection (flow.yaml: connection).
CREATE TABLE IF NOT EXISTS inventory_runs (at TEXT DEFAULT CURRENT_TIMESTAMP);
INSERT INTO inventory_runs DEFAULT VALUES;
