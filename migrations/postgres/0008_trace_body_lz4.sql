-- A trace body is a little over Postgres's 2 KB TOAST threshold, so each one
-- is compressed on insert; lz4 takes about a fifth less insert time than the
-- default pglz (bench/README.md, "Trace store"). A server built without lz4
-- keeps pglz. Only new rows are affected.
DO $$
BEGIN
    ALTER TABLE traces ALTER COLUMN body SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'lz4 is not available on this server: trace bodies stay compressed with pglz';
END $$;
