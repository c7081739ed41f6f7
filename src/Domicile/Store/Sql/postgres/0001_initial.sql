-- Region schema v1 (PostgreSQL). Times are Unix milliseconds, flags are 0/1 integers.
CREATE TABLE meta (name TEXT PRIMARY KEY, value BYTEA NOT NULL);
CREATE TABLE keks (version BIGINT PRIMARY KEY, sealed BYTEA NOT NULL, created_at BIGINT NOT NULL);
CREATE TABLE users (
  id TEXT PRIMARY KEY,
  login_index BYTEA NOT NULL UNIQUE,
  login_enc BYTEA NOT NULL,
  password_hash TEXT NOT NULL,
  country TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  change_seq BIGINT NOT NULL DEFAULT 0,
  state TEXT NOT NULL DEFAULT 'active');
-- Data keys live apart from the data so that data backups can leave them out (G6).
CREATE TABLE data_keys (
  user_id TEXT NOT NULL, service TEXT NOT NULL, kek_version BIGINT NOT NULL,
  wrapped BYTEA NOT NULL, created_at BIGINT NOT NULL,
  PRIMARY KEY (user_id, service));
CREATE INDEX data_keys_kek ON data_keys (kek_version);
CREATE TABLE items (
  user_id TEXT NOT NULL, service TEXT NOT NULL, collection TEXT NOT NULL, key_index BYTEA NOT NULL,
  head BYTEA NOT NULL, content BYTEA, blob_id TEXT, size BIGINT NOT NULL, version BIGINT NOT NULL,
  deleted BIGINT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,
  PRIMARY KEY (user_id, service, collection, key_index));
CREATE INDEX items_changes ON items (user_id, version);
CREATE TABLE blob_chunks (blob_id TEXT NOT NULL, idx BIGINT NOT NULL, data BYTEA NOT NULL, created_at BIGINT NOT NULL, PRIMARY KEY (blob_id, idx));
CREATE TABLE consent_state (
  user_id TEXT NOT NULL, service TEXT NOT NULL, version BIGINT NOT NULL, granted BIGINT NOT NULL, at BIGINT NOT NULL,
  PRIMARY KEY (user_id, service));
CREATE TABLE consents (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, user_id TEXT NOT NULL, service TEXT NOT NULL, version BIGINT NOT NULL,
  granted BIGINT NOT NULL, at BIGINT NOT NULL, source TEXT NOT NULL);
CREATE INDEX consents_user ON consents (user_id, id);
CREATE TABLE messages (
  id TEXT PRIMARY KEY, user_id TEXT NOT NULL, sender TEXT NOT NULL, body BYTEA NOT NULL,
  sent_at BIGINT NOT NULL, expires_at BIGINT NOT NULL);
CREATE INDEX messages_user ON messages (user_id, sent_at);
CREATE INDEX messages_expiry ON messages (expires_at);
CREATE TABLE audit (
  seq BIGINT PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, subject TEXT NOT NULL,
  details TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL);
CREATE INDEX audit_subject ON audit (subject, seq);
CREATE TABLE migrations (id TEXT PRIMARY KEY, spec TEXT NOT NULL, state TEXT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL);
CREATE TABLE migration_journal (
  migration_id TEXT NOT NULL, user_id TEXT NOT NULL, step TEXT NOT NULL, at BIGINT NOT NULL, details TEXT NOT NULL,
  PRIMARY KEY (migration_id, user_id, step));
CREATE TABLE operators (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, token_hash BYTEA NOT NULL UNIQUE,
  created_at BIGINT NOT NULL, revoked BIGINT NOT NULL DEFAULT 0);
CREATE TABLE refresh_tokens (
  token_hash BYTEA PRIMARY KEY, user_id TEXT NOT NULL, family TEXT NOT NULL, expires_at BIGINT NOT NULL, used BIGINT NOT NULL DEFAULT 0);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family);
CREATE TABLE directory (user_id TEXT PRIMARY KEY, region TEXT NOT NULL, updated_at BIGINT NOT NULL);
