-- Case service schema (SQLite). Keep in step with migrations/postgres/0001_cases.sql:
-- same tables, columns, constraints and meaning. Times are Unix seconds (UTC),
-- calendar dates are 'YYYY-MM-DD' text, money is integer fen (1/100 yuan),
-- flags are 0/1 integers.

CREATE TABLE organisations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL UNIQUE,
    kind        TEXT    NOT NULL CHECK (kind IN ('peoples_committee','industry','court','special_invited','lawyer','arbitration')),
    district    TEXT    NOT NULL,
    street      TEXT    NOT NULL DEFAULT '',
    online      INTEGER NOT NULL DEFAULT 0 CHECK (online IN (0,1)),
    created_at  INTEGER NOT NULL
);

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT    NOT NULL UNIQUE,
    display_name  TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('admin','triage','org_admin','mediator','judge','clerk')),
    org_id        INTEGER REFERENCES organisations(id),
    password_hash TEXT    NOT NULL,
    active        INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0,1)),
    created_at    INTEGER NOT NULL
);

CREATE TABLE login_sessions (
    token_hash  TEXT    PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    client_addr TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX login_sessions_user ON login_sessions(user_id);

CREATE TABLE mediators (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id      INTEGER NOT NULL REFERENCES organisations(id),
    user_id     INTEGER UNIQUE REFERENCES users(id),
    name        TEXT    NOT NULL,
    specialties TEXT    NOT NULL DEFAULT '',
    status      TEXT    NOT NULL DEFAULT 'active' CHECK (status IN ('active','inactive','suspended')),
    created_at  INTEGER NOT NULL
);
CREATE INDEX mediators_org ON mediators(org_id);

CREATE TABLE case_counters (
    year INTEGER PRIMARY KEY,
    last INTEGER NOT NULL
);

CREATE TABLE disputes (
    id                       INTEGER PRIMARY KEY AUTOINCREMENT,
    case_number              TEXT    NOT NULL UNIQUE,
    category                 TEXT    NOT NULL,
    description              TEXT    NOT NULL,
    amount_fen               INTEGER,
    status                   TEXT    NOT NULL CHECK (status IN ('registered','triaged','accepted','in_mediation','agreement_reached','failed','withdrawn','confirmation_applied','confirmation_accepted','confirmed','rejected')),
    org_id                   INTEGER REFERENCES organisations(id),
    mediator_id              INTEGER REFERENCES mediators(id),
    is_public                INTEGER NOT NULL DEFAULT 0 CHECK (is_public IN (0,1)),
    registered_by            INTEGER REFERENCES users(id),
    registered_at            INTEGER NOT NULL,
    triaged_at               INTEGER,
    accepted_at              INTEGER,
    mediator_confirmed_at    INTEGER,
    mediation_started_at     INTEGER,
    concluded_at             INTEGER,
    outcome                  TEXT CHECK (outcome IN ('agreement','failed','withdrawn')),
    failure_reason           TEXT,
    withdrawal_reason        TEXT,
    extension_days           INTEGER NOT NULL DEFAULT 0,
    confirmation_applied_at  INTEGER,
    confirmation_accepted_at INTEGER,
    ruled_at                 INTEGER,
    ruling_note              TEXT,
    ruling_extended          INTEGER NOT NULL DEFAULT 0 CHECK (ruling_extended IN (0,1)),
    version                  INTEGER NOT NULL DEFAULT 0,
    updated_at               INTEGER NOT NULL
);
CREATE INDEX disputes_status ON disputes(status);
CREATE INDEX disputes_org ON disputes(org_id);
CREATE INDEX disputes_mediator ON disputes(mediator_id);
CREATE INDEX disputes_registered_at ON disputes(registered_at);

CREATE TABLE parties (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    dispute_id  INTEGER NOT NULL REFERENCES disputes(id),
    kind        TEXT    NOT NULL CHECK (kind IN ('applicant','respondent','agent')),
    name        TEXT    NOT NULL,
    id_number   TEXT,
    phone       TEXT,
    represents  INTEGER REFERENCES parties(id)
);
CREATE INDEX parties_dispute ON parties(dispute_id);

CREATE TABLE dispute_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    dispute_id  INTEGER NOT NULL REFERENCES disputes(id),
    at          INTEGER NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    from_status TEXT    NOT NULL,
    to_status   TEXT    NOT NULL,
    detail      TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX dispute_events_dispute ON dispute_events(dispute_id);

CREATE TABLE triage_notices (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    dispute_id   INTEGER NOT NULL REFERENCES disputes(id),
    org_id       INTEGER NOT NULL REFERENCES organisations(id),
    notified_at  INTEGER NOT NULL,
    due_at       INTEGER NOT NULL,
    responded_at INTEGER,
    response     TEXT CHECK (response IN ('accepted','rerouted','withdrawn'))
);
CREATE INDEX triage_notices_dispute ON triage_notices(dispute_id);

CREATE TABLE mediation_sessions (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    dispute_id       INTEGER NOT NULL REFERENCES disputes(id),
    room             TEXT    NOT NULL UNIQUE,
    scheduled_at     INTEGER NOT NULL,
    duration_minutes INTEGER NOT NULL,
    status           TEXT    NOT NULL DEFAULT 'scheduled' CHECK (status IN ('scheduled','held','cancelled')),
    created_by       TEXT    NOT NULL,
    created_at       INTEGER NOT NULL
);
CREATE INDEX mediation_sessions_dispute ON mediation_sessions(dispute_id);

CREATE TABLE session_participants (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id          INTEGER NOT NULL REFERENCES mediation_sessions(id),
    role                TEXT    NOT NULL CHECK (role IN ('mediator','applicant','respondent','agent','observer')),
    party_id            INTEGER REFERENCES parties(id),
    pid                 TEXT    NOT NULL,
    name                TEXT    NOT NULL,
    invite_tid          TEXT    NOT NULL UNIQUE,
    invite_expires_at   INTEGER NOT NULL,
    joined_at           INTEGER,
    left_at             INTEGER,
    recording_consent   INTEGER CHECK (recording_consent IN (0,1)),
    consent_at          INTEGER,
    identity_method     TEXT,
    identity_checked_by TEXT,
    identity_checked_at INTEGER
);
CREATE INDEX session_participants_session ON session_participants(session_id);

CREATE TABLE recordings (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id       INTEGER NOT NULL REFERENCES mediation_sessions(id),
    dispute_id       INTEGER NOT NULL REFERENCES disputes(id),
    file_path        TEXT    NOT NULL,
    manifest_path    TEXT    NOT NULL,
    integrity_sha256 TEXT    NOT NULL,
    size_bytes       INTEGER NOT NULL,
    media_type       TEXT    NOT NULL,
    started_at       INTEGER NOT NULL,
    ended_at         INTEGER NOT NULL,
    created_at       INTEGER NOT NULL
);
CREATE INDEX recordings_dispute ON recordings(dispute_id);

CREATE TABLE agreements (
    dispute_id  INTEGER PRIMARY KEY REFERENCES disputes(id),
    kind        TEXT    NOT NULL CHECK (kind IN ('pdf','text')),
    filename    TEXT    NOT NULL,
    content     BLOB    NOT NULL,
    sha256      TEXT    NOT NULL,
    uploaded_by TEXT    NOT NULL,
    uploaded_at INTEGER NOT NULL
);

CREATE TABLE agreement_signatures (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    dispute_id  INTEGER NOT NULL REFERENCES disputes(id),
    party_id    INTEGER NOT NULL REFERENCES parties(id),
    signed_at   INTEGER NOT NULL,
    method      TEXT    NOT NULL,
    recorded_by TEXT    NOT NULL,
    UNIQUE (dispute_id, party_id)
);

CREATE TABLE trainings (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    held_on    TEXT    NOT NULL,
    topic      TEXT    NOT NULL,
    organiser  TEXT    NOT NULL,
    attendance INTEGER NOT NULL CHECK (attendance >= 0),
    org_id     INTEGER REFERENCES organisations(id),
    created_by TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT    NOT NULL,
    recipient  TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    body       TEXT    NOT NULL,
    dedupe_key TEXT    UNIQUE,
    created_at INTEGER NOT NULL,
    sent_at    INTEGER,
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX outbox_pending ON outbox(sent_at);

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    actor       TEXT    NOT NULL,
    actor_role  TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    object_type TEXT    NOT NULL,
    object_id   TEXT    NOT NULL,
    outcome     TEXT    NOT NULL CHECK (outcome IN ('ok','denied')),
    detail      TEXT    NOT NULL DEFAULT '',
    client_addr TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_at ON audit_log(at);

-- The audit log is append-only (SPC recording provisions art. 15: nobody may delete or alter).
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
