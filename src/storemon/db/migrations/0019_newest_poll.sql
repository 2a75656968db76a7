-- storemon schema, version 19 (issue 15): the newest poll of all stores, kept in one row.
--
-- ``POST /trigger_report`` with an ``as_of`` checks it against the supported range, which
-- starts from the newest poll of all stores: ``max(newest_poll_us)`` over ``stores`` is a
-- scan of every store (8-20 ms at 14,000 stores on a busy machine, several times that at
-- 100,000), paid by every such trigger. An index on the column would cost every store
-- update its HOT path; instead the statement triggers below keep the maximum next to the
-- aggregates' version, in the row every writer of ``stores`` already locks (migration
-- 0004), so keeping it adds no lock and no ordering of its own. Rows are only ever
-- upserted with a newest poll that does not go back; should one go back, or be deleted,
-- the maximum is counted again from the table, so the row always equals the scan.
ALTER TABLE aggregates_version ADD COLUMN newest_poll_us bigint;
UPDATE aggregates_version SET newest_poll_us = (SELECT max(newest_poll_us) FROM stores);

CREATE FUNCTION recount_newest_poll() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE aggregates_version SET newest_poll_us = (SELECT max(newest_poll_us) FROM stores);
    RETURN NULL;
END
$$;

CREATE FUNCTION raise_newest_poll() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    kept bigint;
    new_top bigint;
    old_top bigint;
BEGIN
    SELECT newest_poll_us INTO kept FROM aggregates_version;
    SELECT max(newest_poll_us) INTO new_top FROM new_stores;
    IF TG_OP = 'UPDATE' THEN
        SELECT max(newest_poll_us) INTO old_top FROM old_stores;
        -- the row that held the maximum may have gone back: count again
        IF old_top IS NOT DISTINCT FROM kept AND (new_top IS NULL OR new_top < kept) THEN
            UPDATE aggregates_version
                SET newest_poll_us = (SELECT max(newest_poll_us) FROM stores);
            RETURN NULL;
        END IF;
    END IF;
    IF new_top IS NOT NULL AND (kept IS NULL OR new_top > kept) THEN
        UPDATE aggregates_version SET newest_poll_us = new_top;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER stores_newest_poll_inserted AFTER INSERT ON stores
    REFERENCING NEW TABLE AS new_stores
    FOR EACH STATEMENT EXECUTE FUNCTION raise_newest_poll();
CREATE TRIGGER stores_newest_poll_updated AFTER UPDATE ON stores
    REFERENCING OLD TABLE AS old_stores NEW TABLE AS new_stores
    FOR EACH STATEMENT EXECUTE FUNCTION raise_newest_poll();
CREATE TRIGGER stores_newest_poll_removed AFTER DELETE OR TRUNCATE ON stores
    FOR EACH STATEMENT EXECUTE FUNCTION recount_newest_poll();
