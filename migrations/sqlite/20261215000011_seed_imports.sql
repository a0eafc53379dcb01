-- Machines brought over from the original Python GreenOps by `greenops import-seed`: the
-- original's machine id each one came from, so a re-run adds nothing, and whether its history
-- was imported to the end (an import that stopped half-way resumes the machine). No foreign
-- key: the row is written before the machine, so that a stop in between still resumes.
CREATE TABLE seed_imports (
    seed_id        TEXT PRIMARY KEY,
    machine_id     TEXT NOT NULL,
    started_at_ms  INTEGER NOT NULL,
    finished_at_ms INTEGER
);
