-- The collectors keep the fleet (every machine, its totals and last report) in memory and read
-- only what changed since their last read. A machine row records the transaction that last
-- wrote it; every write to a machine's totals also writes its row (the ingest cursor), so a
-- changed row is all a reader needs to find. Names of sites and power profiles live in their
-- own tables: any change there bumps `fleet_clock.catalog` and readers reload everything.
ALTER TABLE machines ADD COLUMN changed_xid xid8 NOT NULL DEFAULT pg_current_xact_id();

CREATE FUNCTION greenops_machine_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.changed_xid := pg_current_xact_id();
    RETURN NEW;
END $$;

CREATE TRIGGER machines_changed BEFORE UPDATE ON machines
    FOR EACH ROW EXECUTE FUNCTION greenops_machine_changed();

CREATE TABLE fleet_clock (
    id      SMALLINT PRIMARY KEY CHECK (id = 1),
    catalog BIGINT NOT NULL
);
INSERT INTO fleet_clock (id, catalog) VALUES (1, 0);

CREATE FUNCTION greenops_catalog_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE fleet_clock SET catalog = catalog + 1 WHERE id = 1;
    RETURN NULL;
END $$;

CREATE TRIGGER sites_changed AFTER INSERT OR UPDATE OR DELETE ON sites
    FOR EACH STATEMENT EXECUTE FUNCTION greenops_catalog_changed();
CREATE TRIGGER power_profiles_changed AFTER INSERT OR UPDATE OR DELETE ON power_profiles
    FOR EACH STATEMENT EXECUTE FUNCTION greenops_catalog_changed();
