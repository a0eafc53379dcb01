-- The collector keeps the fleet (every machine, its totals and last report) in memory and reads
-- only what changed since its last read. Every write of a machine row takes the next number of
-- `fleet_clock.seq` (writers are serialised, so numbers are given in commit order); every
-- write to a machine's totals also writes its row (the ingest cursor). Any change of sites or
-- power profiles bumps `fleet_clock.catalog` and the reader reloads everything.
ALTER TABLE machines ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;

CREATE TABLE fleet_clock (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    seq     INTEGER NOT NULL,
    catalog INTEGER NOT NULL
);
INSERT INTO fleet_clock (id, seq, catalog) VALUES (1, 0, 0);

CREATE TRIGGER machines_added AFTER INSERT ON machines
BEGIN
    UPDATE fleet_clock SET seq = seq + 1 WHERE id = 1;
    UPDATE machines SET change_seq = (SELECT seq FROM fleet_clock WHERE id = 1) WHERE id = NEW.id;
END;

CREATE TRIGGER machines_changed AFTER UPDATE ON machines
    WHEN NEW.change_seq = OLD.change_seq
BEGIN
    UPDATE fleet_clock SET seq = seq + 1 WHERE id = 1;
    UPDATE machines SET change_seq = (SELECT seq FROM fleet_clock WHERE id = 1) WHERE id = NEW.id;
END;

CREATE TRIGGER sites_added AFTER INSERT ON sites
BEGIN UPDATE fleet_clock SET catalog = catalog + 1 WHERE id = 1; END;
CREATE TRIGGER sites_changed AFTER UPDATE ON sites
BEGIN UPDATE fleet_clock SET catalog = catalog + 1 WHERE id = 1; END;
CREATE TRIGGER sites_removed AFTER DELETE ON sites
BEGIN UPDATE fleet_clock SET catalog = catalog + 1 WHERE id = 1; END;
CREATE TRIGGER power_profiles_added AFTER INSERT ON power_profiles
BEGIN UPDATE fleet_clock SET catalog = catalog + 1 WHERE id = 1; END;
CREATE TRIGGER power_profiles_changed AFTER UPDATE ON power_profiles
BEGIN UPDATE fleet_clock SET catalog = catalog + 1 WHERE id = 1; END;
CREATE TRIGGER power_profiles_removed AFTER DELETE ON power_profiles
BEGIN UPDATE fleet_clock SET catalog = catalog + 1 WHERE id = 1; END;
