-- The API counts open (Pending or Running) reports on every trigger to bound the queue;
-- this small partial index keeps that count cheap however many finished reports are kept.
CREATE INDEX reports_open ON reports (status) WHERE status IN ('Pending', 'Running');
