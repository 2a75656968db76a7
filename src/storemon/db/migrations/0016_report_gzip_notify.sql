-- storemon schema, version 16 (issue 15, the API's share of a report's time).
--
-- A finished report's CSV is stored gzip-compressed, once, by the job that computed it: the
-- API sends those bytes as they are to clients that accept gzip (most do) and decompresses
-- them for the others. Before, the CSV was stored as text (compressed again by lz4 inside
-- PostgreSQL) and gzipped by the API for every first response, about 30 ms of a report that
-- otherwise takes 60. EXTERNAL keeps PostgreSQL from compressing the bytes a second time.
-- Reports stored before this version keep their text in ``csv``; new ones leave it NULL.
ALTER TABLE reports ADD COLUMN csv_gzip bytea;
ALTER TABLE reports ALTER COLUMN csv_gzip SET STORAGE EXTERNAL;

-- A report reaching Complete or Failed is announced on the channel ``report_finished``
-- (payload: its id), whatever statement finished it, once the transaction commits: the API's
-- ``GET /get_report?wait=`` sleeps on it instead of the client polling.
CREATE FUNCTION announce_report_finished() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('report_finished', NEW.report_id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER report_finished AFTER UPDATE OF status ON reports
    FOR EACH ROW WHEN (NEW.status IN ('Complete', 'Failed') AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION announce_report_finished();
