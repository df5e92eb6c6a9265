BEGIN;
SELECT plan(2);
SELECT has_extension('consent');
SELECT has_schema('consent');
SELECT * FROM finish();
ROLLBACK;
