-- 001_initial.sql - first schema of the qformer metadata store (user_version 1).
-- images: one row per file seen by `qformer index`; its vectors in the FAISS
-- index have ids id * n_query + q. Ids are never reused (AUTOINCREMENT), so
-- vectors of a deleted image can never be mistaken for a new one's.

CREATE TABLE images (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    path         TEXT    NOT NULL UNIQUE,
    size         INTEGER NOT NULL,              -- bytes
    mtime_ns     INTEGER NOT NULL,              -- st_mtim in nanoseconds
    content_hash TEXT,                          -- SHA-256, lowercase hex
    width        INTEGER,                       -- pixels, NULL until decoded
    height       INTEGER,
    status       TEXT    NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'ok', 'error')),
    error        TEXT,                          -- why status is 'error'
    indexed_at   INTEGER                        -- unix seconds of the last mark
);
CREATE INDEX images_by_status ON images(status, id);

-- Index settings: model_path, model_fingerprint, factory, dim, n_query,
-- pooled, generation, faiss_generation (databases of earlier versions may
-- also hold index_file, never read).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE captions (
    image_id          INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    model_fingerprint TEXT    NOT NULL,
    prompt            TEXT    NOT NULL,
    settings          TEXT    NOT NULL,         -- decoding settings, as text
    text              TEXT    NOT NULL,
    ids_json          TEXT    NOT NULL,         -- generated token ids, JSON array
    PRIMARY KEY (image_id, model_fingerprint, prompt, settings)
) WITHOUT ROWID;

-- Vision-encoder output kept for ITM rerank (--keep-vision): n_tok x dim
-- IEEE half floats, little-endian.
CREATE TABLE vision_cache (
    image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
    n_tok    INTEGER NOT NULL CHECK (n_tok > 0),
    dim      INTEGER NOT NULL CHECK (dim > 0),
    f16      BLOB    NOT NULL CHECK (length(f16) = 2 * n_tok * dim)
);

-- ITC features of every embedded image, exactly as computed: n_query x dim
-- float32, little-endian. The FAISS index is rebuilt from them when it is
-- lost or its factory changes, and export and exact rescoring read them.
CREATE TABLE image_feats (
    image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
    n_query  INTEGER NOT NULL CHECK (n_query > 0),
    dim      INTEGER NOT NULL CHECK (dim > 0),
    f32      BLOB    NOT NULL CHECK (length(f32) = 4 * n_query * dim)
);

-- A file whose content changed keeps its id; what was derived from the old
-- content goes. Content is compared by hash when both are known (so
-- recording the hash of a file just embedded changes nothing), else by
-- size and mtime.
CREATE TRIGGER images_content_changed
AFTER UPDATE OF size, mtime_ns, content_hash ON images
WHEN CASE WHEN OLD.content_hash IS NOT NULL AND NEW.content_hash IS NOT NULL
          THEN OLD.content_hash != NEW.content_hash
          ELSE OLD.size != NEW.size OR OLD.mtime_ns != NEW.mtime_ns END
BEGIN
    DELETE FROM captions WHERE image_id = NEW.id;
    DELETE FROM vision_cache WHERE image_id = NEW.id;
END;

-- Features belong to ok images only: re-registered (pending) or failed
-- images lose them.
CREATE TRIGGER images_not_ok
AFTER UPDATE OF status ON images
WHEN NEW.status != 'ok'
BEGIN
    DELETE FROM image_feats WHERE image_id = NEW.id;
END;
