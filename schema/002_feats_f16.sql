-- 002_feats_f16.sql - ITC features stored as IEEE half floats (`qformer index
-- --store-dtype f16`, meta store_dtype = 'f16'): 16 KiB per image instead of
-- 32 KiB, exact rescoring within ~1e-3 of float32. A database uses one of
-- image_feats (f32) and image_feats_f16, never both (the store picks the
-- table from meta store_dtype).
CREATE TABLE image_feats_f16 (
    image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
    n_query  INTEGER NOT NULL CHECK (n_query > 0),
    dim      INTEGER NOT NULL CHECK (dim > 0),
    f16      BLOB    NOT NULL CHECK (length(f16) = 2 * n_query * dim)
);

-- As image_feats: features belong to ok images only.
CREATE TRIGGER images_not_ok_f16
AFTER UPDATE OF status ON images
WHEN NEW.status != 'ok'
BEGIN
    DELETE FROM image_feats_f16 WHERE image_id = NEW.id;
END;
