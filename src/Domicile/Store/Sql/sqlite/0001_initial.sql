-- Region schema v1 (SQLite). Times are Unix milliseconds, flags are 0/1 integers.
-- Tables of small rows looked up by their key are WITHOUT ROWID: one b-tree to walk instead of the
-- key's index and then the table. Items stay rowid tables: their rows of a kilobyte and more would
-- spill into overflow pages (raw inserts measured at a third of the speed).
CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE keks (version INTEGER PRIMARY KEY, sealed BLOB NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE users (
  id TEXT PRIMARY KEY,
  login_index BLOB NOT NULL UNIQUE,
  login_enc BLOB NOT NULL,
  password_hash TEXT NOT NULL,
  country TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  change_seq INTEGER NOT NULL DEFAULT 0,
  state TEXT NOT NULL DEFAULT 'active') WITHOUT ROWID;
-- Data keys live apart from the data so that data backups can leave them out (G6).
CREATE TABLE data_keys (
  user_id TEXT NOT NULL, service TEXT NOT NULL, kek_version INTEGER NOT NULL,
  wrapped BLOB NOT NULL, created_at INTEGER NOT NULL,
  PRIMARY KEY (user_id, service)) WITHOUT ROWID;
CREATE INDEX data_keys_kek ON data_keys (kek_version);
CREATE TABLE items (
  user_id TEXT NOT NULL, service TEXT NOT NULL, collection TEXT NOT NULL, key_index BLOB NOT NULL,
  head BLOB NOT NULL, content BLOB, blob_id TEXT, size INTEGER NOT NULL, version INTEGER NOT NULL,
  deleted INTEGER NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
  PRIMARY KEY (user_id, service, collection, key_index));
CREATE INDEX items_changes ON items (user_id, version);
CREATE TABLE blob_chunks (blob_id TEXT NOT NULL, idx INTEGER NOT NULL, data BLOB NOT NULL, created_at INTEGER NOT NULL, PRIMARY KEY (blob_id, idx));
CREATE TABLE consent_state (
  user_id TEXT NOT NULL, service TEXT NOT NULL, version INTEGER NOT NULL, granted INTEGER NOT NULL, at INTEGER NOT NULL,
  PRIMARY KEY (user_id, service)) WITHOUT ROWID;
CREATE TABLE consents (
  id INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT NOT NULL, service TEXT NOT NULL, version INTEGER NOT NULL,
  granted INTEGER NOT NULL, at INTEGER NOT NULL, source TEXT NOT NULL);
CREATE INDEX consents_user ON consents (user_id, id);
CREATE TABLE messages (
  id TEXT PRIMARY KEY, user_id TEXT NOT NULL, sender TEXT NOT NULL, body BLOB NOT NULL,
  sent_at INTEGER NOT NULL, expires_at INTEGER NOT NULL);
CREATE INDEX messages_user ON messages (user_id, sent_at);
CREATE INDEX messages_expiry ON messages (expires_at);
CREATE TABLE audit (
  seq INTEGER PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, subject TEXT NOT NULL,
  details TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL);
CREATE INDEX audit_subject ON audit (subject, seq);
CREATE TABLE migrations (id TEXT PRIMARY KEY, spec TEXT NOT NULL, state TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE migration_journal (
  migration_id TEXT NOT NULL, user_id TEXT NOT NULL, step TEXT NOT NULL, at INTEGER NOT NULL, details TEXT NOT NULL,
  PRIMARY KEY (migration_id, user_id, step)) WITHOUT ROWID;
CREATE TABLE operators (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, token_hash BLOB NOT NULL UNIQUE,
  created_at INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE refresh_tokens (
  token_hash BLOB PRIMARY KEY, user_id TEXT NOT NULL, family TEXT NOT NULL, expires_at INTEGER NOT NULL, used INTEGER NOT NULL DEFAULT 0);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family);
CREATE TABLE directory (user_id TEXT PRIMARY KEY, region TEXT NOT NULL, updated_at INTEGER NOT NULL) WITHOUT ROWID;
